"""The last writes of a batch's records, made together after the batch: events first, then audit records.

A posting flow (``flows.time_posting``, ``flows.expense_posting``) ends each approved entry with the same
two writes: the events it causes (``revenue.recognized``) and the audit record of its charge, which is the
"done" marker a redelivery checks (``AuditLog.has``). Made one by one they cost a PutEvents and a PutItem
per entry; a :class:`BatchTail` (one per handler call, like ``InvocationReads``) collects them and the
consumer (``r2r_core.consumer``) flushes it once the batch is processed: every event with PutEvents, 10 per
call, then, with BatchWriteItem (25 per call), the audit records of the SQS messages whose events were all
put. So the audit record stays the last write of an entry: it is written only after its events.

Whatever could not be written fails exactly the messages that need it (their SQS messageIds join the
handler's ``batchItemFailures``): SQS delivers them again and the flow's redelivery path completes them
(the same event again, by its deterministic id, then the audit record); the batch's other messages succeed.
A message that failed in processing is skipped: what it handed over is not written.

Two deliveries of one entry in one batch share the records they would write: the second finds the audit
record waiting (:meth:`BatchTail.waiting`) instead of absent from the table, and waits on it too.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aws_lambda_powertools import Logger

from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, AuditRecord

logger = Logger(child=True)

NO_MESSAGE = ""  # the message of what is handed over outside a consumer (no ``begin``)


class Publisher(Protocol):
    def publish(self, envelope: EventEnvelope) -> None: ...


@dataclass
class _Event:
    """An event to put, and the messages (SQS messageIds) that are done only once it is put."""

    envelope: EventEnvelope
    messages: set[str] = field(default_factory=set)


@dataclass
class _Record:
    """An audit record to write, and the messages that are done only once it is written."""

    record: AuditRecord
    messages: set[str] = field(default_factory=set)


class BatchTail:
    """One invocation's events and audit records to write after the batch (see the module)."""

    def __init__(self) -> None:
        self._message = NO_MESSAGE
        self._events: dict[str, _Event] = {}
        self._records: dict[tuple[str, str], _Record] = {}
        self._publisher: Publisher | None = None
        self._audit: AuditLog | None = None

    def begin(self, message_id: str) -> None:
        """What is handed over from now on belongs to this SQS message (until the next ``begin``)."""
        self._message = message_id

    def publish(self, publisher: Publisher, envelope: EventEnvelope) -> None:
        """Put ``envelope`` on the bus at the flush (the publisher is the same for the whole batch)."""
        self._publisher = self._publisher or publisher
        waiting = self._events.setdefault(envelope.event_id, _Event(envelope=envelope))
        waiting.messages.add(self._message)

    def append(self, audit: AuditLog, record: AuditRecord) -> None:
        """Write ``record`` at the flush, after every event of its message (the same audit for the batch)."""
        self._audit = self._audit or audit
        waiting = self._records.setdefault(record.key, _Record(record=record))
        waiting.messages.add(self._message)

    def waiting(self, *, kind: str, entity_id: str, event_id: str, action: str) -> bool:
        """Whether this audit record waits for the flush; if so, the current message waits on it too."""
        waiting = self._records.get(AuditRecord(kind, entity_id, action, event_id, "").key)
        if waiting is None:
            return False
        waiting.messages.add(self._message)
        return True

    def flush(self, skip: Collection[str] = ()) -> dict[str, str]:
        """Write what the batch handed over; the messages that are not done, each with why.

        ``skip``: messages that failed in processing; what only they handed over is not written.
        """
        skipped = set(skip)
        events = [e for e in self._events.values() if e.messages - skipped]
        records = [r for r in self._records.values() if r.messages - skipped]
        self._events, self._records = {}, {}
        failed: dict[str, str] = {}

        def fail(messages: set[str], why: str) -> None:
            for message in sorted(messages - skipped):
                failed.setdefault(message, why)

        if events:
            assert self._publisher is not None  # set by the first publish
            for event, error in zip(events, _put(self._publisher, [e.envelope for e in events]), strict=True):
                if error is not None:
                    fail(
                        event.messages,
                        f"event {event.envelope.event_id} ({event.envelope.type}) not put: {error}",
                    )
        # An entry's audit record says it is done: never before every event of its messages was put.
        ready = [r for r in records if not r.messages & failed.keys()]
        for held in (r for r in records if r.messages & failed.keys()):
            fail(held.messages, f"audit record {'/'.join(held.record.key)} held back: an event was not put")
        if ready:
            assert self._audit is not None  # set by the first append
            by_key = {r.record.key: r for r in ready}
            for missing in self._audit.append_many([r.record for r in ready]):
                fail(
                    by_key[missing.record.key].messages,
                    f"audit record {'/'.join(missing.record.key)} not written: {missing.why}",
                )
        if failed:
            logger.warning(
                "the last writes of some records failed: SQS delivers them again",
                extra={"failed_messages": len(failed), "first_error": next(iter(failed.values()))},
            )
        return failed


def _put(publisher: Publisher, envelopes: Sequence[EventEnvelope]) -> list[str | None]:
    """Per event, why it was not put (None when it was): batched when the publisher can say per event."""
    each = getattr(publisher, "publish_each", None)
    if each is not None:
        return list(each(envelopes))
    errors: list[str | None] = []
    for envelope in envelopes:  # a publisher of one event at a time (tests, tools)
        try:
            publisher.publish(envelope)
        except Exception as exc:  # whatever it raised fails only this event's messages
            errors.append(f"{type(exc).__name__}: {exc}")
        else:
            errors.append(None)
    return errors
