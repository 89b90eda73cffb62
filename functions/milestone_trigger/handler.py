"""SQS consumer: milestone.completed → start the milestone-to-invoice state machine (once per milestone);
a milestone accepted after its invoice publishes its acceptance revenue."""

from __future__ import annotations

from typing import Any

from r2r_core.bus import EventPublisher
from r2r_core.consumer import ConsumerPorts, consume_canonical
from r2r_core.flows.milestones import start_invoice_run
from r2r_core.model.events import EventEnvelope
from r2r_core.runtime import aws_client
from r2r_core.telemetry import handler_metrics, service_logger, tracer

logger = service_logger("r2r-milestone-trigger")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    def process(envelope: EventEnvelope, ports: ConsumerPorts) -> dict[str, Any]:
        state_machine_arn = ports.settings.state_machine_arn
        if not state_machine_arn:
            raise RuntimeError("STATE_MACHINE_ARN is not set")
        return start_invoice_run(
            envelope,
            store=ports.store,
            audit=ports.audit,
            sfn=aws_client("stepfunctions"),
            state_machine_arn=state_machine_arn,
            publisher=EventPublisher(ports.settings.event_bus_name)
            if ports.settings.event_bus_name
            else None,
        )

    return consume_canonical(event, context, name="milestone_trigger", logger=logger, process=process)
