"""SQS consumer: Salesforce change events (Event Relay / AppFlow partner bus) → canonical events."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from r2r_core import settings as settings_module
from r2r_core.bus import EventPublisher
from r2r_core.connectors.directory import StateDirectory
from r2r_core.crm_access import salesforce_client
from r2r_core.flows import connector_exceptions
from r2r_core.flows.ingest import RawArchive
from r2r_core.flows.salesforce_cdc import CONNECTOR, ChangeIntake, accept_change, rest_reader
from r2r_core.idempotency import once
from r2r_core.settings import SalesforceEventsSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import handler_metrics, tracer

logger = Logger(service="r2r-salesforce-events")
metrics = handler_metrics()


@cache
def _intake(settings: SalesforceEventsSettings) -> tuple[ChangeIntake, Any]:
    store, audit = StateStore(settings.state_table_name), AuditLog(settings.audit_table_name)
    directory, publisher = StateDirectory(store), EventPublisher(settings.event_bus_name)

    def read(sobject: str, record_id: str) -> dict[str, Any] | None:
        # The client (and its secret) is created at the first re-read, never at import.
        client = salesforce_client(settings.salesforce_base_url, settings.salesforce_secret_arn)
        return rest_reader(client)(sobject, record_id)

    def accept(data: dict[str, Any]) -> dict[str, Any]:
        return accept_change(data, directory=directory, publisher=publisher, read_record=read, audit=audit)

    accept_once, config = once(
        accept,
        table_name=settings.idempotency_table_name,
        key_jmespath="[channel, entity, record_id, change_key]",
    )
    intake = ChangeIntake(
        archive=RawArchive(settings.raw_bucket_name),
        accept_once=accept_once,
        record_exception=lambda **kwargs: connector_exceptions.record_connector_exception(
            store, audit, **kwargs
        ),
        resolve_waiting=lambda key: connector_exceptions.resolve_waiting(store, connector=CONNECTOR, key=key),
    )
    return intake, config


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    intake, config = _intake(settings_module.load(SalesforceEventsSettings))
    config.register_lambda_context(context)

    def record_handler(record: SQSRecord) -> dict[str, Any]:
        logger.append_keys(sqs_message_id=record.message_id)
        return intake.handle(record.body)

    return process_partial_response(  # type: ignore[return-value]
        event=event,
        record_handler=record_handler,
        processor=BatchProcessor(event_type=EventType.SQS),
        context=context,
    )
