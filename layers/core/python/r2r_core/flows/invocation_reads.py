"""What one consumer invocation reads once and keeps current with what it records itself.

An SQS batch (one Lambda invocation, up to ``BATCH_SIZE`` records) usually holds work of one engagement:
a PSA export is ordered by project. The engagement's terms, a worker's HRIS status and the engagement's
charges (what the billing decision needs of them) are read at the first record that needs them and kept
for the rest of the batch; the charges the invocation records are written into the kept copy, so the
next record of the batch decides against them exactly as if it had queried again.

Strictly per invocation: a handler makes a new :class:`InvocationReads` at every call, so nothing read
crosses invocations. Within one invocation another function may record a charge of the same engagement
(two batches of one engagement at once); the versioned, conditional charge write still refuses a duplicate
or stale version. Where what is recorded depends on every charge the contract committed (a retainer's
drawdown, fixed-fee revenue by percent complete), the flow asks for the charges ``fresh`` at every
record, so that window stays as narrow as one query and one write, as before
(``flows.time_posting.depends_on_other_charges``; caps are checked again by the invoice run, so time and
materials, capped or not, keeps the batch's copy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from r2r_core.model.entities import ClosedWonDeal
from r2r_core.state import StateStore


class InvocationReads:
    """Reads of one invocation: items by key, engagement terms, and an engagement's charges by sort key."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._expected: set[tuple[str, str]] = set()
        self._terms: dict[str, tuple[ClosedWonDeal, dict[str, Any]]] = {}
        self._charges: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._fields: dict[tuple[str, str], tuple[str, ...] | None] = {}

    def expect(self, keys: Iterable[tuple[str, str]]) -> None:
        """Items the batch's records will ask :meth:`item` for: the first such ask reads them all together
        (``BatchGetItem``), instead of one ``GetItem`` per record."""
        self._expected.update(key for key in keys if key not in self._items)

    def item(self, store: StateStore, pk: str, sk: str) -> dict[str, Any] | None:
        """``store.get(pk, sk)``, read once per invocation (an absent item is remembered as absent)."""
        key = (pk, sk)
        if key not in self._items and key in self._expected:
            self._items.update(store.get_many(sorted(self._expected)))
            self._expected.clear()
        if key not in self._items:
            self._items[key] = store.get(pk, sk)
        return self._items[key]

    def terms(
        self,
        engagement_id: str,
        load: Callable[[str], tuple[ClosedWonDeal, dict[str, Any]] | None],
    ) -> tuple[ClosedWonDeal, dict[str, Any]] | None:
        """The engagement's terms (``load`` reads them); not set up is not remembered, so a later
        record of the batch sees terms recorded meanwhile."""
        loaded = self._terms.get(engagement_id)
        if loaded is None:
            loaded = load(engagement_id)
            if loaded is not None:
                self._terms[engagement_id] = loaded
        return loaded

    def charges(
        self,
        store: StateStore,
        engagement_id: str,
        sk_prefix: str,
        fields: Iterable[str] | None,
        *,
        fresh: bool = False,
    ) -> dict[str, dict[str, Any]]:
        """The engagement's items under ``sk_prefix`` by sort key: only ``fields`` and the keys, or whole.

        Queried once per invocation; :meth:`remember` keeps them current with this invocation's writes.
        ``fresh``: queried again now (a decision that depends on what the contract's other charges
        committed must see what other invocations recorded meanwhile, as closely as a query can).
        """
        key = (engagement_id, sk_prefix)
        if fresh or key not in self._charges:
            self._fields[key] = tuple(dict.fromkeys(["pk", "sk", *fields])) if fields is not None else None
            self._charges[key] = {
                item["sk"]: item
                for item in store.query_prefix(f"ENG#{engagement_id}", sk_prefix, fields=self._fields[key])
            }
        return self._charges[key]

    def remember(self, engagement_id: str, sk_prefix: str, sk: str, item: Mapping[str, Any] | None) -> None:
        """What is now stored under ``sk`` (None: nothing), as the query would have returned it."""
        key = (engagement_id, sk_prefix)
        kept = self._charges.get(key)
        if kept is None:
            return
        if item is None:
            kept.pop(sk, None)
            return
        fields = self._fields[key]
        kept[sk] = (
            dict(item)
            if fields is None
            else {name: item[name] for name in fields if item.get(name) is not None}
        )
