"""SQS consumer: time_entry.approved → billing decision → ERP timeBill → charge recorded for invoicing."""

from __future__ import annotations

from typing import Any

from r2r_core.bus import EventPublisher
from r2r_core.consumer import ConsumerPorts, consume_canonical
from r2r_core.erp_access import erp_client, erp_mapping
from r2r_core.flows.batch_tail import BatchTail
from r2r_core.flows.invocation_reads import InvocationReads
from r2r_core.flows.resource_status import worker_status_keys
from r2r_core.flows.time_posting import SummaryCounts, post_time
from r2r_core.model.events import EventEnvelope
from r2r_core.telemetry import handler_metrics, service_logger, tracer

logger = service_logger("r2r-time-posting")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # What this invocation (one SQS batch) read: terms, worker status, the engagement's charges. New at
    # every call, so nothing read crosses invocations.
    reads = InvocationReads()
    # The batch's workers' HRIS status, read together when the first entry needs it.
    reads.expect(worker_status_keys(record.get("body", "") for record in event.get("Records", [])))
    # Summary mode: one counter update per engagement and period of the batch, the rest after it.
    counts = SummaryCounts()
    # Each entry's revenue event and audit record, written after the batch (batched; the audit record last).
    tail = BatchTail()

    def process(envelope: EventEnvelope, ports: ConsumerPorts) -> dict[str, Any]:
        settings = ports.settings
        return post_time(
            envelope,
            store=ports.store,
            audit=ports.audit,
            erp=erp_client(settings.erp_base_url, settings.erp_secret_arn),
            publisher=EventPublisher(settings.event_bus_name) if settings.event_bus_name else None,
            mapping=erp_mapping(settings.erp_secret_arn),
            reads=reads,
            counts=counts,
            tail=tail,
        )

    # The charge's version refuses a duplicate; a redelivery completes what a crash left undone.
    response = consume_canonical(
        event,
        context,
        name="time_posting",
        logger=logger,
        process=process,
        idempotent_by_version=True,
        tail=tail,
    )
    # Before answering: should this fail, the whole batch is delivered again and each record counts again.
    counts.apply()
    return response
