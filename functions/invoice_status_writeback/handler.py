"""SQS consumer: invoice.status_changed → billing fields on the CRM opportunity and the PSA billing event."""

from __future__ import annotations

from typing import Any

from r2r_core.consumer import ConsumerPorts, consume_canonical
from r2r_core.crm_access import salesforce_client
from r2r_core.flows.invoice_status import write_back_invoice_status
from r2r_core.model.events import EventEnvelope
from r2r_core.telemetry import handler_metrics, service_logger, tracer

logger = service_logger("r2r-invoice-status-writeback")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    def process(envelope: EventEnvelope, ports: ConsumerPorts) -> dict[str, Any]:
        settings = ports.settings
        return write_back_invoice_status(
            envelope,
            store=ports.store,
            audit=ports.audit,
            salesforce=salesforce_client(settings.salesforce_base_url, settings.salesforce_secret_arn),
        )

    return consume_canonical(event, context, name="invoice_status_writeback", logger=logger, process=process)
