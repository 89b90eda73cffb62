"""Bounded memo tables attached to one live object by its identity (``is``), never by its value.

The warm path asks the same immutable objects the same questions thousands of times: the engagement
(frozen) for the rate in force for a role, region and day; an account's ``ErpMapping`` (frozen) for the
segments of a region and business unit. A table here belongs to one object: it is found by ``id(obj)``
and checked with ``is``, and it is dropped when the object is garbage-collected (a weak reference's
callback, which runs before the object's ``id`` can be given to another one). So an answer never crosses
from one engagement or account to another, even an equal one, and a copy with changes
(``model_copy(update=...)``) is a new object with a new, empty table.

Bounded twice: at most ``max_objects`` tables (the oldest is dropped first) of at most ``max_keys``
answers each (likewise). Only answers are kept, never exceptions: a question that fails is asked again
and fails the same way. The objects must be immutable (frozen models) for the answers to stay true;
pydantic's frozen models refuse attribute changes, and nothing in r2r changes their lists in place.
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["ObjectMemo"]


class ObjectMemo:
    """Per-object memo tables: ``memo.table(obj)`` is a ``dict`` for answers about ``obj`` only."""

    def __init__(self, *, max_objects: int, max_keys: int) -> None:
        if max_objects < 1 or max_keys < 1:
            raise ValueError("max_objects and max_keys must be at least 1")
        self.max_objects = max_objects
        self.max_keys = max_keys
        # id(obj) → (weak reference to obj, its answers)
        self._tables: dict[int, tuple[weakref.ref[Any], dict[Any, Any]]] = {}
        self._last: tuple[weakref.ref[Any], dict[Any, Any]] | None = None  # the table asked last

    def table(self, obj: Any) -> dict[Any, Any]:
        last = self._last  # one read: the pair stays consistent whatever another thread does
        if last is not None and last[0]() is obj:
            return last[1]
        key = id(obj)
        found = self._tables.get(key)
        if found is None or found[0]() is not obj:
            _make_room(self._tables, self.max_objects)
            found = (weakref.ref(obj, self._forget(key)), {})
            self._tables[key] = found
        self._last = found
        return found[1]

    def put(self, table: dict[Any, Any], key: Any, value: Any) -> Any:
        """Keep ``value`` as the answer to ``key`` in ``table`` (bounded), and return it."""
        _make_room(table, self.max_keys)
        table[key] = value
        return value

    def __len__(self) -> int:
        return len(self._tables)

    def _forget(self, key: int) -> Any:
        tables = self._tables

        def forget(ref: weakref.ref[Any]) -> None:
            found = tables.get(key)
            if found is not None and found[0] is ref:
                tables.pop(key, None)

        return forget


def _make_room(table: dict[Any, Any], most: int) -> None:
    """Drop the oldest entries until one more fits under ``most`` (dicts keep insertion order)."""
    for _ in range(len(table) - most + 1):
        try:
            table.pop(next(iter(table)), None)
        except (StopIteration, RuntimeError):  # emptied or changed meanwhile (another thread, a callback)
            return
