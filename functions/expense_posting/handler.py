"""SQS consumer: expense.approved → billing decision → ERP expenseReport → charge recorded for invoicing."""

from __future__ import annotations

from typing import Any

from r2r_core.consumer import ConsumerPorts, consume_canonical
from r2r_core.erp_access import erp_client, erp_mapping
from r2r_core.flows.batch_tail import BatchTail
from r2r_core.flows.expense_posting import post_expense
from r2r_core.model.events import EventEnvelope
from r2r_core.telemetry import handler_metrics, service_logger, tracer

logger = service_logger("r2r-expense-posting")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # Each expense's audit record, written after the batch (batched).
    tail = BatchTail()

    def process(envelope: EventEnvelope, ports: ConsumerPorts) -> dict[str, Any]:
        settings = ports.settings
        return post_expense(
            envelope,
            store=ports.store,
            audit=ports.audit,
            erp=erp_client(settings.erp_base_url, settings.erp_secret_arn),
            mapping=erp_mapping(settings.erp_secret_arn),
            tail=tail,
        )

    # The charge's version refuses a duplicate; a redelivery completes what a crash left undone.
    return consume_canonical(
        event,
        context,
        name="expense_posting",
        logger=logger,
        process=process,
        idempotent_by_version=True,
        tail=tail,
    )
