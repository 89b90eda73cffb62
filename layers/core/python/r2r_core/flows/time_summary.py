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

from r2r_core.erp import records
from r2r_core.erp.mapping import ErpMapping
from r2r_core.flows.project_setup import load_terms
from r2r_core.state import AuditLog, StateStore, now_iso

logger = Logger(child=True)

RECORD_TYPE = "timeBill"
PENDING_SK = "TIMESUM#PENDING#"
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


def flush_period(
    store: StateStore,
    audit: AuditLog,
    erp: SummaryErp,
    mapping: ErpMapping,
    *,
    engagement_id: str,
    period: str,
    correlation_id: str,
    now: datetime | None = None,
) -> FlushResult:
    """Post the summary records of one engagement and period that changed since the last flush."""
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
    posted = {
        str(g["external_id"]): g
        for g in store.query_prefix(pk, GROUP_SK)
        if g.get("period") == period and g.get("status") == "posted"
    }
    result = FlushResult(engagement_id, period, flushed=True, entries=len(charges))
    for external_id, (body, members) in sorted(bodies.items()):
        fingerprint = _fingerprint(body)
        previous = posted.get(external_id)
        if previous is not None and previous.get("fingerprint") == fingerprint:
            result.unchanged += 1
            continue
        internal_id = erp.upsert(RECORD_TYPE, external_id, body)
        result.upserted += 1
        hours = _as_decimal(body["hours"])
        rate = _as_decimal(body.get("rate")) if body.get("rate") else None
        _save_group(
            store,
            pk,
            external_id,
            previous,
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
            },
        )
    for external_id, previous in sorted(posted.items()):
        if external_id in bodies:
            continue
        erp.delete_by_external_id(RECORD_TYPE, external_id)
        result.deleted += 1
        _save_group(
            store,
            pk,
            external_id,
            previous,
            {"period": period, "status": "deleted", "fingerprint": None, "hours": Decimal(0), "members": []},
        )
    if not store.delete_if(pk, pending_sk, condition="#changes = :seen", values={":seen": seen}):
        # Changed during the flush: stays pending (for the next flush), lease released.
        result.still_pending = True
        store.update_if(
            pk, pending_sk, set_values={"lease_until": 0}, condition="attribute_exists(pk)", values={}
        )
    if result.erp_requests:
        audit.append(
            kind="engagement",
            entity_id=engagement_id,
            action="time_summary_posted",
            event_id=f"timesum-{engagement_id}-{period}-{at.isoformat()}",
            correlation_id=correlation_id,
            detail={
                "period": period,
                "upserted": result.upserted,
                "deleted": result.deleted,
                "unchanged": result.unchanged,
                "entries": result.entries,
            },
        )
    logger.info(
        "time summary flushed",
        extra={
            "engagement_id": engagement_id,
            "period": period,
            "upserted": result.upserted,
            "deleted": result.deleted,
            "unchanged": result.unchanged,
            "entries": result.entries,
        },
    )
    return result


def _save_group(
    store: StateStore,
    pk: str,
    external_id: str,
    previous: Mapping[str, Any] | None,
    values: Mapping[str, Any],
) -> None:
    version = int(previous.get("version", 0)) + 1 if previous else 1
    current = store.get(pk, f"{GROUP_SK}{external_id}")
    if current is not None:
        version = max(version, int(current.get("version", 0)) + 1)
    store.put_versioned(
        {
            "pk": pk,
            "sk": f"{GROUP_SK}{external_id}",
            "external_id": external_id,
            "version": version,
            "posted_at": now_iso(),
            **values,
        }
    )


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
) -> PeriodEndFlush:
    """The period-end flush: every engagement's pending periods that ended before ``today``.

    ``workers`` periods are flushed at a time (keep it within the account's ERP concurrency share); no
    new period is started after ``deadline`` (``time.monotonic()``), and what is left is counted in
    ``remaining`` for the caller to come back for.
    """
    due = sorted(
        (str(item["engagement_id"]), str(item["period"]))
        for item in store.scan_prefix("ENG#", PENDING_SK)
        if period_end(str(item["period"])) < today
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
        )

    # Workers run in a copy of the caller's context: the function's environment (r2r_core.runtime) and
    # with it the AWS endpoint its clients are created for.
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="r2r-timesum") as pool:
        outcomes = list(pool.map(lambda due_period: context.copy().run(flush, *due_period), due))
    results = [r for r in outcomes if r is not None]
    return PeriodEndFlush(results=results, remaining=len(outcomes) - len(results))
