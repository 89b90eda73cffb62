"""Scheduled EventBridge rules, which moto accepts but never fires.

A tick sends the rule's ``Scheduled Event`` to each of its targets the way EventBridge would
(SQS: ``SendMessage``; Lambda: an asynchronous invocation), honouring a target's ``Input`` or
``InputPath``. ``r2r local up`` ticks ``rate(...)`` rules on their period; scenarios, tests and
``r2r local tick`` tick any rule on demand (deterministic runs never wait for a clock).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.local import config

LOG = logging.getLogger("r2r.local.schedules")

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass
class ScheduleTarget:
    arn: str
    queue_url: str | None = None  # an SQS target
    function_name: str | None = None  # a Lambda target run locally
    input: str | None = None
    input_path: str | None = None


@dataclass
class ScheduleSpec:
    logical_id: str
    name: str
    arn: str
    expression: str
    enabled: bool = True
    targets: list[ScheduleTarget] = field(default_factory=list)

    @property
    def period_s(self) -> int | None:
        """Seconds between ticks of a ``rate(...)`` expression; None for ``cron(...)``."""
        match = _RATE.match(self.expression.strip())
        if match is None:
            return None
        return int(match.group(1)) * _UNIT_S[match.group(2).removesuffix("s")]


def scheduled_event(rule_arn: str, at: datetime | None = None) -> dict[str, Any]:
    """The event EventBridge sends for one tick of a scheduled rule."""
    moment = at or datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": config.ACCOUNT_ID,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": config.REGION,
        "resources": [rule_arn],
        "detail": {},
    }


def target_payload(target: ScheduleTarget, event: dict[str, Any]) -> str:
    """What the target receives: constant ``Input``, the ``InputPath`` part, or the whole event."""
    if target.input is not None:
        return target.input
    if target.input_path:
        value: Any = event
        for part in target.input_path.removeprefix("$").strip(".").split("."):
            if part:
                value = value.get(part) if isinstance(value, dict) else None
        return json.dumps(value)
    return json.dumps(event)


def find_schedule(schedules: list[ScheduleSpec], name: str, consumers: dict[str, str]) -> ScheduleSpec:
    """A schedule by logical id, physical name, logical-id prefix, or the folder of the function it feeds.

    ``consumers`` maps a target (queue URL or function name) to the source folder of the function
    that ends up running (``invoice_status_poller``).
    """
    lowered = name.lower()

    def feeds(schedule: ScheduleSpec) -> bool:
        return any(consumers.get(t.queue_url or t.function_name or "") == name for t in schedule.targets)

    for predicate in (
        lambda s: name in (s.logical_id, s.name),
        lambda s: s.logical_id.lower().startswith(lowered),
        feeds,
    ):
        found = [s for s in schedules if predicate(s)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise LookupError(f"{name!r} names several schedules: {', '.join(s.logical_id for s in found)}")
    known = ", ".join(f"{s.logical_id} ({s.expression})" for s in schedules) or "none"
    raise LookupError(f"no scheduled rule {name!r} in the template (scheduled rules: {known})")


def schedule_document(schedule: ScheduleSpec, consumers: dict[str, str]) -> dict[str, Any]:
    """A schedule as ``.r2r/local.json`` describes it (read back by :func:`schedule_from_document`)."""
    return {
        "name": schedule.name,
        "arn": schedule.arn,
        "expression": schedule.expression,
        "enabled": schedule.enabled,
        "targets": [
            {
                "arn": t.arn,
                "queue_url": t.queue_url,
                "function": t.function_name,
                "input": t.input,
                "input_path": t.input_path,
                "consumer": consumers.get(t.queue_url or t.function_name or ""),
            }
            for t in schedule.targets
        ],
    }


def schedule_from_document(logical_id: str, document: dict[str, Any]) -> ScheduleSpec:
    return ScheduleSpec(
        logical_id=logical_id,
        name=document["name"],
        arn=document["arn"],
        expression=document["expression"],
        enabled=bool(document.get("enabled", True)),
        targets=[
            ScheduleTarget(
                arn=t["arn"],
                queue_url=t.get("queue_url"),
                function_name=t.get("function"),
                input=t.get("input"),
                input_path=t.get("input_path"),
            )
            for t in document.get("targets") or []
        ],
    )


class Scheduler:
    """Ticks every enabled ``rate(...)`` rule on its period (first tick one period after start)."""

    def __init__(
        self,
        schedules: list[ScheduleSpec],
        tick: Callable[[ScheduleSpec], int],
        stop: threading.Event,
        speedup: float = 1.0,
    ) -> None:
        self._schedules = [s for s in schedules if s.enabled]
        self._tick = tick
        self._stop = stop
        self._speedup = max(speedup, 1e-6)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for schedule in self._schedules:
            if schedule.period_s is None:
                LOG.warning(
                    "rule %s (%s) is not ticked automatically; use `r2r local tick %s`",
                    schedule.logical_id,
                    schedule.expression,
                    schedule.logical_id,
                )
        periodic = [s for s in self._schedules if s.period_s]
        if periodic:
            self._thread = threading.Thread(
                target=self._run, args=(periodic,), name="r2r-scheduler", daemon=True
            )
            self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, schedules: list[ScheduleSpec]) -> None:
        started = time.monotonic()
        due = {s.logical_id: started + (s.period_s or 0) / self._speedup for s in schedules}
        while not self._stop.is_set():
            now = time.monotonic()
            for schedule in schedules:
                if now >= due[schedule.logical_id]:
                    due[schedule.logical_id] += (schedule.period_s or 0) / self._speedup
                    try:
                        self._tick(schedule)
                    except Exception:
                        LOG.exception("tick of %s failed", schedule.logical_id)
            self._stop.wait(max(0.05, min(due.values()) - time.monotonic()))
