"""SQS consumer: invoice.status_changed → billing fields on the CRM opportunity and the PSA billing event."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from r2r_core import settings as settings_module
from r2r_core.consumer import consume
from r2r_core.crm_access import salesforce_client
from r2r_core.flows.exceptions import record_event_failure
from r2r_core.flows.invoice_status import write_back_invoice_status
from r2r_core.model.events import EventEnvelope
from r2r_core.settings import ConsumerSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import handler_metrics, tracer

logger = Logger(service="r2r-invoice-status-writeback")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = settings_module.load(ConsumerSettings)
    store, audit = StateStore(settings.state_table_name), AuditLog(settings.audit_table_name)

    def process(envelope: EventEnvelope) -> dict[str, Any]:
        return write_back_invoice_status(
            envelope,
            store=store,
            audit=audit,
            salesforce=salesforce_client(settings.salesforce_base_url, settings.salesforce_secret_arn),
        )

    return consume(
        event,
        context,
        name="invoice_status_writeback",
        logger=logger,
        idempotency_table=settings.idempotency_table_name,
        process=process,
        on_permanent=lambda envelope, exc: record_event_failure(
            envelope, exc, store=store, audit=audit, stage="invoice_status_writeback"
        ),
    )
