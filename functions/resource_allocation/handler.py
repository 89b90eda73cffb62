"""SQS consumer: assignment.upserted → the ERP resource allocation and the project's cost forecast."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from r2r_core.consumer import ConsumerPorts, consume_canonical
from r2r_core.erp_access import erp_client
from r2r_core.flows.resource_allocation import allocate
from r2r_core.model.events import EventEnvelope
from r2r_core.telemetry import handler_metrics, tracer

logger = Logger(service="r2r-resource-allocation")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    def process(envelope: EventEnvelope, ports: ConsumerPorts) -> dict[str, Any]:
        settings = ports.settings
        return allocate(
            envelope,
            store=ports.store,
            audit=ports.audit,
            erp=erp_client(settings.erp_base_url, settings.erp_secret_arn),
        )

    return consume_canonical(event, context, name="resource_allocation", logger=logger, process=process)
