"""Where events enter the core: drop what a non-owner sent, with an audit record and a metric.

The rules are in :mod:`r2r_core.ownership`; this is the one place that records an ignored update, so
every ingest path and the shared consumer leave the same trace: an AuditTable entry
``ownership#<event type>#<source record id>`` / ``<event id>#ignored_not_owner`` naming the fields the
source does not own and their owner, a warning log line, and the ``OwnershipIgnored`` metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core import ownership
from r2r_core.kpis import ownership_kpi
from r2r_core.model.events import EventEnvelope
from r2r_core.telemetry import emit

logger = Logger(child=True)

IGNORED = "ignored_not_owner"


class Audit(Protocol):
    def append(
        self,
        *,
        kind: str,
        entity_id: str,
        action: str,
        event_id: str,
        correlation_id: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None: ...


def record_ignored(
    verdict: ownership.Verdict,
    *,
    source_record_id: str,
    event_id: str,
    correlation_id: str,
    audit: Audit | None,
    path: str,
) -> dict[str, Any]:
    """Audit (when an audit log is given), log and count one ignored update; returns what was recorded."""
    detail = {**verdict.as_detail(), "source_record_id": source_record_id, "path": path}
    if audit is not None:
        audit.append(
            kind="ownership",
            entity_id=f"{verdict.event_type}#{source_record_id}",
            action=IGNORED,
            event_id=event_id,
            correlation_id=correlation_id,
            detail=detail,
        )
    logger.warning(
        "update ignored: source does not own it",
        extra={
            "event_type": verdict.event_type,
            "source_system": verdict.source_system,
            "source_record_id": source_record_id,
            "not_owned": [name for name, _ in verdict.not_owned],
            "path": path,
        },
    )
    emit([ownership_kpi(source_system=verdict.source_system, event_type=verdict.event_type)])
    return detail


def owned_only(
    envelopes: list[EventEnvelope],
    *,
    audit: Audit | None,
    path: str,
    external: bool = False,
    on_ignored: Callable[[EventEnvelope, dict[str, Any]], object] | None = None,
) -> list[EventEnvelope]:
    """The envelopes whose source owns what they carry; the others are recorded as ignored."""
    kept = []
    for envelope in envelopes:
        verdict = ownership.check(envelope.type, envelope.source_system, envelope.data, external=external)
        if verdict.accepted:
            kept.append(envelope)
            continue
        detail = record_ignored(
            verdict,
            source_record_id=envelope.source_record_id,
            event_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
            audit=audit,
            path=path,
        )
        if on_ignored is not None:
            on_ignored(envelope, detail)
    return kept
