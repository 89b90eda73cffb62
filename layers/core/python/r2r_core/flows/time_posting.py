"""Approved time → billing decision → ERP timeBill (upsert by external id) → charge recorded for invoicing.

The decision (``r2r_core.billing.decisions``) sees what the contract has already committed (caps,
retainer drawdown). A newer version of an invoiced entry is decided afresh and what was invoiced is
queued for a credit on the next invoice (``flows.charges``). Cap early warnings and revenue events
are recorded once and published on the bus.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.billing.decisions import ZERO, ChargeDecision, Decision, decide_time_entry
from r2r_core.billing.revenue import revenue_for_time
from r2r_core.erp import records
from r2r_core.erp.mapping import ErpMapping, Segments
from r2r_core.flows.batch_tail import BatchTail
from r2r_core.flows.charges import (
    Publisher,
    as_decimal,
    audit_charge,
    charge_audited,
    charge_key,
    consumption_from,
    engagement_of,
    erp_body_json,
    prior_charge,
    publish_charge_revenue,
    raise_committed_warnings,
    record_decision,
    revenue_fields,
    settle_erp_record,
)
from r2r_core.flows.invocation_reads import InvocationReads
from r2r_core.flows.resource_status import refuse_time_after_termination
from r2r_core.flows.time_summary import flush_period, mark_changed, summary_fields
from r2r_core.memo import ObjectMemo
from r2r_core.model.entities import BillingType, Engagement, RevenueMethod, TimeEntry
from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, StateStore

logger = Logger(child=True)

# What the decision (caps, budgets, retainer) and revenue need of the contract's other charges: where they
# are queried for every entry (``depends_on_other_charges``), reading only these keeps that read small as a
# contract's charges grow.
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
    key = (entry.role, entry.region, business_unit, decision.rule, billable)
    item_id, memo, segments = _TIME_BILL_REFS.table(account).get(key) or _time_bill_refs(account, key)
    return records.time_bill_body(
        job_id=job_id,
        employee_external_id=records.external_id("resource", entry.resource_id),
        tran_date=entry.work_date,
        hours=entry.hours,
        rate=decision.rate if billable else None,
        is_billable=billable,
        item_id=item_id,
        memo=memo,
        segments=segments,  # its fields, built once
    )


# Per ErpMapping object (r2r_core.memo: by identity, dropped with the mapping), per role, region, business
# unit, rule and billable: what a timeBill body takes of the account and the decision's words, asked for
# every entry and the same for every entry of a role in a region.
_TIME_BILL_REFS = ObjectMemo(max_objects=16, max_keys=1024)
_TimeBillRefs = tuple[str | None, str, Segments]


def _time_bill_refs(account: ErpMapping, key: tuple[str, str, str | None, str, bool]) -> _TimeBillRefs:
    """(the service item when billable, the memo, the segments) of ``key`` = (role, region, business unit,
    rule, billable), remembered for this mapping object."""
    role, region, business_unit, rule, billable = key
    found = (
        account.item_for("time", role) if billable else None,
        f"{role} ({region}) — {rule}",
        account.segments(region, business_unit),
    )
    return _TIME_BILL_REFS.put(_TIME_BILL_REFS.table(account), key, found)


class SummaryCounts:
    """One invocation's summary-mode change counts: one counter update per engagement and period.

    The first change of an engagement and period in the invocation is counted at once (so the period is
    pending — ``TIMESUM#PENDING#…`` exists — before any later step of the entry, its audit record above
    all, is written); the invocation's further changes of it are added up and counted together by
    :meth:`apply`, which the handler calls after the batch, before it answers. If the invocation dies
    before that, none of its messages is deleted: every one is delivered again, and a redelivery counts
    its change again (``_complete_recorded``); a spare count only brings a flush forward. A flush that
    ran meanwhile and removed the pending item is followed by :meth:`apply`'s count, which makes the
    period pending again for the changes it did not see.
    """

    def __init__(self) -> None:
        self._marked: set[tuple[str, str]] = set()
        self._deferred: dict[tuple[str, str], int] = {}
        self._context: dict[str, Any] = {}

    def first(self, engagement_id: str, period: str) -> bool:
        """Whether this is the invocation's first change of the engagement and period (then: count now)."""
        key = (engagement_id, period)
        if key in self._marked:
            return False
        self._marked.add(key)
        return True

    def defer(self, engagement_id: str, period: str, **context: Any) -> None:
        key = (engagement_id, period)
        self._deferred[key] = self._deferred.get(key, 0) + 1
        self._context = context  # what _count_change takes but the period: the same for the batch

    def apply(self) -> int:
        """Count the deferred changes; flush a period that reached its threshold. The ERP requests made."""
        deferred, self._deferred = self._deferred, {}
        return sum(
            _count_change(engagement_id=engagement_id, period=period, by=n, **self._context)
            for (engagement_id, period), n in deferred.items()
        )


def depends_on_other_charges(engagement: Engagement) -> bool:
    """Whether what posting an entry records must see every charge the contract committed until now.

    A retainer's drawdown (``decide_time_entry``: retainer contracts) and fixed-fee revenue by percent
    complete (to date minus what was recognised) do: a charge another invocation recorded meanwhile,
    unseen, would draw the same prepaid hours or recognise the same revenue twice. Caps do not need it: the
    invoice run checks every cap again on the rounded lines whatever was decided when the time was posted
    (``billing.invoicing``), so a cap decision taken on the batch's copy can only make an early warning
    late, never bill past a cap. Time and materials (capped or not, mixed with milestones) and fixed fees
    recognised at milestone acceptance keep the batch's copy.
    """
    if engagement.billing_type is BillingType.RETAINER:
        return True
    return (
        engagement.billing_type is BillingType.FIXED_FEE
        and engagement.revenue_method is RevenueMethod.PERCENT_COMPLETE
    )


def post_time(
    envelope: EventEnvelope,
    *,
    store: StateStore,
    audit: AuditLog,
    erp: Erp,
    publisher: Publisher | None = None,
    mapping: ErpMapping | None = None,
    reads: InvocationReads | None = None,
    counts: SummaryCounts | None = None,
    tail: BatchTail | None = None,
) -> dict[str, Any]:
    """Decide, post and record one approved time entry version.

    ``reads``: what the invocation (one SQS batch) already read (terms, worker status, the engagement's
    charges); a fresh one per handler call. Without it everything is read for this entry alone.
    ``counts``: the invocation's summary-mode change counts (the caller applies them after the batch);
    without it each change is counted at once.
    ``tail``: the invocation's last writes (``flows.batch_tail``): the revenue event and the audit record
    are handed to it, and written after the batch; without it they are written at once.
    """
    reads = reads or InvocationReads()
    entry = TimeEntry.model_validate(envelope.data)
    refuse_time_after_termination(store, entry, reads=reads)
    deal, terms = engagement_of(store, "time entry", entry, reads=reads)
    engagement = deal.engagement
    key = charge_key(entry.engagement_id, "time", entry.id)
    account = mapping or ErpMapping()
    if depends_on_other_charges(engagement):
        # Queried again for every entry, so only what the decision needs; the entry's own charge is read
        # whole, and as just read it replaces what the query saw.
        kept = reads.charges(store, entry.engagement_id, "CHARGE#", CONSUMPTION_FIELDS, fresh=True)
        existing, duplicate = prior_charge(store, audit, envelope, key=key, kind="time_entry")
        reads.remember(entry.engagement_id, "CHARGE#", key["sk"], existing)
    else:
        # Read whole once per invocation (and kept current with what it records): the entry's own stored
        # version comes with the others, without a read of its own. A version another invocation recorded
        # since is caught by the charge's conditional write (``record_decision``), which reads it then.
        kept = reads.charges(store, entry.engagement_id, "CHARGE#", None)
        existing, duplicate = prior_charge(
            store, audit, envelope, key=key, kind="time_entry", stored=kept.get(key["sk"])
        )
    if duplicate is not None:
        assert existing is not None
        _complete_recorded(
            envelope,
            entry,
            store=store,
            audit=audit,
            erp=erp,
            publisher=publisher,
            account=account,
            engagement=engagement,
            charge=existing,
            tail=tail,
        )
        return duplicate

    charges = list(kept.values())
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
        erp_fields = _summary_erp_fields(entry, decision, item_id=item_id, existing=existing, erp=erp)
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
            # The entry's id is ``source_id``; what it recognises is ``revenue_recognised`` (one 1 KB
            # write unit per charge: no attribute repeats another).
            "project_id": entry.project_id,
            "approved_at": entry.approved_at.isoformat(),
            "assignment_id": entry.assignment_id,
            "revenue_recognised": recognised,
            **erp_fields,
            # Summary mode: the revenue goes with the summary posting (``flows.time_summary``).
            **(
                _summary_revenue_fields(existing)
                if account.posts_time_in_summary
                else revenue_fields(revenue, recognised=recognised)
            ),
            "correlation_id": envelope.correlation_id,
        },
    )
    reads.remember(
        entry.engagement_id, "CHARGE#", key["sk"], recorded.item if recorded.written else recorded.previous
    )
    if not account.posts_time_in_summary:
        # Detail mode: the ERP record ends at the version that stands when two versions race.
        settle_erp_record(erp, recorded, record_type="timeBill", external_id=time_bill_eid, body=time_bill)
    if not recorded.written or recorded.item is None:
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
        publisher=publisher,
        counts=counts,
    )

    revenue_id = (
        publish_charge_revenue(
            publisher,
            charge=recorded.item,
            engagement=engagement,
            correlation_id=envelope.correlation_id,
            tail=tail,
        )
        if _revenue_per_entry(recorded.item)
        else None
    )
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
    _audit_charge(audit, envelope, recorded.item, warnings=warnings, revenue_id=revenue_id, tail=tail)
    logger.info(
        "time posted",
        extra={
            "time_entry_id": entry.id,
            "decision": decision.decision.value,
            "rule": decision.rule,
            "erp_time_bill_id": time_bill_id,
            "credit_queued": credited,
            "revenue_event_id": revenue_id,
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


def _summary_erp_fields(
    entry: TimeEntry,
    decision: ChargeDecision,
    *,
    item_id: str | None,
    existing: dict[str, Any] | None,
    erp: Erp,
) -> dict[str, Any]:
    """Summary mode: the entry is recorded here and posted to the ERP by the flush of its summary record
    (``flows.time_summary``)."""
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
    if (
        existing is not None
        and existing.get("erp_posting") == "summary"
        and existing.get("erp_summary_period") != erp_fields["erp_summary_period"]
    ):
        # Kept so that a redelivery after a crash counts the change in the period it left too.
        erp_fields["erp_previous_summary_period"] = existing["erp_summary_period"]
    return erp_fields


def _summary_revenue_fields(existing: Mapping[str, Any] | None) -> dict[str, Any]:
    """Summary mode: the entry's revenue goes with its summary record (``flows.time_summary``), so the
    charge stores none of its own — unless the version before was posted in detail mode and published
    its revenue entry by entry: then this version gives that back (``revenue_amount``, negative), since
    the summary record now publishes all the entry recognises."""
    if existing is None or existing.get("erp_posting") == "summary":
        return {}
    given = as_decimal(existing.get("revenue_recognised"))
    return {"revenue_amount": -given} if given else {}


def _revenue_per_entry(charge: Mapping[str, Any]) -> bool:
    """Whether a charge version publishes a revenue event of its own: in detail mode, and in summary
    mode only to give back what the entry published in detail mode (:func:`_summary_revenue_fields`)."""
    return charge.get("erp_posting") != "summary" or "revenue_amount" in charge


def _audit_charge(
    audit: AuditLog,
    envelope: EventEnvelope,
    charge: dict[str, Any],
    *,
    warnings: list[str],
    revenue_id: str | None,
    tail: BatchTail | None = None,
) -> None:
    """The audit record of a recorded charge version (once per event: a repeat is a no-op)."""
    audit_charge(
        audit,
        envelope,
        charge,
        kind="time_entry",
        tail=tail,
        erp_time_bill_id=charge.get("erp_time_bill_id"),
        erp_summary_external_id=charge.get("erp_summary_external_id"),
        credit_queued_for_version=charge.get("credited_version"),
        revenue_event_id=revenue_id,
        cap_warnings=warnings,
    )


def _complete_recorded(
    envelope: EventEnvelope,
    entry: TimeEntry,
    *,
    store: StateStore,
    audit: AuditLog,
    erp: Erp,
    publisher: Publisher | None,
    account: ErpMapping,
    engagement: Engagement,
    charge: dict[str, Any],
    tail: BatchTail | None = None,
) -> None:
    """A duplicate or stale version: complete what a crash right after recording a charge left undone.

    No idempotency record guards this consumer (the charge's version does), so a redelivery of the
    version stored finds the charge recorded and redoes the steps that follow it, each idempotent: the
    summary count (a spare count only brings the flush forward), the revenue event (a republish is the
    same event, by its deterministic id), the audit record (keyed by event; it also names the engagement,
    which is how an operator finds the charge by the entry's id). The audit record is written last, so
    when it exists for this event nothing is redone (nor republished). A stale version (a newer one is
    stored) has nothing to complete.
    """
    if int(charge["version"]) != envelope.source_record_version:
        return  # stale: the newer version stored completes its own steps
    if charge.get("erp_posting") == "summary":
        # Counted again even when the audit record shows the entry done: the invocation that recorded it
        # counts a batch's further changes after its last record (``SummaryCounts``), so its audit record
        # does not prove the count landed.
        previous = (
            {"erp_posting": "summary", "erp_summary_period": charge["erp_previous_summary_period"]}
            if charge.get("erp_previous_summary_period")
            else None
        )
        _count_summary_change(
            store=store,
            audit=audit,
            erp=erp,
            account=account,
            engagement_id=entry.engagement_id,
            erp_fields=charge,
            previous=previous,
            correlation_id=envelope.correlation_id,
            publisher=publisher,
        )
    if charge_audited(audit, envelope, charge, kind="time_entry", tail=tail):
        # The audit record is written last: everything before it was done (or, waiting in this batch's
        # tail, is written with it).
        return
    revenue_id = (
        publish_charge_revenue(
            publisher, charge=charge, engagement=engagement, correlation_id=envelope.correlation_id, tail=tail
        )
        if _revenue_per_entry(charge)
        else None
    )
    _audit_charge(audit, envelope, charge, warnings=[], revenue_id=revenue_id, tail=tail)


def _count_summary_change(
    *,
    store: StateStore,
    audit: AuditLog,
    erp: Erp,
    account: ErpMapping,
    engagement_id: str,
    erp_fields: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    correlation_id: str,
    publisher: Publisher | None = None,
    counts: SummaryCounts | None = None,
) -> int | None:
    """Summary mode: count the change in its period (and in the period the previous version was
    posted in, if any); flush a period that reached ``summary_flush_changes``. The ERP requests made.

    With ``counts`` only the invocation's first change of an engagement and period is counted here; the
    others wait for ``counts.apply()`` after the batch."""
    periods = []
    if previous is not None and previous.get("erp_posting") == "summary":
        periods.append(str(previous["erp_summary_period"]))
    if erp_fields.get("erp_posting") == "summary":
        periods.append(str(erp_fields["erp_summary_period"]))
    elif not periods:
        return None
    context: dict[str, Any] = {
        "store": store,
        "audit": audit,
        "erp": erp,
        "account": account,
        "correlation_id": correlation_id,
        "publisher": publisher,
    }
    requests = 0
    for period in dict.fromkeys(periods):
        if counts is not None and not counts.first(engagement_id, period):
            counts.defer(engagement_id, period, **context)
            continue
        requests += _count_change(engagement_id=engagement_id, period=period, **context)
    return requests


def _count_change(
    *,
    store: StateStore,
    audit: AuditLog,
    erp: Erp,
    account: ErpMapping,
    engagement_id: str,
    period: str,
    correlation_id: str,
    publisher: Publisher | None,
    by: int = 1,
) -> int:
    """Count ``by`` changes of the engagement's period; flush it once it reached ``summary_flush_changes``.
    The ERP requests made."""
    if mark_changed(store, engagement_id, period, by=by) < account.summary_flush_changes:
        return 0
    return flush_period(
        store,
        audit,
        erp,
        account,
        engagement_id=engagement_id,
        period=period,
        correlation_id=correlation_id,
        publisher=publisher,
    ).erp_requests
