"""SQS consumer: resource.upserted / resource.terminated → the worker's HRIS status and cost rate
(``RES#<id>``), the ERP employee, and the cost forecast of the projects the worker is allocated to."""

from __future__ import annotations

from typing import Any

from r2r_core.consumer import ConsumerPorts, consume_canonical
from r2r_core.erp_access import erp_client, erp_mapping
from r2r_core.flows.resource_status import record_resource
from r2r_core.model.events import EventEnvelope
from r2r_core.telemetry import handler_metrics, service_logger, tracer

logger = service_logger("r2r-resource-sync")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    def process(envelope: EventEnvelope, ports: ConsumerPorts) -> dict[str, Any]:
        settings = ports.settings
        return record_resource(
            envelope,
            store=ports.store,
            audit=ports.audit,
            erp=erp_client(settings.erp_base_url, settings.erp_secret_arn),
            mapping=erp_mapping(settings.erp_secret_arn),
        )

    return consume_canonical(event, context, name="resource_sync", logger=logger, process=process)
