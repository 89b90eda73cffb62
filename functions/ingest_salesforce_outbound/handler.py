"""POST /v1/salesforce/outbound/{secret} or /v1/salesforce/outbound (basic auth): Outbound Messages →
canonical events, SOAP Ack."""

from __future__ import annotations

import base64
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider

from r2r_core import echo
from r2r_core import settings as settings_module
from r2r_core.bus import EventPublisher
from r2r_core.connectors.directory import StateDirectory
from r2r_core.connectors.salesforce import soap_fault
from r2r_core.flows import connector_exceptions
from r2r_core.flows.ingest import RawArchive
from r2r_core.flows.salesforce_outbound import CONNECTOR, OutboundIntake, SoapReply, accept_notification
from r2r_core.idempotency import once
from r2r_core.runtime import aws_client
from r2r_core.settings import SalesforceOutboundSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import service_logger

logger = service_logger("r2r-ingest-salesforce-outbound")


@cache
def _intake(settings: SalesforceOutboundSettings) -> tuple[OutboundIntake, Any]:
    secrets = SecretsProvider(boto3_client=aws_client("secretsmanager"))
    store, audit = StateStore(settings.state_table_name), AuditLog(settings.audit_table_name)
    directory, publisher = StateDirectory(store), EventPublisher(settings.event_bus_name)

    integration_users = echo.parse_user_ids(settings.integration_user_ids)

    def accept(data: dict[str, Any]) -> dict[str, Any]:
        return accept_notification(
            data,
            directory=directory,
            publisher=publisher,
            integration_users=integration_users,
            last_write=lambda record_id: echo.last_write_of_record(store, "salesforce", record_id),
            audit=audit,
        )

    accept_once, config = once(
        accept, table_name=settings.idempotency_table_name, key_jmespath="[org, notification_id]"
    )

    def org_secrets() -> dict[str, list[str]]:
        """``{"<OrganizationId>": ["<listener secret>", …]}``; ``_``-keys are placeholders."""
        value = dict(secrets.get(settings.outbound_secrets_arn, transform="json", max_age=60))  # type: ignore[arg-type]
        return {
            str(org): [str(s) for s in (keys if isinstance(keys, list) else [keys])]
            for org, keys in value.items()
            if not str(org).startswith("_")
        }

    intake = OutboundIntake(
        org_secrets=org_secrets,
        archive=RawArchive(settings.raw_bucket_name),
        accept_once=accept_once,
        record_exception=lambda **kwargs: connector_exceptions.record_connector_exception(
            store, audit, **kwargs
        ),
        resolve_waiting=lambda key: connector_exceptions.resolve_waiting(store, connector=CONNECTOR, key=key),
        max_body_bytes=settings.max_body_bytes,
    )
    return intake, config


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    intake, config = _intake(settings_module.load(SalesforceOutboundSettings))
    config.register_lambda_context(context)
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("utf-8")
    secret = (event.get("pathParameters") or {}).get("secret", "")
    headers = {k: v for k, v in (event.get("headers") or {}).items() if v is not None}
    try:
        reply = intake.handle(path_secret=secret, headers=headers, body=body)
    except Exception:
        # S3, DynamoDB or EventBridge trouble: nothing acknowledged, Salesforce retries.
        logger.exception("outbound message not accepted: temporary failure")
        reply = SoapReply(500, soap_fault("Server", "temporarily unavailable: retry the delivery"))
    return {"statusCode": reply.status, "headers": reply.headers, "body": reply.body.decode("utf-8")}
