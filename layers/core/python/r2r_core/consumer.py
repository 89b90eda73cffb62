"""The shape every SQS consumer shares: partial batch failures, idempotency, exceptions for finance.

A record is processed at most once per business key (event type, source record id and
version): by a Powertools idempotency record, or, for a consumer that declares itself idempotent by
source record version (``consume_canonical(idempotent_by_version=True)``), by its own versioned state.
A permanent failure is recorded once as an exception with its business context
and the record is reported failed, so after its retries it rests in the DLQ, from where an
operator redrives it once the cause is fixed. Retryable failures are reported failed; on the last
receive the queue allows (``max_receive_count``, the queue's ``maxReceiveCount``) the message goes to
the DLQ next, so it is recorded as an exception then, once, like a permanent failure.

Before any effect, the record's source must own what it carries (``r2r_core.ownership``): an update
from a non-owner is acknowledged and ignored, with an audit record and the ``OwnershipIgnored`` metric,
whichever path put it on the bus.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools import Logger

# Powertools' batch utility imports its pydantic models of every event source (SQS, Kinesis, DynamoDB,
# Kafka) when pydantic is already loaded, for type hints only. r2r passes no model, so the batch utility
# is imported here before anything of r2r loads pydantic (tests/unit/test_handler_imports.py keeps it so).
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from r2r_core import ownership
from r2r_core import settings as settings_module
from r2r_core.erp.errors import ErpPermanentError
from r2r_core.errors import Permanent, TailNotWritten
from r2r_core.flows.exceptions import record_event_failure
from r2r_core.flows.ownership_guard import Audit, record_ignored
from r2r_core.idempotency import once
from r2r_core.kpis import Kpi, region_of, sync_kpi
from r2r_core.model.events import EventEnvelope
from r2r_core.runtime import environ
from r2r_core.settings import ConsumerSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import annotate, emit

PERMANENT_ERRORS: tuple[type[Exception], ...] = (Permanent, ErpPermanentError)
_WRAPPED: dict[tuple[str, str, str | None], Any] = {}


class Tail(Protocol):
    """Writes a consumer's ``process`` hands over to be made after the batch (``flows.batch_tail``)."""

    def begin(self, message_id: str) -> None:
        """What is handed over from now on belongs to this SQS message."""

    def flush(self, skip: Collection[str] = ()) -> Mapping[str, str]:
        """Write it all (but what only ``skip``'s messages handed over); the messages not done, with why."""


@dataclass(frozen=True)
class SyncOf:
    """Where a record's sync counts (``SyncSuccess`` / ``SyncFailure``): its source, region and unit."""

    source_system: str
    region: str | None
    business_unit: str | None

    def kpi(self, *, succeeded: bool) -> Kpi:
        return sync_kpi(
            succeeded=succeeded,
            source_system=self.source_system,
            region=self.region,
            business_unit=self.business_unit,
        )


def envelope_from_body(body: str) -> EventEnvelope:
    """SQS bodies from an EventBridge rule are the whole event; the envelope is its ``detail``."""
    event = json.loads(body)
    return EventEnvelope.model_validate(event.get("detail", event))


def consume(
    event: dict[str, Any],
    context: Any,
    *,
    name: str,
    logger: Logger,
    idempotency_table: str | None,
    process: Callable[[EventEnvelope], Any],
    on_permanent: Callable[[EventEnvelope, Exception], object],
    audit: Audit | None = None,
    max_receive_count: int | None = None,
    tail: Tail | None = None,
) -> dict[str, Any]:
    """Process an SQS batch record by record; the answer reports the failed records (partial batch).

    ``tail``: the writes ``process`` hands over for after the batch; it is flushed once every record was
    processed, and a record whose writes there failed is reported failed too (SQS delivers it again; on
    its last receive it is recorded like a permanent failure).
    """
    run = _once(name, idempotency_table)
    received: dict[str, tuple[SQSRecord, EventEnvelope]] = {}
    succeeded: dict[str, SyncOf] = {}  # with a tail: the records processed, counted once it is written
    config = getattr(run, "_r2r_config", None)
    if config is not None and context is not None:
        config.register_lambda_context(context)

    def record_handler(record: SQSRecord) -> Any:
        envelope = envelope_from_body(record.body)
        logger.append_keys(
            correlation_id=envelope.correlation_id,
            event_id=envelope.event_id,
            event_type=envelope.type,
            source_record_id=envelope.source_record_id,
        )
        annotate(envelope.correlation_id, event_type=envelope.type, consumer=name)
        where = SyncOf(envelope.source_system, *region_of(envelope.data))
        verdict = ownership.check(envelope.type, envelope.source_system, envelope.data)
        if not verdict.accepted:
            detail = record_ignored(
                verdict,
                source_record_id=envelope.source_record_id,
                event_id=envelope.event_id,
                correlation_id=envelope.correlation_id,
                audit=audit,
                path=f"consumer:{name}",
            )
            logger.remove_keys(["event_id", "event_type", "source_record_id"])
            return {"ignored": detail["reason"]}
        if tail is not None:
            received[record.message_id] = (record, envelope)
            tail.begin(record.message_id)
        try:
            result = run(data=envelope, process=process)
        except Exception as exc:
            permanent = isinstance(exc, PERMANENT_ERRORS)
            if not permanent and not last_receive(record, max_receive_count):
                raise  # retried by SQS
            on_permanent(envelope, exc)
            logger.error(
                "permanent failure" if permanent else "retries exhausted: the message goes to the DLQ",
                extra={"error_type": type(exc).__name__, "error": str(exc)},
            )
            emit([where.kpi(succeeded=False)])
            raise
        finally:
            logger.remove_keys(["event_id", "event_type", "source_record_id"])
        if tail is not None:
            # Not a success before its last writes are written (after the batch, in ``_flush_tail``).
            succeeded[record.message_id] = where
        else:
            emit([where.kpi(succeeded=True)])
        return result

    response: dict[str, Any] = process_partial_response(  # type: ignore[assignment]
        event=event,
        record_handler=record_handler,
        processor=BatchProcessor(event_type=EventType.SQS),
        context=context,
    )
    if tail is not None:
        response = _flush_tail(
            tail,
            response=response,
            received=received,
            succeeded=succeeded,
            logger=logger,
            max_receive_count=max_receive_count,
            on_permanent=on_permanent,
        )
    return response


def _flush_tail(
    tail: Tail,
    *,
    response: dict[str, Any],
    received: Mapping[str, tuple[SQSRecord, EventEnvelope]],
    succeeded: Mapping[str, SyncOf],
    logger: Logger,
    max_receive_count: int | None,
    on_permanent: Callable[[EventEnvelope, Exception], object],
) -> dict[str, Any]:
    """Flush the batch's tail; add the records whose writes there failed to the batch item failures.

    ``SyncSuccess`` counts the records processed whose last writes were written; a record whose last
    writes failed counts once it is completed on a redelivery, or as a ``SyncFailure`` on its last receive.
    """
    failures = list(response.get("batchItemFailures", []))
    failed_in_processing = {failure["itemIdentifier"] for failure in failures}
    not_written = tail.flush(skip=failed_in_processing)
    emit(where.kpi(succeeded=True) for message, where in succeeded.items() if message not in not_written)
    for message_id, why in not_written.items():
        if message_id not in received:
            continue
        record, envelope = received[message_id]
        logger.warning(
            "the last writes of a record failed after its batch: it is delivered again",
            extra={
                "message_id": message_id,
                "event_id": envelope.event_id,
                "source_record_id": envelope.source_record_id,
                "correlation_id": envelope.correlation_id,
                "error": why,
            },
        )
        if last_receive(record, max_receive_count):
            on_permanent(envelope, TailNotWritten(why))
            if message_id in succeeded:
                emit([succeeded[message_id].kpi(succeeded=False)])
        failures.append({"itemIdentifier": message_id})
    return {**response, "batchItemFailures": failures}


def last_receive(record: SQSRecord, max_receive_count: int | None) -> bool:
    """Whether this receive is the last one before SQS moves the message to the DLQ."""
    if not max_receive_count:
        return False
    try:
        count = int(record.attributes.approximate_receive_count)
    except (TypeError, ValueError):
        return False
    return count >= max_receive_count


def _once(name: str, table: str | None) -> Callable[..., Any]:
    """An idempotent runner for one consumer, built once per (consumer, table, AWS endpoint).

    The endpoint is part of the key because the runner holds a DynamoDB client: a second local
    stack in the same process (another endpoint, same table names) must not reuse the first one's.

    The runner is called as ``run(data=envelope, process=fn)``: only ``data`` is hashed, so
    the per-invocation ``process`` (bound to that invocation's ports) passes straight through.
    """
    if table is None:
        return lambda *, data, process: process(data)
    key = (name, table, environ().get("AWS_ENDPOINT_URL"))
    wrapped = _WRAPPED.get(key)
    if wrapped is None:

        def apply(data: EventEnvelope, process: Callable[[EventEnvelope], Any]) -> Any:
            return process(data)

        apply.__qualname__ = f"consume.{name}"
        wrapped, config = once(
            apply, table_name=table, key_jmespath="[type, source_record_id, to_string(source_record_version)]"
        )
        wrapped._r2r_config = config  # type: ignore[attr-defined]
        _WRAPPED[key] = wrapped
    return wrapped


@dataclass(frozen=True)
class ConsumerPorts:
    """What every canonical-event consumer works with: its settings, the state store and the audit."""

    settings: ConsumerSettings
    store: StateStore
    audit: AuditLog


def consume_canonical(
    event: dict[str, Any],
    context: Any,
    *,
    name: str,
    logger: Logger,
    process: Callable[[EventEnvelope, ConsumerPorts], Any],
    idempotent_by_version: bool = False,
    tail: Tail | None = None,
) -> dict[str, Any]:
    """:func:`consume` for a consumer of canonical events named ``name`` (its function folder).

    Builds the ports from the function's environment; a permanent failure becomes an exception
    for finance recorded under ``name``.

    ``idempotent_by_version``: the consumer itself refuses a duplicate or stale version of a source
    record (a conditional, versioned write of its own state item) and completes, on a redelivery of the
    version it holds, whatever a crash after that write left undone. It then needs no idempotency record
    (two writes per record), and its function gets no idempotency table.

    ``tail``: see :func:`consume`.
    """
    settings = settings_module.load(ConsumerSettings)
    ports = ConsumerPorts(
        settings=settings,
        store=StateStore(settings.state_table_name),
        audit=AuditLog(settings.audit_table_name),
    )
    return consume(
        event,
        context,
        name=name,
        logger=logger,
        idempotency_table=None if idempotent_by_version else settings.idempotency_table_name,
        process=lambda envelope: process(envelope, ports),
        max_receive_count=settings.max_receive_count,
        on_permanent=lambda envelope, exc: record_event_failure(
            envelope, exc, store=ports.store, audit=ports.audit, stage=name
        ),
        audit=ports.audit,
        tail=tail,
    )
