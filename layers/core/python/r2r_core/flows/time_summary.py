"""Summary posting of approved time: charges per entry in r2r, one ERP timeBill per group and period.

An account with ``time_posting: summary`` in its ERP mapping (``ErpMapping``) still gets a billing
decision and a charge item per time entry (``ENG#<engagement>`` / ``CHARGE#<entry>``, full lineage, the
same invoices), but ``time_posting`` does not call NetSuite per entry. Each charge names the summary
record it belongs to (``erp_summary_external_id``): one timeBill per engagement, project, role, region,
billing period (the month of the work date), rate and billable flag — the fields one NetSuite timeBill
can carry exactly — so the ERP's hours × rate equal, group by group, what detail mode would have posted.

Posting is a *flush*: the summary records of one engagement and period are recomputed from r2r's charges
(never incremented), and only the groups whose content changed are upserted by external id; a group
left without entries (moved by a correction to another role, period or rate) is deleted. Recomputing
from the charges makes a flush idempotent: redelivered entries, retried flushes and reordered corrections
all converge on what r2r holds. A flush happens

* when ``summary_flush_changes`` charges of the engagement and period changed since the last flush
  (the count is ``ENG#<engagement>`` / ``TIMESUM#PENDING#<yyyy-mm>``), by the ``time_posting`` call that
  reaches it;
* for every period that has ended, by the daily period-end tick (``billing_period_close``).

One flush at a time per engagement and period (a lease on the pending item): a flush that loses the race
leaves the period pending for the next. The pending item is removed only if nothing changed during the
flush, so a change recorded meanwhile is never lost. What was posted per group is kept as
``ENG#<engagement>`` / ``TIMESUM#GROUP#<external id>`` (hours, amount, member entries and versions).

Revenue goes with the posting: in summary mode ``time_posting`` publishes no ``revenue.recognized`` per
entry; the flush publishes one per group (and currency) whose recognised revenue changed — the sum of its
members' ``revenue_recognised`` less what the group published before (``revenue``), dated the period's
last day like the timeBill, ``source_ids`` its member entries, id ``rev-timesum-<digest>-v<group
version>``. A correction publishes the difference (negative when revenue went down; a group left
without entries gives back all it published). The events are saved in the group item
(``revenue_pending``) with its new totals before they are published and cleared after, so a flush that
dies in between is completed by the next flush of the period (same event ids: a republish is the same
event). At a month-end that is one revenue event per group instead of one per entry.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.billing.revenue import time_revenue_kind
from r2r_core.erp import records
from r2r_core.erp.mapping import ErpMapping
from r2r_core.flows.charges import Publisher, publish_event
from r2r_core.flows.project_setup import load_terms
from r2r_core.model.entities import Engagement, RevenueEvent
from r2r_core.model.money import Money, round_money
from r2r_core.state import SUMMARY_PENDING_SK, AuditLog, StateStore, now_iso

logger = Logger(child=True)

RECORD_TYPE = "timeBill"
PENDING_SK = SUMMARY_PENDING_SK
GROUP_SK = "TIMESUM#GROUP#"
LEASE_SECONDS = 120  # longer than a consumer's timeout: a crashed flush frees the period after it


class SummaryErp(Protocol):
    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str: ...

    def delete_by_external_id(self, record_type: str, external_id: str) -> bool: ...


def period_of(work_date: date | str) -> str:
    """The billing period of a work date: its month, ``yyyy-mm``."""
    return str(work_date.isoformat() if isinstance(work_date, date) else work_date)[:7]


def period_end(period: str) -> date:
    first = date.fromisoformat(f"{period}-01")
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def summary_external_id(
    engagement_id: str,
    *,
    project_id: str,
    role: str,
    region: str,
    period: str,
    billable: bool,
    rate: Decimal | None,
    item_id: str | None,
) -> str:
    """``r2r-timesum-<engagement>-<yyyy-mm>-<digest of the group>``, deterministic."""
    group = "|".join(
        [project_id, role, region, "billable" if billable else "non_billable", str(rate or ""), item_id or ""]
    )
    digest = hashlib.sha256(group.encode()).hexdigest()[:12]
    return records.external_id("timesum", f"{engagement_id}-{period}-{digest}")


def summary_fields(
    *,
    engagement_id: str,
    project_id: str,
    role: str,
    region: str,
    work_date: date,
    billable: bool,
    rate: Decimal | None,
    item_id: str | None,
) -> dict[str, Any]:
    """What a charge posted in summary mode records about its ERP summary record."""
    period = period_of(work_date)
    return {
        "erp_posting": "summary",
        "erp_summary_external_id": summary_external_id(
            engagement_id,
            project_id=project_id,
            role=role,
            region=region,
            period=period,
            billable=billable,
            rate=rate if billable else None,
            item_id=item_id if billable else None,
        ),
        "erp_summary_period": period,
        "erp_billable": billable,
        "erp_item_id": item_id if billable else None,
    }


def mark_changed(store: StateStore, engagement_id: str, period: str, *, by: int = 1) -> int:
    """Count ``by`` changed charges of the engagement and period; the count since the last flush."""
    return store.add_count(
        f"ENG#{engagement_id}",
        f"{PENDING_SK}{period}",
        "changes",
        by=by,
        set_values={"engagement_id": engagement_id, "period": period, "first_changed_at": now_iso()},
    )


def pending_periods(store: StateStore, engagement_id: str) -> list[str]:
    return sorted(str(item["period"]) for item in store.query_prefix(f"ENG#{engagement_id}", PENDING_SK))


@dataclass
class FlushResult:
    engagement_id: str
    period: str
    flushed: bool  # False: another flush held the period, or nothing was pending
    upserted: int = 0
    deleted: int = 0
    unchanged: int = 0
    entries: int = 0
    still_pending: bool = False
    revenue_events: int = 0

    @property
    def erp_requests(self) -> int:
        return self.upserted + self.deleted


def _fingerprint(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _as_decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value or 0))


def group_bodies(
    charges: Iterable[Mapping[str, Any]],
    *,
    job_id: str,
    business_unit: str | None,
    mapping: ErpMapping,
) -> dict[str, tuple[dict[str, Any], list[Mapping[str, Any]]]]:
    """The summary timeBill body of every group (by external id), with the charges it sums."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for charge in charges:
        groups[str(charge["erp_summary_external_id"])].append(charge)
    bodies: dict[str, tuple[dict[str, Any], list[Mapping[str, Any]]]] = {}
    for external_id, members in groups.items():
        members.sort(key=lambda c: str(c.get("source_id")))
        first = members[0]
        billable = bool(first.get("erp_billable"))
        role, region = str(first.get("role") or ""), str(first.get("region") or "")
        period = str(first["erp_summary_period"])
        hours = sum((_as_decimal(c.get("hours")) for c in members), Decimal(0))
        body = records.time_bill_body(
            job_id=job_id,
            employee_external_id=records.external_id("role", role or "unassigned"),
            tran_date=period_end(period),
            hours=hours,
            rate=_as_decimal(first.get("rate")) if billable else None,
            is_billable=billable,
            item_id=first.get("erp_item_id") if billable else None,
            memo=f"{role} ({region}) — {len(members)} entries, {period} (r2r summary)",
            segments=mapping.segments(region or None, business_unit).as_fields(),
        )
        bodies[external_id] = (body, members)
    return bodies


def group_revenue(members: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    """The revenue a group's members recognise, by currency (only currencies with revenue)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for charge in members:
        amount = _as_decimal(charge.get("revenue_recognised"))
        if amount:
            totals[str(charge["currency"])] += amount
    return {currency: round_money(total, currency) for currency, total in sorted(totals.items()) if total}


def _published_revenue(
    previous: Mapping[str, Any] | None, members: list[Mapping[str, Any]]
) -> dict[str, Decimal]:
    """What a group published before, by currency.

    A group saved before revenue went with the posting has no ``revenue``: its entries published their
    revenue one by one then, and this takes them as having published what its members recognise now. A
    change recorded between that upgrade and the group's next flush is therefore not published (its
    per-entry event was not sent either); from that flush on the group keeps its own ``revenue``.
    """
    if previous is None:
        return {}
    if "revenue" not in previous:
        return group_revenue(members)
    return {str(k): _as_decimal(v) for k, v in dict(previous["revenue"] or {}).items()}


def _revenue_events(
    engagement: Engagement,
    *,
    external_id: str,
    version: int,
    project_id: str,
    period: str,
    now: Mapping[str, Decimal],
    before: Mapping[str, Decimal],
    members: list[Mapping[str, Any]],
) -> list[RevenueEvent]:
    """The revenue events of a group's new version: what changed, by currency."""
    events = []
    for currency in sorted(set(now) | set(before)):
        delta = now.get(currency, Decimal(0)) - before.get(currency, Decimal(0))
        if not delta:
            continue
        digest = hashlib.sha256(f"{external_id}|{currency}".encode()).hexdigest()[:16]
        events.append(
            RevenueEvent(
                id=f"rev-timesum-{digest}-v{version}",
                engagement_id=engagement.id,
                project_id=project_id,
                kind=time_revenue_kind(engagement),
                amount=Money(amount=round_money(delta, currency), currency=currency),
                recognized_on=period_end(period),
                source_ids=sorted(
                    {str(m["source_id"]) for m in members if str(m.get("currency")) == currency}
                ),
            )
        )
    return events


def _publish_pending(
    store: StateStore,
    publisher: Publisher | None,
    group: Mapping[str, Any],
    *,
    correlation_id: str,
) -> int:
    """Publish the revenue events a group item holds as pending, then clear them; how many."""
    pending = list(group.get("revenue_pending") or [])
    if publisher is None or not pending:
        return 0
    for raw in pending:
        event = RevenueEvent.model_validate_json(str(raw))
        publish_event(publisher, event_type="revenue.recognized", record=event, correlation_id=correlation_id)
    store.update_if(
        str(group["pk"]),
        str(group["sk"]),
        set_values={"revenue_pending": []},
        condition="#version = :version",
        values={":version": group["version"]},
    )
    return len(pending)


def flush_period(
    store: StateStore,
    audit: AuditLog,
    erp: SummaryErp,
    mapping: ErpMapping,
    *,
    engagement_id: str,
    period: str,
    correlation_id: str,
    publisher: Publisher | None = None,
    now: datetime | None = None,
) -> FlushResult:
    """Post the summary records of one engagement and period that changed since the last flush, and
    publish the revenue their changes recognise (``publisher``; see the module's docstring)."""
    pk, pending_sk = f"ENG#{engagement_id}", f"{PENDING_SK}{period}"
    at = now or datetime.now(UTC)
    took = store.update_if(
        pk,
        pending_sk,
        set_values={"lease_until": int(at.timestamp()) + LEASE_SECONDS},
        condition="attribute_exists(pk) AND (attribute_not_exists(#lease_until) OR #lease_until < :now)",
        values={":now": int(at.timestamp())},
    )
    if not took:
        return FlushResult(engagement_id, period, flushed=False, still_pending=True)
    pending = store.get(pk, pending_sk) or {}
    seen = int(pending.get("changes", 0))
    loaded = load_terms(store, engagement_id)
    if loaded is None:  # cannot happen for a recorded charge; keep the period pending
        store.update_if(
            pk, pending_sk, set_values={"lease_until": 0}, condition="attribute_exists(pk)", values={}
        )
        return FlushResult(engagement_id, period, flushed=False, still_pending=True)
    deal, terms = loaded
    charges = [
        c
        for c in store.query_prefix(pk, "CHARGE#")
        if c.get("erp_posting") == "summary" and c.get("erp_summary_period") == period
    ]
    bodies = group_bodies(
        charges, job_id=terms["erp_job_id"], business_unit=deal.engagement.business_unit, mapping=mapping
    )
    groups = [g for g in store.query_prefix(pk, GROUP_SK) if g.get("period") == period]
    result = FlushResult(engagement_id, period, flushed=True, entries=len(charges))
    for group in groups:
        # What a flush that died after saving a group left unpublished.
        result.revenue_events += _publish_pending(store, publisher, group, correlation_id=correlation_id)
    posted = {str(g["external_id"]): g for g in groups if g.get("status") == "posted"}
    engagement = deal.engagement

    def save(
        external_id: str,
        previous: Mapping[str, Any] | None,
        members: list[Mapping[str, Any]],
        project_id: str,
        values: Mapping[str, Any],
        *,
        revenue: Mapping[str, Decimal],
        before: Mapping[str, Decimal],
    ) -> None:
        version = _next_version(store, pk, external_id, previous)
        events = _revenue_events(
            engagement,
            external_id=external_id,
            version=version,
            project_id=project_id,
            period=period,
            now=revenue,
            before=before,
            members=members,
        )
        group = _save_group(
            store,
            pk,
            external_id,
            version,
            {
                **values,
                "revenue": revenue,
                # Saved before they are published (an outbox): a flush that dies now is completed by the next.
                "revenue_pending": [e.model_dump_json() for e in events] if publisher is not None else [],
            },
        )
        if group is not None:
            result.revenue_events += _publish_pending(store, publisher, group, correlation_id=correlation_id)

    for external_id, (body, members) in sorted(bodies.items()):
        fingerprint = _fingerprint(body)
        previous = posted.get(external_id)
        same_body = previous is not None and previous.get("fingerprint") == fingerprint
        revenue, before = group_revenue(members), _published_revenue(previous, members)
        if same_body and revenue == before:
            result.unchanged += 1
            continue
        if same_body:
            assert previous is not None
            internal_id = previous.get("erp_id")  # the revenue changed, not the ERP record
        else:
            internal_id = erp.upsert(RECORD_TYPE, external_id, body)
            result.upserted += 1
        hours = _as_decimal(body["hours"])
        rate = _as_decimal(body.get("rate")) if body.get("rate") else None
        save(
            external_id,
            previous,
            members,
            str(members[0]["project_id"]),
            {
                "period": period,
                "status": "posted",
                "fingerprint": fingerprint,
                "erp_id": internal_id,
                "hours": hours,
                "rate": rate,
                "billable": bool(body["isBillable"]),
                "amount": hours * rate if rate is not None and body["isBillable"] else Decimal(0),
                "members": [f"{m.get('source_id')}@v{m.get('version')}" for m in members],
                "project_id": str(members[0]["project_id"]),
            },
            revenue=revenue,
            before=before,
        )
    for external_id, previous in sorted(posted.items()):
        if external_id in bodies:
            continue
        erp.delete_by_external_id(RECORD_TYPE, external_id)
        result.deleted += 1
        save(
            external_id,
            previous,
            [],
            str(previous.get("project_id") or ""),
            {"period": period, "status": "deleted", "fingerprint": None, "hours": Decimal(0), "members": []},
            revenue={},
            before=_published_revenue(previous, []),
        )
    if not store.delete_if(pk, pending_sk, condition="#changes = :seen", values={":seen": seen}):
        # Changed during the flush: stays pending (for the next flush), lease released.
        result.still_pending = True
        store.update_if(
            pk, pending_sk, set_values={"lease_until": 0}, condition="attribute_exists(pk)", values={}
        )
    _record_flush(audit, result, at=at, correlation_id=correlation_id)
    return result


def _record_flush(audit: AuditLog, result: FlushResult, *, at: datetime, correlation_id: str) -> None:
    """The flush's audit record (when it posted or published anything) and its log line."""
    engagement_id, period = result.engagement_id, result.period
    counts = {
        "upserted": result.upserted,
        "deleted": result.deleted,
        "unchanged": result.unchanged,
        "entries": result.entries,
        "revenue_events": result.revenue_events,
    }
    if result.erp_requests or result.revenue_events:
        audit.append(
            kind="engagement",
            entity_id=engagement_id,
            action="time_summary_posted",
            event_id=f"timesum-{engagement_id}-{period}-{at.isoformat()}",
            correlation_id=correlation_id,
            detail={"period": period, **counts},
        )
    logger.info("time summary flushed", extra={"engagement_id": engagement_id, "period": period, **counts})


def _next_version(store: StateStore, pk: str, external_id: str, previous: Mapping[str, Any] | None) -> int:
    version = int(previous.get("version", 0)) + 1 if previous else 1
    current = store.get(pk, f"{GROUP_SK}{external_id}")
    if current is not None:
        version = max(version, int(current.get("version", 0)) + 1)
    return version


def _save_group(
    store: StateStore, pk: str, external_id: str, version: int, values: Mapping[str, Any]
) -> dict[str, Any] | None:
    group = {
        "pk": pk,
        "sk": f"{GROUP_SK}{external_id}",
        "external_id": external_id,
        "version": version,
        "posted_at": now_iso(),
        **values,
    }
    # One flush at a time holds the period (its lease): a newer version stored means this one is moot.
    return group if store.put_versioned(group) else None


@dataclass
class PeriodEndFlush:
    results: list[FlushResult]
    remaining: int  # pending periods left for the next invocation (the deadline came first)


def flush_ended_periods(
    store: StateStore,
    audit: AuditLog,
    erp: SummaryErp,
    mapping: ErpMapping,
    *,
    today: date,
    correlation_id: str,
    workers: int = 4,
    deadline: float | None = None,
    publisher: Publisher | None = None,
    items: Iterable[Mapping[str, Any]] | None = None,
) -> PeriodEndFlush:
    """The period-end flush: every engagement's pending periods that ended before ``today``.

    ``workers`` periods are flushed at a time (keep it within the account's ERP concurrency share); no
    new period is started after ``deadline`` (``time.monotonic()``), and what is left is counted in
    ``remaining`` for the caller to come back for. ``items``: StateTable items the tick already read
    (``flows.period_close.period_end_items``), its pending summaries among them; else they are read now.
    """
    pending = store.scan_prefix("ENG#", PENDING_SK) if items is None else items
    due = sorted(
        (str(item["engagement_id"]), str(item["period"]))
        for item in pending
        if str(item["sk"]).startswith(PENDING_SK) and period_end(str(item["period"])) < today
    )

    def flush(engagement_id: str, period: str) -> FlushResult | None:
        if deadline is not None and time.monotonic() > deadline:
            return None
        return flush_period(
            store,
            audit,
            erp,
            mapping,
            engagement_id=engagement_id,
            period=period,
            correlation_id=correlation_id,
            publisher=publisher,
        )

    # Workers run in a copy of the caller's context: the function's environment (r2r_core.runtime) and
    # with it the AWS endpoint its clients are created for.
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="r2r-timesum") as pool:
        outcomes = list(pool.map(lambda due_period: context.copy().run(flush, *due_period), due))
    results = [r for r in outcomes if r is not None]
    return PeriodEndFlush(results=results, remaining=len(outcomes) - len(results))
