"""Approved time → billing decision → ERP timeBill (upsert by external id) → charge recorded for invoicing.

The decision (``r2r_core.billing.decisions``) sees what the contract has already committed (caps,
retainer drawdown). A newer version of an invoiced entry is decided afresh and what was invoiced is
queued for a credit on the next invoice (``flows.charges``). Cap early warnings and revenue events
are recorded once and published on the bus.
"""

from __future__ import annotations

from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.billing.decisions import ZERO, ChargeDecision, Decision, decide_time_entry
from r2r_core.billing.revenue import delivered_value, revenue_for_time
from r2r_core.erp import records
from r2r_core.erp.mapping import ErpMapping
from r2r_core.flows.charges import (
    Publisher,
    as_decimal,
    charge_key,
    consumption_from,
    engagement_of,
    erp_body_json,
    prior_charge,
    raise_committed_warnings,
    record_decision,
    record_revenue,
    settle_erp_record,
)
from r2r_core.flows.resource_status import refuse_time_after_termination
from r2r_core.flows.time_summary import flush_period, mark_changed, summary_fields
from r2r_core.model.entities import TimeEntry
from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, StateStore

logger = Logger(child=True)

# What the decision (caps, budgets, retainer) and revenue need of the contract's other charges: reading
# only these keeps the per-entry read small as a contract's charges grow.
CONSUMPTION_FIELDS = (
    "source_id",
    "time_entry_id",
    "decision",
    "rate",
    "hours",
    "billable_hours",
    "budget_id",
    "prepaid_hours",
    "revenue_recognised",
)


class Erp(Protocol):
    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str: ...

    def delete_by_external_id(self, record_type: str, external_id: str) -> bool: ...


def time_bill_request(
    entry: TimeEntry,
    decision: ChargeDecision,
    *,
    job_id: str,
    business_unit: str | None,
    account: ErpMapping,
) -> dict[str, Any]:
    """The NetSuite ``timeBill`` body for an entry and its decision (rate and item only when billable)."""
    billable = decision.billable
    return records.time_bill_body(
        job_id=job_id,
        employee_external_id=records.external_id("resource", entry.resource_id),
        tran_date=entry.work_date,
        hours=entry.hours,
        rate=decision.rate if billable else None,
        is_billable=billable,
        item_id=account.item_for("time", entry.role) if billable else None,
        memo=f"{entry.role} ({entry.region}) — {decision.rule}",
        segments=account.segments(entry.region, business_unit).as_fields(),
    )


def post_time(
    envelope: EventEnvelope,
    *,
    store: StateStore,
    audit: AuditLog,
    erp: Erp,
    publisher: Publisher | None = None,
    mapping: ErpMapping | None = None,
) -> dict[str, Any]:
    entry = TimeEntry.model_validate(envelope.data)
    refuse_time_after_termination(store, entry)
    deal, terms = engagement_of(store, "time entry", entry)
    engagement = deal.engagement
    key = charge_key(entry.engagement_id, "time", entry.id)
    account = mapping or ErpMapping()
    existing, duplicate = prior_charge(store, audit, envelope, key=key, kind="time_entry")
    if duplicate is not None:
        if existing is not None and existing.get("erp_posting") == "summary":
            # A redelivery after a failure between recording and counting: count it (again) so the
            # change cannot be missed; a spare count only brings the flush forward.
            mark_changed(store, entry.engagement_id, str(existing["erp_summary_period"]))
        return duplicate

    charges = list(store.query_prefix(key["pk"], "CHARGE#", fields=CONSUMPTION_FIELDS))
    consumption = consumption_from(charges, exclude=entry.id)
    decision = decide_time_entry(entry, engagement, consumption, project_billable=deal.project.billable)

    time_bill_eid = records.external_id("time", entry.id)
    item_id = account.item_for("time", entry.role) if decision.billable else None
    time_bill = time_bill_request(
        entry,
        decision,
        job_id=terms["erp_job_id"],
        business_unit=engagement.business_unit,
        account=account,
    )
    time_bill_id: str | None = None
    if account.posts_time_in_summary:
        # Recorded here, posted to the ERP by the flush of its summary record (flows.time_summary).
        erp_fields = summary_fields(
            engagement_id=entry.engagement_id,
            project_id=entry.project_id,
            role=entry.role,
            region=entry.region,
            work_date=entry.work_date,
            billable=decision.billable,
            rate=decision.rate,
            item_id=item_id,
        )
        if existing is not None and existing.get("erp_time_bill_external_id"):
            # The account switched from detail to summary: the entry's own timeBill would count twice.
            erp.delete_by_external_id("timeBill", str(existing["erp_time_bill_external_id"]))
    else:
        time_bill_id = erp.upsert("timeBill", time_bill_eid, time_bill)
        erp_fields = {
            "erp_time_bill_id": time_bill_id,
            "erp_time_bill_external_id": time_bill_eid,
            "erp_body": erp_body_json(time_bill),
        }

    # Revenue recognised for this entry so far, and for percent complete the contract's totals.
    others = [c for c in charges if c.get("source_id", c.get("time_entry_id")) != entry.id]
    held = Decision.HELD_FOR_MILESTONE.value
    held_hours_before = sum((as_decimal(c.get("hours")) for c in others if c.get("decision") == held), ZERO)
    revenue = revenue_for_time(
        decision,
        engagement,
        project_id=entry.project_id,
        recognised_for_entry=as_decimal(existing.get("revenue_recognised")) if existing else ZERO,
        delivered_hours_before=held_hours_before,
        recognised_percent_complete=sum((as_decimal(c.get("revenue_recognised")) for c in charges), ZERO),
    )
    recognised = (as_decimal(existing.get("revenue_recognised")) if existing else ZERO) + (
        revenue.amount.amount if revenue else ZERO
    )
    recorded = record_decision(
        store,
        engagement_id=entry.engagement_id,
        decision=decision,
        existing=existing,
        extra={
            "time_entry_id": entry.id,
            "project_id": entry.project_id,
            "approved_at": entry.approved_at.isoformat(),
            "assignment_id": entry.assignment_id,
            "revenue_recognised": recognised,
            "delivered_value": delivered_value(decision),
            **erp_fields,
            "correlation_id": envelope.correlation_id,
        },
    )
    if not account.posts_time_in_summary:
        # Detail mode: the ERP record ends at the version that stands when two versions race.
        settle_erp_record(erp, recorded, record_type="timeBill", external_id=time_bill_eid, body=time_bill)
    if not recorded.written:
        # Lost a race with a newer version: that one's decision stands.
        return {"decision": decision.decision.value, "duplicate": True}
    summary = _count_summary_change(
        store=store,
        audit=audit,
        erp=erp,
        account=account,
        engagement_id=entry.engagement_id,
        erp_fields=erp_fields,
        previous=recorded.previous,
        correlation_id=envelope.correlation_id,
    )

    revenue_id = record_revenue(store, publisher, event=revenue, correlation_id=envelope.correlation_id)
    warnings = raise_committed_warnings(
        store,
        publisher,
        engagement=engagement,
        before=consumption,
        decision=decision,
        correlation_id=envelope.correlation_id,
        audit=audit,
        event_id=envelope.event_id,
    )
    credited = recorded.previous is not None and recorded.previous.get("status") == "invoiced"
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
            "erp_summary_external_id": erp_fields.get("erp_summary_external_id"),
            "credit_queued_for_version": recorded.previous["version"]
            if credited and recorded.previous
            else None,
            "revenue_event_id": revenue_id,
            "cap_warnings": warnings,
        },
    )
    logger.info(
        "time posted",
        extra={
            "time_entry_id": entry.id,
            "decision": decision.decision.value,
            "rule": decision.rule,
            "erp_time_bill_id": time_bill_id,
            "credit_queued": credited,
        },
    )
    outcome = {
        "decision": decision.decision.value,
        "amount": str(decision.amount),
        "erp_time_bill_id": time_bill_id,
        "credit_queued": credited,
    }
    if summary is not None:
        outcome["erp_summary_external_id"] = erp_fields["erp_summary_external_id"]
        outcome["summary_flushed"] = summary
    return outcome


def _count_summary_change(
    *,
    store: StateStore,
    audit: AuditLog,
    erp: Erp,
    account: ErpMapping,
    engagement_id: str,
    erp_fields: dict[str, Any],
    previous: dict[str, Any] | None,
    correlation_id: str,
) -> int | None:
    """Summary mode: count the change in its period (and in the period the previous version was
    posted in, if any); flush a period that reached ``summary_flush_changes``. The ERP requests made."""
    periods = []
    if previous is not None and previous.get("erp_posting") == "summary":
        periods.append(str(previous["erp_summary_period"]))
    if erp_fields.get("erp_posting") == "summary":
        periods.append(str(erp_fields["erp_summary_period"]))
    elif not periods:
        return None
    requests = 0
    for period in dict.fromkeys(periods):
        if mark_changed(store, engagement_id, period) >= account.summary_flush_changes:
            result = flush_period(
                store,
                audit,
                erp,
                account,
                engagement_id=engagement_id,
                period=period,
                correlation_id=correlation_id,
            )
            requests += result.erp_requests
    return requests
