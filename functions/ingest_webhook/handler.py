"""POST /v1/webhooks/{source}: authenticate, archive, validate, deduplicate and publish one delivery."""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider

from r2r_core import settings as settings_module
from r2r_core.bus import EventPublisher
from r2r_core.flows.ingest import Ingest, RawArchive
from r2r_core.idempotency import once
from r2r_core.model.events import EventEnvelope
from r2r_core.runtime import aws_client
from r2r_core.settings import IngestSettings
from r2r_core.state import AuditLog
from r2r_core.telemetry import handler_metrics, service_logger, tracer

logger = service_logger("r2r-ingest-webhook")
metrics = handler_metrics()


@cache
def _ingest(settings: IngestSettings) -> tuple[Ingest, Any]:
    publisher = EventPublisher(settings.event_bus_name)
    secrets = SecretsProvider(boto3_client=aws_client("secretsmanager"))
    audit = AuditLog(settings.audit_table_name)

    def publish(data: dict[str, Any]) -> dict[str, Any]:
        envelope = EventEnvelope.model_validate(data["envelope"])
        publisher.publish(envelope)
        return {"event_id": envelope.event_id, "type": envelope.type, "accepted_at": data["received_at"]}

    publish_once, config = once(
        publish,
        table_name=settings.idempotency_table_name,
        key_jmespath="[source, webhook_id]",
        validation_jmespath="body_sha256",
    )

    def load_secrets() -> dict[str, list[str]]:
        """``{"<source>": ["whsec_…"]}``; ``_``-keys are placeholders, not sources."""
        value = dict(secrets.get(settings.webhook_secrets_arn, transform="json", max_age=60))  # type: ignore[arg-type]
        return {
            str(source): [str(s) for s in (keys if isinstance(keys, list) else [keys])]
            for source, keys in value.items()
            if not str(source).startswith("_")
        }

    def record_rejection(action: str, archived_as: str, detail: dict[str, Any]) -> None:
        audit.append(
            kind="delivery",
            entity_id=archived_as,
            action=action,
            event_id=archived_as,
            correlation_id=archived_as,
            detail=detail,
        )

    ingest = Ingest(
        secrets=load_secrets,
        archive=RawArchive(settings.raw_bucket_name),
        publish_once=publish_once,
        max_body_bytes=settings.max_body_bytes,
        audit=record_rejection,
        ownership_audit=audit,
    )
    return ingest, config


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ingest, config = _ingest(settings_module.load(IngestSettings))
    config.register_lambda_context(context)
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("utf-8")
    source = (event.get("pathParameters") or {}).get("source", "")
    headers = {k: v for k, v in (event.get("headers") or {}).items() if v is not None}
    try:
        reply = ingest.handle(source=source, headers=headers, body=body)
    except Exception:
        # S3, DynamoDB or EventBridge trouble: the sender must retry; nothing was acknowledged.
        logger.exception("webhook not accepted: temporary failure", extra={"source": source})
        return _response(503, {"error": "temporarily_unavailable", "message": "try the delivery again later"})
    if reply.status == 202:
        logger.append_keys(correlation_id=reply.body["event_id"])
    return _response(reply.status, reply.body, reply.headers)


def _response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": headers or {"Content-Type": "application/json"},
        "body": json.dumps(body, default=str),
    }
