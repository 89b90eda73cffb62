"""SQS consumer: S3 ``Object Created`` under inbound/… (via EventBridge) → parsed rows → canonical events."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from r2r_core import settings as settings_module
from r2r_core.bus import EventPublisher
from r2r_core.flows.file_intake import DroppedFile, dropped_file, take_in_file
from r2r_core.runtime import aws_client
from r2r_core.settings import ConsumerSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import handler_metrics, service_logger, tracer

logger = service_logger("r2r-file-intake")
metrics = handler_metrics()


def _read(file: DroppedFile, limit: int) -> bytes:
    kwargs: dict[str, Any] = {"Bucket": file.bucket, "Key": file.key, "Range": f"bytes=0-{limit - 1}"}
    if file.version_id:
        kwargs["VersionId"] = file.version_id
    body: bytes = aws_client("s3").get_object(**kwargs)["Body"].read(limit)
    return body


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = settings_module.load(ConsumerSettings)
    if not settings.event_bus_name:
        raise RuntimeError("EVENT_BUS_NAME is not set")
    store, audit = StateStore(settings.state_table_name), AuditLog(settings.audit_table_name)
    publisher = EventPublisher(settings.event_bus_name)

    def record_handler(record: SQSRecord) -> dict[str, Any]:
        file = dropped_file(json.loads(record.body))
        logger.append_keys(object_key=file.key, object_version=file.version)
        return take_in_file(file, read=_read, store=store, audit=audit, publisher=publisher)

    return process_partial_response(  # type: ignore[return-value]
        event=event,
        record_handler=record_handler,
        processor=BatchProcessor(event_type=EventType.SQS),
        context=context,
    )
