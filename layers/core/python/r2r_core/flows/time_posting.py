"""Approved time → billing decision → ERP timeBill (upsert by external id) → charge recorded for invoicing."""

from __future__ import annotations

from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.billing.decisions import decide_time_entry
from r2r_core.erp import records
from r2r_core.errors import ChangedAfterInvoicing, EngagementNotReady
from r2r_core.flows.project_setup import load_terms
from r2r_core.model.entities import TimeEntry
from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, StateStore, now_iso

logger = Logger(child=True)


class Erp(Protocol):
    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str: ...


def post_time(envelope: EventEnvelope, *, store: StateStore, audit: AuditLog, erp: Erp) -> dict[str, Any]:
    entry = TimeEntry.model_validate(envelope.data)
    loaded = load_terms(store, entry.engagement_id)
    if loaded is None:
        raise EngagementNotReady(
            f"time entry {entry.id} belongs to engagement {entry.engagement_id}, which is not set up yet"
        )
    deal, terms = loaded
    if entry.project_id != deal.project.id:
        # The engagement's project is the only one set up for it in this release.
        raise EngagementNotReady(
            f"time entry {entry.id} names project {entry.project_id}, which is not set up"
        )

    key = {"pk": f"ENG#{entry.engagement_id}", "sk": f"CHARGE#{entry.id}"}
    existing = store.get(key["pk"], key["sk"])
    if existing is not None and existing["version"] >= entry.version:
        audit.append(
            kind="time_entry",
            entity_id=entry.id,
            action="stale_or_duplicate_ignored",
            event_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
            detail={"held_version": existing["version"], "received_version": entry.version},
        )
        return {"decision": existing["decision"], "duplicate": True}
    if existing is not None and existing.get("status") == "invoiced":
        raise ChangedAfterInvoicing(
            f"time entry {entry.id} changed (version {existing['version']} → {entry.version}) after it was "
            f"invoiced on {existing.get('invoice_id')}: needs an adjustment"
        )

    decision = decide_time_entry(entry, deal.engagement)
    time_bill_eid = records.external_id("time", entry.id)
    time_bill_id = erp.upsert(
        "timeBill",
        time_bill_eid,
        records.time_bill_body(
            job_id=terms["erp_job_id"],
            employee_external_id=records.external_id("resource", entry.resource_id),
            tran_date=entry.work_date,
            hours=entry.hours,
            rate=decision.rate if decision.billable else None,
            is_billable=decision.billable,
            item_id=None,
            memo=f"{entry.role} ({entry.region}) — {decision.rule}",
        ),
    )
    charge = {
        **key,
        "version": entry.version,
        "time_entry_id": entry.id,
        "resource_id": entry.resource_id,
        "project_id": entry.project_id,
        "work_date": entry.work_date.isoformat(),
        "approved_at": entry.approved_at.isoformat(),
        "role": entry.role,
        "region": entry.region,
        "hours": entry.hours,
        "rate": decision.rate,
        "amount": decision.amount,
        "currency": decision.currency,
        "decision": decision.decision.value,
        "rule": decision.rule,
        "reason": decision.reason,
        "status": "unbilled" if decision.billable else "not_billable",
        "erp_time_bill_id": time_bill_id,
        "erp_time_bill_external_id": time_bill_eid,
        "correlation_id": envelope.correlation_id,
        "recorded_at": now_iso(),
    }
    if not store.put_versioned(charge, unless_status="invoiced"):
        # Lost a race: a newer version was recorded, or the entry was invoiced meanwhile.
        current = store.get(key["pk"], key["sk"]) or {}
        if current.get("status") == "invoiced" and current.get("version", 0) < entry.version:
            raise ChangedAfterInvoicing(f"time entry {entry.id} was invoiced while this version was posted")
        return {"decision": decision.decision.value, "duplicate": True}
    audit.append(
        kind="time_entry",
        entity_id=entry.id,
        action=f"charge_{decision.decision.value}",
        event_id=envelope.event_id,
        correlation_id=envelope.correlation_id,
        detail={
            "version": entry.version,
            "amount": decision.amount,
            "currency": decision.currency,
            "rule": decision.rule,
            "reason": decision.reason,
            "erp_time_bill_id": time_bill_id,
        },
    )
    logger.info(
        "time posted",
        extra={
            "time_entry_id": entry.id,
            "decision": decision.decision.value,
            "erp_time_bill_id": time_bill_id,
        },
    )
    return {
        "decision": decision.decision.value,
        "amount": str(decision.amount),
        "erp_time_bill_id": time_bill_id,
    }
