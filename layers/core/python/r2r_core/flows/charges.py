"""Recording billing decisions (time and expenses) in StateTable, shared by the posting flows.

A decision is stored as a charge item (``CHARGE#<time entry>`` or ``EXPENSE#<expense>`` under
``ENG#<engagement>``), versioned. When a newer version of an already invoiced entry arrives, what
was invoiced is kept as an ``ADJUST#…`` item that the next billing run credits, and the new version
is decided and billed like any other: never a silent re-bill. Cap early warnings (80 %/100 %) and
revenue events are recorded once each and published when a publisher is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.billing.decisions import ZERO, ChargeDecision, Consumption, Decision
from r2r_core.billing.invoicing import cap_warnings
from r2r_core.billing.revenue import time_revenue_id, time_revenue_kind
from r2r_core.errors import EngagementNotReady
from r2r_core.flows.batch_tail import BatchTail
from r2r_core.flows.invocation_reads import InvocationReads
from r2r_core.flows.project_setup import load_terms
from r2r_core.model.entities import CapBasis, Engagement, RevenueEvent, SourceRecord
from r2r_core.model.events import EVENT_TYPES, EventEnvelope, event_id_for
from r2r_core.model.money import Money, round_money
from r2r_core.state import AuditLog, AuditRecord, StateStore, now_iso

logger = Logger(child=True)

SK_PREFIX = {"time": "CHARGE#", "expense": "EXPENSE#"}
BILLABLE_DECISIONS = {Decision.INVOICEABLE, Decision.DEFERRED, Decision.CAPPED}


class Publisher(Protocol):
    def publish(self, envelope: EventEnvelope) -> None: ...


def charge_key(engagement_id: str, kind: str, source_id: str) -> dict[str, str]:
    return {"pk": f"ENG#{engagement_id}", "sk": f"{SK_PREFIX[kind]}{source_id}"}


def as_decimal(value: Any) -> Decimal:
    """A stored number as Decimal (DynamoDB gives Decimal already; absent means zero)."""
    return value if isinstance(value, Decimal) else Decimal(str(value or 0))


_d = as_decimal


def engagement_of(
    store: StateStore, noun: str, record: Any, *, reads: InvocationReads | None = None
) -> tuple[Any, dict[str, Any]]:
    """The closed-won deal and stored terms that ``record`` (a time entry or expense) bills against
    (read once per invocation with ``reads``).

    Work can arrive before its engagement is set up (events are not ordered): that is retryable.
    """
    loaded = (reads or InvocationReads()).terms(record.engagement_id, lambda eid: load_terms(store, eid))
    if loaded is None:
        raise EngagementNotReady(
            f"{noun} {record.id} belongs to engagement {record.engagement_id}, which is not set up yet"
        )
    deal, terms = loaded
    if record.project_id != deal.project.id:
        # The engagement's project is the only one set up for it in this release.
        raise EngagementNotReady(f"{noun} {record.id} names project {record.project_id}, which is not set up")
    return deal, terms


_UNREAD: Any = object()


def prior_charge(
    store: StateStore,
    audit: AuditLog,
    envelope: EventEnvelope,
    *,
    key: Mapping[str, str],
    kind: str,
    stored: dict[str, Any] | None = _UNREAD,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The stored charge for the envelope's record, and a reply when its version is a duplicate or stale.

    A version at most as new as the stored one changes nothing (audited). ``stored``: the charge as the
    caller already read it (None: absent); read here when not given.
    """
    version = envelope.source_record_version
    existing = store.get(key["pk"], key["sk"]) if stored is _UNREAD else stored
    if existing is not None and existing["version"] >= version:
        audit.append(
            kind=kind,
            entity_id=envelope.source_record_id,
            action="stale_or_duplicate_ignored",
            event_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
            detail={"held_version": existing["version"], "received_version": version},
        )
        return existing, {"decision": existing["decision"], "duplicate": True}
    return existing, None


def consumption_from(items: Iterable[Mapping[str, Any]], *, exclude: str) -> Consumption:
    """Committed billable time of the contract (exact amounts) from its charge items, but one."""
    amount, hours, drawn = ZERO, ZERO, ZERO
    budgets: dict[str, tuple[Decimal, Decimal]] = {}
    for item in items:
        if item.get("source_id", item.get("time_entry_id")) == exclude:
            continue
        rate = _d(item.get("rate"))
        billable_hours = _d(item.get("billable_hours"))
        exact = billable_hours * rate
        if item.get("decision") in BILLABLE_DECISIONS:
            amount += exact
            hours += billable_hours
            if item.get("budget_id"):
                old = budgets.get(item["budget_id"], (ZERO, ZERO))
                budgets[item["budget_id"]] = (old[0] + exact, old[1] + billable_hours)
        drawn += _d(item.get("prepaid_hours")) * rate
    return Consumption(amount=amount, hours=hours, budgets=budgets, retainer_drawn=drawn)


def scope_totals(consumption: Consumption, engagement: Engagement) -> dict[str, tuple[Decimal, Decimal]]:
    totals = {"contract": (consumption.amount, consumption.hours)}
    for budget in engagement.budgets:
        totals[f"budget:{budget.id}"] = consumption.budgets.get(budget.id, (ZERO, ZERO))
    return totals


def decision_fields(decision: ChargeDecision) -> dict[str, Any]:
    """The stored form of a decision (Decimals stay Decimals; DynamoDB numbers are exact)."""
    return {
        "kind": decision.kind,
        "source_id": decision.source_id,
        "version": decision.version,
        "decision": decision.decision.value,
        "rule": decision.rule,
        "reason": decision.reason,
        "currency": decision.currency,
        "work_date": decision.work_date.isoformat(),
        "billable_from": decision.billable_from.isoformat(),
        "resource_id": decision.resource_id,
        "role": decision.role or None,
        "region": decision.region or None,
        "category": decision.category or None,
        "hours": decision.hours,
        "rate": decision.rate,
        "rate_rule": decision.rate_rule or None,
        "billable_hours": decision.billable_hours,
        "amount": decision.amount,
        "held_hours": decision.held_hours,
        "held_amount": decision.held_amount,
        "cap_policy": decision.cap_policy or None,
        "prepaid_hours": decision.prepaid_hours,
        "budget_id": decision.budget_id,
        "status": "unbilled" if decision.billable else "not_billable",
    }


@dataclass
class Recorded:
    written: bool
    previous: dict[str, Any] | None  # the replaced item; when not written, the newer one that stands
    # Another version was stored between our read and our write (and may have written the ERP after us).
    intervened: bool = False
    item: dict[str, Any] | None = None  # what was written


def audit_charge(
    audit: AuditLog,
    envelope: EventEnvelope,
    charge: Mapping[str, Any],
    *,
    kind: str,
    tail: BatchTail | None = None,
    **detail: Any,
) -> None:
    """The audit record of a recorded charge version (once per event: a repeat is a no-op): what was
    decided, plus the flow's own ``detail`` (ERP record, revenue event …).

    With ``tail`` it is written after the batch, after the message's events (``flows.batch_tail``)."""
    record = AuditRecord(
        **_charge_audit_key(envelope, charge, kind=kind),
        correlation_id=envelope.correlation_id,
        detail={
            # The engagement is how an operator finds the charge from the entry's id alone
            # (:func:`engagement_of_charge`): no lookup item is written per entry.
            "engagement_id": str(charge["pk"]).removeprefix("ENG#"),
            "version": charge["version"],
            "amount": charge["amount"],
            "currency": charge["currency"],
            "rule": charge["rule"],
            "reason": charge["reason"],
            **detail,
        },
    )
    if tail is not None:
        tail.append(audit, record)
    else:
        audit.record(record)


def charge_audited(
    audit: AuditLog,
    envelope: EventEnvelope,
    charge: Mapping[str, Any],
    *,
    kind: str,
    tail: BatchTail | None = None,
) -> bool:
    """Whether the charge version's audit record exists or waits in the batch's ``tail`` (then the
    current message waits on it too)."""
    key = _charge_audit_key(envelope, charge, kind=kind)
    return (tail is not None and tail.waiting(**key)) or audit.has(**key)


def _charge_audit_key(envelope: EventEnvelope, charge: Mapping[str, Any], *, kind: str) -> dict[str, str]:
    """What names a charge version's audit record: the entry, the event that caused it, the decision."""
    return {
        "kind": kind,
        "entity_id": str(charge["source_id"]),
        "event_id": envelope.event_id,
        "action": f"charge_{charge['decision']}",
    }


AUDIT_KINDS = {"time": "time_entry", "expense": "expense"}


def engagement_of_charge(store: StateStore, audit: AuditLog, *, kind: str, source_id: str) -> str | None:
    """The engagement of a time entry (``kind`` ``time``) or expense by its id alone; None when unknown.

    Every charge version's audit record names its engagement (:func:`audit_charge`), and an entry never
    changes engagement, so the entry's audit history (one ``Query``) answers it: posting writes no lookup
    item per entry. Entries recorded before the audit record named the engagement are found through
    their ``ENTRY#<kind>#<id>`` / ``LOOKUP`` item, written then.
    """
    for record in audit.history(AUDIT_KINDS[kind], source_id):
        engagement_id = json.loads(str(record.get("detail") or "{}")).get("engagement_id")
        if engagement_id:
            return str(engagement_id)
    legacy = store.get(f"ENTRY#{kind}#{source_id}", "LOOKUP")
    return str(legacy["engagement_id"]) if legacy else None


def charge_of(store: StateStore, audit: AuditLog, *, kind: str, source_id: str) -> dict[str, Any] | None:
    """The stored charge of a time entry or expense by its id alone (see :func:`engagement_of_charge`)."""
    engagement_id = engagement_of_charge(store, audit, kind=kind, source_id=source_id)
    if engagement_id is None:
        return None
    key = charge_key(engagement_id, kind, source_id)
    return store.get(key["pk"], key["sk"])


def record_decision(
    store: StateStore,
    *,
    engagement_id: str,
    decision: ChargeDecision,
    existing: dict[str, Any] | None,
    extra: Mapping[str, Any],
) -> Recorded:
    """Store the decision; an invoiced previous version becomes an ``ADJUST#`` item to credit.

    Optimistic: the write only succeeds if the stored item still has the status we read, so a
    charge the billing run marks invoiced meanwhile is seen (and credited) on the retry.
    """
    key = charge_key(engagement_id, decision.kind, decision.source_id)
    intervened = False
    for _attempt in range(3):
        if existing is not None and existing.get("status") == "invoiced":
            store.put_new(
                {
                    "pk": key["pk"],
                    "sk": f"ADJUST#{decision.kind}#{decision.source_id}#v{existing['version']}",
                    **{k: v for k, v in existing.items() if k not in {"pk", "sk"}},
                    "status": "pending",
                    "why": f"changed to version {decision.version}"
                    if decision.decision is not Decision.REJECTED
                    else f"version {decision.version}: {decision.rule.replace('-', ' ')}",
                    "superseded_at": now_iso(),
                }
            )
        item = {**key, **decision_fields(decision), **extra, "recorded_at": now_iso()}
        if existing is not None and existing.get("status") == "invoiced":
            item["credited_version"] = existing["version"]
            item["credited_invoice_id"] = existing.get("invoice_id")
        written = store.put_versioned(
            item,
            if_status=existing.get("status") if existing else None,
            replacing=int(existing["version"]) if existing else None,
            expect_new=existing is None,
        )
        if written:
            return Recorded(True, existing, intervened, item)
        current = store.get(key["pk"], key["sk"])
        if current is None or int(current["version"]) >= decision.version:
            return Recorded(False, current, True)
        if int(current["version"]) != (int(existing["version"]) if existing else -1):
            intervened = True
        existing = current
    return Recorded(False, existing, True)


def erp_body_json(body: Mapping[str, Any]) -> str:
    """An ERP request body as stored with its charge (money and hours as exact strings)."""

    def default(value: Any) -> str:
        if isinstance(value, Decimal):
            return format(value, "f")
        if isinstance(value, date):
            return value.isoformat()
        raise TypeError(f"cannot store {type(value).__name__} in an ERP body")

    return json.dumps(body, default=default, separators=(",", ":"), sort_keys=True)


class ErpWriter(Protocol):
    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str: ...


def settle_erp_record(
    erp: ErpWriter, recorded: Recorded, *, record_type: str, external_id: str, body: Mapping[str, Any]
) -> None:
    """Make the ERP record carry the version that stands after a race between versions of one record.

    The flows write the ERP before they record the charge, so two versions processed at once can
    write the ERP in one order and record in the other. When we lost (a newer version is recorded),
    that version's stored body is written again; when another version was recorded between our read
    and our write (it may have written the ERP after us), ours is written again. Upserts by external
    id: writing again is harmless.
    """
    if not recorded.intervened:
        return
    if recorded.written:
        erp.upsert(record_type, external_id, dict(body))
        return
    stored = (recorded.previous or {}).get("erp_body")
    if stored:
        erp.upsert(record_type, external_id, json.loads(stored))


def publish_event(
    publisher: Publisher, *, event_type: str, record: SourceRecord, correlation_id: str
) -> None:
    """Publish ``record`` as an r2r event; its id is deterministic, so a republish is the same event."""
    publisher.publish(event_envelope(event_type=event_type, record=record, correlation_id=correlation_id))


def event_envelope(*, event_type: str, record: SourceRecord, correlation_id: str) -> EventEnvelope:
    """``record`` as an r2r event, its id deterministic (type, record id, version)."""
    kind = EVENT_TYPES[event_type]
    return EventEnvelope(
        type=kind.name,
        schema_version=kind.schema_version,
        event_id=event_id_for("r2r", f"{event_type}/{record.id}/{record.version}"),
        source_system="r2r",
        source_record_id=record.id,
        source_record_version=record.version,
        correlation_id=correlation_id,
        occurred_at=datetime.now(UTC),
        data=record.model_dump(mode="json"),
    )


def publish_once(
    store: StateStore,
    publisher: Publisher | None,
    *,
    engagement_id: str,
    sk: str,
    event_type: str,
    record: SourceRecord,
    correlation_id: str,
) -> bool:
    """Record an event item once (by its id) and publish it at least once; True when new.

    The item is written ``pending`` first and marked ``published`` after the bus took the event, so
    a failure in between republishes on the retry (same deterministic event id).
    """
    pk = f"ENG#{engagement_id}"
    current = store.get(pk, sk)
    if current is not None and (current.get("status") == "published" or publisher is None):
        return False
    new = current is None and store.put_new(
        {
            "pk": pk,
            "sk": sk,
            "record": record.model_dump_json(),
            "type": event_type,
            "status": "pending" if publisher is not None else "recorded",
            "recorded_at": now_iso(),
        }
    )
    if publisher is not None:
        publish_event(publisher, event_type=event_type, record=record, correlation_id=correlation_id)
        store.update_if(
            pk, sk, set_values={"status": "published"}, condition="attribute_exists(pk)", values={}
        )
    return new


def raise_committed_warnings(
    store: StateStore,
    publisher: Publisher | None,
    *,
    engagement: Engagement,
    before: Consumption,
    decision: ChargeDecision,
    correlation_id: str,
    audit: AuditLog,
    event_id: str,
) -> list[str]:
    after = before.plus(decision)
    raised = []
    for warning in cap_warnings(
        engagement,
        basis=CapBasis.COMMITTED,
        before=scope_totals(before, engagement),
        after=scope_totals(after, engagement),
        on=decision.work_date,
    ):
        if publish_once(
            store,
            publisher,
            engagement_id=engagement.id,
            sk=f"CAPWARN#{warning.id}",
            event_type="billing.cap_threshold_reached",
            record=warning,
            correlation_id=correlation_id,
        ):
            raised.append(warning.id)
            audit.append(
                kind="engagement",
                entity_id=engagement.id,
                action="cap_threshold_reached",
                event_id=event_id,
                correlation_id=correlation_id,
                detail=warning.model_dump(mode="json"),
            )
            logger.warning(
                "cap threshold reached",
                extra={"engagement_id": engagement.id, "warning_id": warning.id},
            )
    return raised


def revenue_fields(event: RevenueEvent | None, *, recognised: Decimal) -> dict[str, Any]:
    """What a charge version stores of the revenue event it causes: nothing more than the charge itself.

    The event is rebuilt from the charge (:func:`revenue_of`): its id, kind and date follow from the charge
    and the engagement, and its amount is what the version adds to what the entry recognises, which for a
    first version is ``revenue_recognised`` itself. Only otherwise (a later version) is the amount stored,
    as ``revenue_amount`` (0: the version causes no event). The charge item stays within one 1 KB write
    unit, and no item or update per event is written: the charge's audit record, written after the event
    was published, is what tells a redelivery that the bus took it (``flows.time_posting``).
    """
    amount = event.amount.amount if event is not None else ZERO
    return {"revenue_amount": amount} if amount != recognised else {}


def revenue_of(charge: Mapping[str, Any], engagement: Engagement) -> RevenueEvent | None:
    """The revenue event a time charge version causes (see :func:`revenue_fields`); None when none."""
    amount = _d(charge.get("revenue_amount", charge.get("revenue_recognised")))
    if amount == 0:
        return None
    return RevenueEvent(
        id=time_revenue_id(str(charge["kind"]), str(charge["source_id"]), int(charge["version"])),
        engagement_id=engagement.id,
        project_id=str(charge["project_id"]),
        kind=time_revenue_kind(engagement),
        # Amounts are rounded to the minor unit when decided; DynamoDB may give "1680" for "1680.00".
        amount=Money(amount=round_money(amount, str(charge["currency"])), currency=str(charge["currency"])),
        recognized_on=date.fromisoformat(str(charge["work_date"])),
        source_ids=[str(charge["source_id"])],
    )


def publish_charge_revenue(
    publisher: Publisher | None,
    *,
    charge: Mapping[str, Any],
    engagement: Engagement,
    correlation_id: str,
    tail: BatchTail | None = None,
) -> str | None:
    """Publish the revenue event a time charge version causes (when there is a bus); its id.

    The event id is deterministic (type, record id, version): a republish is the same event. With
    ``tail`` it is put on the bus after the batch (``flows.batch_tail``).
    """
    event = revenue_of(charge, engagement)
    if event is None:
        return None
    if publisher is not None:
        envelope = event_envelope(
            event_type="revenue.recognized", record=event, correlation_id=correlation_id
        )
        if tail is not None:
            tail.publish(publisher, envelope)
        else:
            publisher.publish(envelope)
    return event.id


def record_revenue(
    store: StateStore,
    publisher: Publisher | None,
    *,
    event: RevenueEvent | None,
    correlation_id: str,
) -> str | None:
    if event is None:
        return None
    publish_once(
        store,
        publisher,
        engagement_id=event.engagement_id,
        sk=f"REVENUE#{event.id}",
        event_type="revenue.recognized",
        record=event,
        correlation_id=correlation_id,
    )
    return event.id
