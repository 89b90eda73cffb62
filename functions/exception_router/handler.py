"""SQS consumer: failed milestone-to-invoice executions (aws.states events) → exceptions for finance."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from r2r_core import settings as settings_module
from r2r_core.flows.exceptions import record_execution_failure
from r2r_core.settings import ConsumerSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import handler_metrics, service_logger, tracer

logger = service_logger("r2r-exception-router")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = settings_module.load(ConsumerSettings)
    store, audit = StateStore(settings.state_table_name), AuditLog(settings.audit_table_name)

    def record_handler(record: SQSRecord) -> bool:
        status_change = json.loads(record.body)
        detail = status_change.get("detail", {})
        logger.append_keys(execution_arn=detail.get("executionArn"))
        created = record_execution_failure(status_change, store=store, audit=audit)
        logger.info("execution failure recorded", extra={"status": detail.get("status"), "new": created})
        return created

    return process_partial_response(  # type: ignore[return-value]
        event=event,
        record_handler=record_handler,
        processor=BatchProcessor(event_type=EventType.SQS),
        context=context,
    )
