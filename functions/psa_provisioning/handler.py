"""SQS consumer: opportunity.closed_won → the engagement's project in the PSA (Certinia pse__Proj__c)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from r2r_core.consumer import ConsumerPorts, consume_canonical
from r2r_core.crm_access import salesforce_client
from r2r_core.flows.psa_provisioning import provision_psa_project
from r2r_core.model.events import EventEnvelope
from r2r_core.telemetry import handler_metrics, tracer

logger = Logger(service="r2r-psa-provisioning")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    def process(envelope: EventEnvelope, ports: ConsumerPorts) -> dict[str, Any]:
        settings = ports.settings
        return provision_psa_project(
            envelope,
            store=ports.store,
            audit=ports.audit,
            salesforce=salesforce_client(settings.salesforce_base_url, settings.salesforce_secret_arn),
        )

    return consume_canonical(event, context, name="psa_provisioning", logger=logger, process=process)
