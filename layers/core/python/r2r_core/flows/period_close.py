"""Period-end billing: a daily tick starts one invoice run per contract billed monthly and ended period.

A contract with ``billing_schedule: monthly`` is billed in arrears: its time and expenses are decided
``deferred`` until the day after the end of their month (``billable_from``), or billable at once when
approved after that month ended. Without a milestone nothing would ever invoice them, so every tick looks
for engagements billed monthly with unbilled charges billable by the day after the last ended period
(the last day of the month before the tick) and starts the milestone-to-invoice state machine for that
engagement and period with ``period_end`` instead of ``milestone_id``. The execution name
``<engagement>-period-<yyyy-mm-dd>`` is deterministic: a second tick (or a redelivered one) in the same
period starts nothing new, and whatever becomes billable later goes on the next period's invoice.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from r2r_core.flows.milestones import execution_name
from r2r_core.model.entities import BillingSchedule, ClosedWonDeal, Engagement
from r2r_core.state import SUMMARY_PENDING_SK, AuditLog, StateStore

logger = Logger(child=True)

CHARGE_PREFIXES = ("CHARGE#", "EXPENSE#")


@dataclass(frozen=True)
class Tick:
    """The scheduled event(s) of one invocation: the latest one's id and time decide the run."""

    event_id: str
    at: datetime


def tick_from(bodies: Iterable[str]) -> Tick:
    """The latest of the EventBridge ``Scheduled Event`` bodies an SQS batch carried."""
    ticks = []
    for body in bodies:
        event = json.loads(body)
        at = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        ticks.append(Tick(event_id=str(event["id"]), at=at if at.tzinfo else at.replace(tzinfo=UTC)))
    if not ticks:
        raise ValueError("no scheduled event in the batch")
    return max(ticks, key=lambda t: (t.at, t.event_id))


def last_ended_period(today: date) -> date:
    """The end of the last monthly period ended before ``today``: the previous month's last day."""
    return today.replace(day=1) - timedelta(days=1)


def period_execution_name(engagement_id: str, period_end: date) -> str:
    return execution_name(engagement_id, f"period-{period_end.isoformat()}")


@dataclass(frozen=True)
class DuePeriod:
    engagement_id: str
    period_end: date
    charges: tuple[str, ...]  # the unbilled charges (time entry / expense ids) that make it due


def period_billed(engagement: Engagement, completed_milestones: Iterable[str]) -> bool:
    """Whether the period-end run bills a contract: billed monthly, or billed with the next invoice and
    without an open milestone (none in the contract, or all of them completed)."""
    if engagement.billing_schedule is BillingSchedule.MONTHLY:
        return True
    return not {m.id for m in engagement.milestones} - set(completed_milestones)


# What the period-end tick reads of StateTable, in one scan for both of its steps: per engagement its terms,
# completed milestones, pending credits, unbilled charges (the invoice runs due) and pending time summaries
# (the flush, ``flows.time_summary``), with the attributes they use. DynamoDB reads every item of the table
# (and bills the reads) but returns only these: the charges already invoiced, by far the most items of a
# table that grows every month, never leave it.
PERIOD_END_CONDITION = (
    "begins_with(pk, :engagement) AND (sk = :terms OR begins_with(sk, :milestone)"
    " OR begins_with(sk, :summary_pending)"
    " OR (begins_with(sk, :adjust) AND #status = :pending)"
    " OR ((begins_with(sk, :charge) OR begins_with(sk, :expense)) AND #status = :unbilled))"
)
PERIOD_END_VALUES = {
    ":engagement": "ENG#",
    ":terms": "TERMS",
    ":milestone": "MILESTONE#",
    ":summary_pending": SUMMARY_PENDING_SK,
    ":adjust": "ADJUST#",
    ":pending": "pending",
    ":charge": "CHARGE#",
    ":expense": "EXPENSE#",
    ":unbilled": "unbilled",
}
PERIOD_END_FIELDS = (
    "status",
    "billable_from",
    "work_date",
    "source_id",
    "time_entry_id",
    "deal",
    "engagement_id",
    "period",
)


# A parallel scan: the table is read by this many segments at once, so the tick's read of a table that grows
# every month takes a quarter of the time of one reader (the function times out after 300 s).
PERIOD_END_SEGMENTS = 4


def period_end_items(store: StateStore) -> list[dict[str, Any]]:
    """The items both steps of the period-end tick need (:data:`PERIOD_END_CONDITION`), in one scan."""
    return store.scan_where(
        PERIOD_END_CONDITION, PERIOD_END_VALUES, fields=PERIOD_END_FIELDS, segments=PERIOD_END_SEGMENTS
    )


def due_periods(
    store: StateStore, *, today: date, items: Iterable[Mapping[str, Any]] | None = None
) -> list[DuePeriod]:
    """Engagements billed monthly (or with the next invoice, without an open milestone) with unbilled
    charges billable by the day after the last ended period, or with credits pending.

    ``items``: what :func:`period_end_items` read (read now when not given)."""
    period_end = last_ended_period(today)
    through = period_end + timedelta(days=1)
    engagements: dict[str, Engagement] = {}
    completed: dict[str, set[str]] = defaultdict(set)
    due: dict[str, list[str]] = defaultdict(list)
    for item in period_end_items(store) if items is None else items:
        engagement_id = str(item["pk"]).removeprefix("ENG#")
        sk = str(item["sk"])
        if sk == "TERMS":
            engagements[engagement_id] = ClosedWonDeal.model_validate_json(item["deal"]).engagement
        elif sk.startswith("MILESTONE#"):
            completed[engagement_id].add(sk.removeprefix("MILESTONE#"))
        elif sk.startswith("ADJUST#") and item.get("status") == "pending":
            # A credit queued for an invoiced entry that changed: the next run credits it.
            due[engagement_id].append(str(item.get("source_id") or sk))
        elif sk.startswith(CHARGE_PREFIXES) and item.get("status") == "unbilled":
            billable_from = item.get("billable_from") or item.get("work_date")
            if billable_from and date.fromisoformat(str(billable_from)) <= through:
                due[engagement_id].append(str(item.get("source_id") or item.get("time_entry_id") or sk))
    return [
        DuePeriod(engagement_id, period_end, tuple(sorted(due[engagement_id])))
        for engagement_id in sorted(set(due) & set(engagements))
        if period_billed(engagements[engagement_id], completed[engagement_id])
    ]


def close_billing_periods(
    *,
    store: StateStore,
    audit: AuditLog,
    sfn: Any,
    state_machine_arn: str,
    tick: Tick,
    items: Iterable[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Start one period-end invoice run per due engagement (``ExecutionAlreadyExists``: already started).

    ``items``: what :func:`period_end_items` read for this tick (read now when not given)."""
    started: list[str] = []
    already: list[str] = []
    for period in due_periods(store, today=tick.at.date(), items=items):
        name = period_execution_name(period.engagement_id, period.period_end)
        execution_input = {
            "engagement_id": period.engagement_id,
            "period_end": period.period_end.isoformat(),
            "correlation_id": name,
            "event_id": tick.event_id,
        }
        try:
            response = sfn.start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input)
            )
            execution_arn = response["executionArn"]
            action = "invoice_run_started"
            started.append(name)
        except sfn.exceptions.ExecutionAlreadyExists:
            # An earlier tick of this period started it: that run owns the period's invoice.
            execution_arn = f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
            action = "invoice_run_already_started"
            already.append(name)
        audit.append(
            kind="billing_period",
            entity_id=f"{period.engagement_id}-period-{period.period_end.isoformat()}",
            action=action,
            event_id=tick.event_id,
            correlation_id=name,
            detail={
                "execution_arn": execution_arn,
                "engagement_id": period.engagement_id,
                "period_end": period.period_end.isoformat(),
                "charges": list(period.charges),
            },
        )
        logger.info("period invoice run", extra={"execution_name": name, "action": action})
    return {"started": started, "already_started": already}
