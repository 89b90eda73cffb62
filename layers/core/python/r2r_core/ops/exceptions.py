"""Exceptions for finance: find one, its age, resolve it (who, when, why) with an audit record.

Exceptions are the StateTable items ``EXC#<id>`` / ``EXC`` (see ``r2r_core.state``). Resolving marks an open
exception resolved (only an open one: the update is conditional) and appends ``exception#<id>`` /
``<at>#resolved`` to the AuditTable, which is append-only. Used by ``r2r exceptions`` and by the operator
API (``GET /ops/exceptions``, ``GET /ops/exceptions/{id}``, ``POST /ops/exceptions/{id}/resolve``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from r2r_core.state import AuditLog, StateStore, now_iso


class ResolveRefused(Exception):
    """The exception is not there (or the id is ambiguous), or it is not open."""


class ExceptionNotFound(ResolveRefused):
    """No exception has this id (or more than one starts with it)."""


def age_days(item: dict[str, Any], now: datetime | None = None) -> float | None:
    created = item.get("created_at")
    if not created:
        return None
    delta = (now or datetime.now(UTC)) - datetime.fromisoformat(str(created))
    return round(delta.total_seconds() / 86400, 1)


def find(store: StateStore, exception_id: str) -> dict[str, Any]:
    item = store.get(f"EXC#{exception_id}", "EXC")
    if item is not None:
        return item
    matches = [e for e in store.exceptions() if str(e.get("id", "")).startswith(exception_id)]
    if len(matches) != 1:
        raise ExceptionNotFound(f"{len(matches)} exceptions match {exception_id!r}")
    return matches[0]


def resolve_exception(
    store: StateStore, audit: AuditLog, exception_id: str, *, by: str, note: str
) -> dict[str, Any]:
    """Mark an open exception resolved (who, when, why) and audit it; the stored item after."""
    item = find(store, exception_id)
    at = now_iso()
    if not store.update_if(
        item["pk"],
        item["sk"],
        set_values={"status": "resolved", "resolved_at": at, "resolved_by": by, "resolution_note": note},
        condition="#status = :open",
        values={":open": "open"},
    ):
        raise ResolveRefused(f"exception {item['id']} is {item.get('status')}, not open")
    audit.append(
        kind="exception",
        entity_id=item["id"],
        action="resolved",
        event_id=f"manual-{at}",
        correlation_id=str(item.get("correlation_id") or item["id"]),
        detail={"by": by, "note": note},
    )
    return store.get(item["pk"], item["sk"]) or item
