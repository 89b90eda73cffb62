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

    def table(self, obj: Any) -> dict[Any, Any]:
        key = id(obj)
        found = self._tables.get(key)
        if found is not None and found[0]() is obj:
            return found[1]
        while len(self._tables) >= self.max_objects:
            self._tables.pop(next(iter(self._tables)), None)
        answers: dict[Any, Any] = {}
        self._tables[key] = (weakref.ref(obj, self._forget(key)), answers)
        return answers

    def put(self, table: dict[Any, Any], key: Any, value: Any) -> Any:
        """Keep ``value`` as the answer to ``key`` in ``table`` (bounded), and return it."""
        while len(table) >= self.max_keys:
            table.pop(next(iter(table)), None)
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
