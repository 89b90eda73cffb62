"""Emit ``aws.states`` execution status change events, which moto does not.

Watches every execution of the template's state machines and, for each status it has not
reported yet, puts a ``Step Functions Execution Status Change`` event on the default bus,
shaped like AWS's, so the template's rule on the default bus routes failures to its queue.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

LOG = logging.getLogger("r2r.local.sfn_events")

SOURCE = "aws.states"
DETAIL_TYPE = "Step Functions Execution Status Change"


def _epoch_ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return None


def status_change_detail(execution: dict[str, Any]) -> dict[str, Any]:
    """``detail`` of the event, from a DescribeExecution answer."""
    return {
        "executionArn": execution["executionArn"],
        "stateMachineArn": execution["stateMachineArn"],
        "name": execution.get("name"),
        "status": execution["status"],
        "startDate": _epoch_ms(execution.get("startDate")),
        "stopDate": _epoch_ms(execution.get("stopDate")),
        "input": execution.get("input"),
        "output": execution.get("output"),
        "error": execution.get("error"),
        "cause": execution.get("cause"),
        "inputDetails": execution.get("inputDetails") or {"included": True},
        "outputDetails": execution.get("outputDetails")
        or ({"included": True} if "output" in execution else None),
    }


class ExecutionWatcher:
    """Polls the state machines' executions and reports each status change once."""

    def __init__(
        self,
        state_machine_arns: Iterable[str],
        client: Callable[[str], Any],
        stop: threading.Event,
        interval_s: float = 0.2,
    ) -> None:
        self.state_machine_arns = list(state_machine_arns)
        self._client = client
        self._stop = stop
        self.interval_s = interval_s
        self._reported: dict[str, str] = {}  # execution ARN -> last status put on the bus
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._sfn: Any = None
        self._events: Any = None
        self.emitted: list[dict[str, Any]] = []

    def start(self) -> None:
        if not self.state_machine_arns:
            return
        self._thread = threading.Thread(target=self._run, name="r2r-sfn-events", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync()
            except Exception:
                if self._stop.is_set():
                    return
                LOG.exception("watching executions failed; retrying")

    def sync(self) -> tuple[set[str], int]:
        """Report every unreported status now; returns (RUNNING executions, events emitted)."""
        with self._lock:
            if self._sfn is None:
                self._sfn = self._client("stepfunctions")
                self._events = self._client("events")
            emitted = 0
            running: set[str] = set()
            for state_machine_arn in self.state_machine_arns:
                for summary in self._list(state_machine_arn):
                    arn, status = summary["executionArn"], summary["status"]
                    if status == "RUNNING":
                        running.add(arn)
                    if self._reported.get(arn) == status:
                        continue
                    execution = self._sfn.describe_execution(executionArn=arn)
                    if arn not in self._reported and execution["status"] != "RUNNING":
                        # AWS reports RUNNING first even when the execution ends at once.
                        self._put({**execution, "status": "RUNNING", "stopDate": None, "output": None})
                        emitted += 1
                    self._put(execution)
                    emitted += 1
                    self._reported[arn] = execution["status"]
                    if execution["status"] == "RUNNING":
                        running.add(arn)
                    else:
                        running.discard(arn)
            self._running = running
            return running, emitted

    def running(self) -> set[str]:
        with self._lock:
            return set(self._running)

    def _list(self, state_machine_arn: str) -> list[dict[str, Any]]:
        executions: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn, "maxResults": 1000}
        while True:
            page = self._sfn.list_executions(**kwargs)
            executions.extend(page.get("executions") or [])
            token = page.get("nextToken")
            if not token:
                return executions
            kwargs["nextToken"] = token

    def _put(self, execution: dict[str, Any]) -> None:
        detail = status_change_detail(execution)
        if detail["output"] is None:
            detail["outputDetails"] = None
        entry = {
            "Source": SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(detail),
            "Resources": [execution["executionArn"]],
            "EventBusName": "default",
        }
        response = self._events.put_events(Entries=[entry])
        if response.get("FailedEntryCount"):
            LOG.warning("aws.states event for %s was not accepted: %s", execution["executionArn"], response)
        LOG.debug("aws.states %s %s", detail["status"], execution["executionArn"])
        self.emitted.append(detail)


__all__ = ["DETAIL_TYPE", "SOURCE", "ExecutionWatcher", "status_change_detail"]
