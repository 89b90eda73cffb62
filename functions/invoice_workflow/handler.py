"""Step Functions task: one step of milestone-to-invoice, chosen by ``step`` in the payload.

Errors propagate with their class name (``ContractInvalid``, ``TaxConfigurationMissing``,
``ErpTransientError`` …) so the state machine's Retry matches transient ones and leaves
business failures uncaught for redrive.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from r2r_core import settings as settings_module
from r2r_core.bus import EventPublisher
from r2r_core.erp_access import erp_client, erp_mapping
from r2r_core.flows.invoicing import InvoiceSteps
from r2r_core.settings import ConsumerSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import annotate, handler_metrics, service_logger, tracer

logger = service_logger("r2r-invoice-workflow")
metrics = handler_metrics()


@cache
def _steps(settings: ConsumerSettings) -> InvoiceSteps:
    if not settings.event_bus_name:
        raise RuntimeError("EVENT_BUS_NAME is not set")
    bus_name = settings.event_bus_name
    return InvoiceSteps(
        store=StateStore(settings.state_table_name),
        audit=AuditLog(settings.audit_table_name),
        erp=lambda: erp_client(settings.erp_base_url, settings.erp_secret_arn),
        publisher=lambda: EventPublisher(bus_name),
        mapping=erp_mapping(settings.erp_secret_arn),
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    state = event["state"]
    logger.append_keys(
        correlation_id=state.get("correlation_id"),
        execution_id=event.get("execution_id"),
        step=event.get("step"),
    )
    annotate(state.get("correlation_id"), step=event.get("step"), milestone_id=state.get("milestone_id"))
    result = _steps(settings_module.load(ConsumerSettings)).run(
        event["step"], state, event.get("execution_id", "")
    )
    logger.info("invoice step done", extra={"milestone_id": state.get("milestone_id")})
    return result
