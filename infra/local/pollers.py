"""SQS pollers that play Lambda's event source mappings.

moto's own SQS->Lambda mapping ignores ``ReportBatchItemFailures``, so the local stack never
creates the template's mappings in moto and polls the queues itself, per mapping:

- ``BatchSize`` messages per invocation (gathered from as many receives as are immediately
  answered; the batching window is not waited for locally);
- ``FunctionResponseTypes: [ReportBatchItemFailures]``: only the succeeded messages are
  deleted, the failed ones become visible again after a short local delay;
- a whole-batch exception (or an invalid batch response) fails every message;
- the queue's redrive policy moves a message to its DLQ after ``maxReceiveCount`` receives
  (moto does this on receive);
- ``ScalingConfig.MaximumConcurrency`` is the number of worker threads (capped locally);
- ``FilterCriteria``: messages matching no filter are deleted without invoking, like Lambda.

Test hook: :class:`CrashPlan` makes a consumer "die" in the middle of a batch (its first records
processed and committed, then nothing reported or deleted: the whole batch comes back, as on AWS
when the runtime crashes), so tests can check that a redelivered half-done batch changes nothing.
Each poller counts what it did (:class:`PollerStats`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from infra.local import config
from infra.local.functions import FunctionRuntime
from infra.local.provision import MappingSpec

if TYPE_CHECKING:
    from moto.events.models import EventPattern

LOG = logging.getLogger("r2r.local.pollers")

_SYSTEM_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of an SQS event as Lambda delivers it."""
    attributes = {k: v for k, v in (message.get("Attributes") or {}).items() if k in _SYSTEM_ATTRIBUTES}
    message_attributes: dict[str, Any] = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        binary = value.get("BinaryValue")
        message_attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode() if isinstance(binary, bytes) else binary,
            "stringListValues": list(value.get("StringListValues") or []),
            "binaryListValues": [
                base64.b64encode(b).decode() if isinstance(b, bytes) else b
                for b in value.get("BinaryListValues") or []
            ],
            "dataType": value.get("DataType", "String"),
        }
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": config.REGION,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_message_ids(result: Any, batch_ids: Iterable[str]) -> set[str]:
    """Message ids to retry, from a handler's partial batch response (Lambda's rules)."""
    ids = set(batch_ids)
    if result is None or result in ({}, ""):
        return set()
    if not isinstance(result, dict):
        LOG.warning("batch response is not an object: the whole batch failed")
        return ids
    failures = result.get("batchItemFailures")
    if not failures:
        return set()
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in ids:
            LOG.warning("invalid itemIdentifier %r in batch response: the whole batch failed", identifier)
            return ids
        failed.add(identifier)
    return failed


def _matches_filters(record: dict[str, Any], patterns: list[EventPattern]) -> bool:
    if not patterns:
        return True
    view = dict(record)
    with contextlib.suppress(TypeError, ValueError):
        view["body"] = json.loads(record["body"])
    return any(pattern.matches_event(view) for pattern in patterns)  # type: ignore[arg-type]


def _patterns(filters: list[dict[str, Any]]) -> list[EventPattern]:
    """FilterCriteria patterns, matched with moto's EventBridge pattern matcher (same grammar)."""
    if not any(filters):
        return []
    from moto.events.models import EventPattern

    return [EventPattern.load(json.dumps(f)) for f in filters if f]


@dataclass
class PollerStats:
    """What one mapping's pollers did: batches and records handed to the function, records that failed
    (made visible again for a retry), records deleted, injected crashes."""

    batches: int = 0
    records: int = 0
    failed: int = 0
    deleted: int = 0
    crashes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class CrashPlan:
    """Injected consumer crashes (tests only): the next ``times`` batches of ``function`` with more than
    ``after_records`` records process only their first ``after_records`` records, then the "process
    dies": no batch response, nothing deleted, every message of the batch visible again for a retry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, list[int]] = {}  # function name -> [after_records, times left]

    def arm(self, function_name: str, *, after_records: int, times: int = 1) -> None:
        if after_records < 1 or times < 1:
            raise ValueError("after_records and times must be at least 1")
        with self._lock:
            self._plans[function_name] = [after_records, times]

    def take(self, function_name: str, batch_size: int) -> int | None:
        """How many records to process before crashing this batch, or None (no crash)."""
        with self._lock:
            plan = self._plans.get(function_name)
            if plan is None or plan[1] <= 0 or batch_size <= plan[0]:
                return None
            plan[1] -= 1
            return plan[0]


class QueuePoller:
    """The worker threads of one event source mapping."""

    def __init__(
        self,
        mapping: MappingSpec,
        runtime: FunctionRuntime,
        sqs_client: Callable[[], Any],
        stop: threading.Event,
        retry_delay_s: int = config.RETRY_DELAY_S,
        *,
        crashes: CrashPlan | None = None,
    ) -> None:
        self.mapping = mapping
        self.crashes = crashes
        self.stats = PollerStats()
        self._stats_lock = threading.Lock()
        self.runtime = runtime
        self._sqs_client = sqs_client
        self._stop = stop
        self.retry_delay_s = retry_delay_s
        self._threads: list[threading.Thread] = []
        self._patterns = _patterns(mapping.filters)
        self._batch_size = max(1, mapping.batch_size)
        wanted = mapping.max_concurrency or config.DEFAULT_WORKERS_PER_MAPPING
        self.workers = max(1, min(wanted, config.MAX_WORKERS_PER_MAPPING))

    def start(self) -> None:
        if not self.mapping.enabled:
            LOG.info("event source mapping %s is disabled in the template", self.mapping.logical_id)
            return
        for index in range(self.workers):
            thread = threading.Thread(
                target=self._run,
                name=f"r2r-poller-{self.mapping.queue.name}-{index}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        sqs = self._sqs_client()
        while not self._stop.is_set():
            try:
                messages = self._receive(sqs)
                if messages:
                    self._process(sqs, messages)
            except Exception:
                if self._stop.is_set():
                    return
                LOG.exception("poller of %s failed; retrying", self.mapping.queue.name)
                self._stop.wait(0.5)

    def _receive(self, sqs: Any) -> list[dict[str, Any]]:
        queue = self.mapping.queue
        messages: list[dict[str, Any]] = []
        # Long polling: moto answers at once when a message arrives, so a longer wait costs no latency,
        # only fewer idle requests (dozens of idle workers would otherwise keep moto busy); stopping
        # the stack stops moto first, which ends the waits at once.
        wait = config.POLL_WAIT_S
        while len(messages) < self._batch_size and not self._stop.is_set():
            response = sqs.receive_message(
                QueueUrl=queue.url,
                MaxNumberOfMessages=min(10, self._batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages") or []
            messages.extend(received)
            if not received:
                break
            wait = 0  # take what is already there, do not wait for a full batch
        return messages

    def _process(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        queue = self.mapping.queue
        records = [sqs_record(m, queue.arn) for m in messages]
        handles = {r["messageId"]: r["receiptHandle"] for r in records}
        matching = [r for r in records if _matches_filters(r, self._patterns)]
        filtered_out = [r["messageId"] for r in records if r not in matching]
        failed: set[str] = set()
        crash_after = self.crashes.take(self.mapping.function_name, len(matching)) if self.crashes else None
        if matching and crash_after is not None:
            self._crash(matching, crash_after)
            failed = {r["messageId"] for r in matching}
        elif matching:
            ids = [r["messageId"] for r in matching]
            try:
                result = self.runtime.invoke(self.mapping.function_name, {"Records": matching})
            except Exception as exc:
                LOG.info(
                    "consumer %s failed on a batch of %d: %s: %s",
                    self.mapping.function_name,
                    len(ids),
                    type(exc).__name__,
                    exc,
                )
                failed = set(ids)
            else:
                if self.mapping.report_batch_item_failures:
                    failed = failed_message_ids(result, ids)
        succeeded = [mid for mid in handles if mid not in failed]
        with self._stats_lock:
            self.stats.batches += 1 if matching else 0
            self.stats.records += len(matching)
            self.stats.failed += len(failed)
            self.stats.deleted += len(succeeded)
            self.stats.crashes += 1 if crash_after is not None and matching else 0
        if filtered_out:
            LOG.debug("%d message(s) matched no filter of %s", len(filtered_out), self.mapping.logical_id)
        _in_chunks(
            succeeded,
            lambda chunk: sqs.delete_message_batch(
                QueueUrl=queue.url,
                Entries=[{"Id": str(i), "ReceiptHandle": handles[mid]} for i, mid in enumerate(chunk)],
            ),
        )
        _in_chunks(
            sorted(failed),
            lambda chunk: sqs.change_message_visibility_batch(
                QueueUrl=queue.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handles[mid], "VisibilityTimeout": self.retry_delay_s}
                    for i, mid in enumerate(chunk)
                ],
            ),
        )

    def _crash(self, records: list[dict[str, Any]], after: int) -> None:
        """Process the first ``after`` records for real (their effects are committed), then "die"."""
        LOG.warning(
            "injected crash: %s dies after %d of %d record(s) of a batch",
            self.mapping.function_name,
            after,
            len(records),
        )
        try:
            self.runtime.invoke(self.mapping.function_name, {"Records": records[:after]})
        except Exception as exc:  # the batch is retried whole anyway
            LOG.info("the part of the batch before the injected crash failed: %s", exc)


def _in_chunks(items: list[str], call: Callable[[list[str]], Any], size: int = 10) -> None:
    for start in range(0, len(items), size):
        call(items[start : start + size])
