"""SQS consumer: milestone.completed → start the milestone-to-invoice state machine (once per milestone)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from r2r_core import settings as settings_module
from r2r_core.consumer import consume
from r2r_core.flows.exceptions import record_event_failure
from r2r_core.flows.milestones import start_invoice_run
from r2r_core.model.events import EventEnvelope
from r2r_core.runtime import aws_client
from r2r_core.settings import ConsumerSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import handler_metrics, tracer

logger = Logger(service="r2r-milestone-trigger")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = settings_module.load(ConsumerSettings)
    if not settings.state_machine_arn:
        raise RuntimeError("STATE_MACHINE_ARN is not set")
    state_machine_arn = settings.state_machine_arn
    store, audit = StateStore(settings.state_table_name), AuditLog(settings.audit_table_name)

    def process(envelope: EventEnvelope) -> dict[str, Any]:
        return start_invoice_run(
            envelope,
            store=store,
            audit=audit,
            sfn=aws_client("stepfunctions"),
            state_machine_arn=state_machine_arn,
        )

    return consume(
        event,
        context,
        name="milestone_trigger",
        logger=logger,
        idempotency_table=settings.idempotency_table_name,
        process=process,
        on_permanent=lambda envelope, exc: record_event_failure(
            envelope, exc, store=store, audit=audit, stage="milestone_trigger"
        ),
    )
