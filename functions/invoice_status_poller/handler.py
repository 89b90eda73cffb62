"""SQS consumer (fed by a schedule rule): poll NetSuite for invoice status changes, publish them.

Every message is one tick of the schedule; a batch of ticks needs one poll. If the poll fails, every
tick of the batch is reported failed and retried (after five receives it rests in the DLQ).
"""

from __future__ import annotations

from typing import Any

from r2r_core import settings as settings_module
from r2r_core.bus import EventPublisher
from r2r_core.erp_access import erp_client
from r2r_core.flows.invoice_status import poll_invoice_status
from r2r_core.settings import ConsumerSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import handler_metrics, service_logger, tracer

logger = service_logger("r2r-invoice-status-poller")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = settings_module.load(ConsumerSettings)
    if not settings.event_bus_name:
        raise RuntimeError("EVENT_BUS_NAME is not set")
    records = event.get("Records") or []
    try:
        result = poll_invoice_status(
            erp=erp_client(settings.erp_base_url, settings.erp_secret_arn),
            store=StateStore(settings.state_table_name),
            audit=AuditLog(settings.audit_table_name),
            publisher=EventPublisher(settings.event_bus_name),
        )
    except Exception:
        logger.exception("invoice status poll failed", extra={"ticks": len(records)})
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}
    logger.info("invoice status poll done", extra={"ticks": len(records), "changes": result["changes"]})
    return {"batchItemFailures": []}
