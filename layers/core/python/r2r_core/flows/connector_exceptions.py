"""Exceptions for finance raised by connectors: a record r2r could not map, or one still waiting.

One record per (connector, kind, key) — a redelivery of the same bad record is the same exception —
naming the record, the field and the problem, and where the raw payload is kept (``archived_as``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger

from r2r_core.notify import notify_exception
from r2r_core.state import AuditLog, StateStore, exception_id, now_iso

logger = Logger(child=True)

REJECTED = "connector_rejected"  # can never be mapped as sent: fix in the source system, send again
WAITING = "connector_waiting"  # refers to a record r2r has not seen yet; the sender retries
RESYNC = "connector_resync"  # the source lost changes it cannot name (CDC GAP_OVERFLOW): re-sync by hand
_RECOVERY = {
    WAITING: "the sender retries; make the referenced record reach r2r (e.g. touch it in the source system)",
    RESYNC: "the source could not send every change: re-sync the named object's records changed since the "
    "commit time (e.g. touch them in Salesforce so Change Data Capture sends them again)",
}


def connector_exception_id(connector: str, kind: str, key: str) -> str:
    return exception_id(connector, kind, key)


def record_connector_exception(
    store: StateStore,
    audit: AuditLog,
    *,
    connector: str,
    kind: str,
    key: str,
    error: Exception,
    archived_as: str | None,
    context: Mapping[str, Any] | None = None,
) -> bool:
    """Store the exception once; True when it is new."""
    record = {
        "id": connector_exception_id(connector, kind, key),
        "kind": kind,
        "status": "open",
        "connector": connector,
        "source_key": key,
        "error_type": type(error).__name__,
        "error": str(error),
        "record": getattr(error, "record", None),
        "field": getattr(error, "field", None),
        "problem": getattr(error, "problem", None),
        "archived_as": archived_as,
        "recovery": _RECOVERY.get(
            kind, "fix the record in the source system and send it again; the raw payload is kept"
        ),
        "created_at": now_iso(),
        **dict(context or {}),
    }
    created = store.put_exception(record)
    if created:
        audit.append(
            kind="exception",
            entity_id=record["id"],
            action="opened",
            event_id=key,
            correlation_id=key,
            detail={"connector": connector, "error": record["error"], "archived_as": archived_as},
        )
        notify_exception(record)
        logger.warning(
            "connector exception recorded",
            extra={
                "exception_id": record["id"],
                "connector": connector,
                "kind": kind,
                "field": record["field"],
            },
        )
    return created


def resolve_waiting(store: StateStore, *, connector: str, key: str) -> bool:
    """Close a ``connector_waiting`` exception once its record went through; True when one was open."""
    return store.update_if(
        f"EXC#{connector_exception_id(connector, WAITING, key)}",
        "EXC",
        set_values={"status": "resolved", "resolved_at": now_iso()},
        condition="attribute_exists(pk) AND #status = :open",
        values={":open": "open"},
    )
