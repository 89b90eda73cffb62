"""SQS consumer (fed by a daily schedule rule): reconcile approved work in r2r against the ERP.

Every message is one tick; a batch of ticks needs one run. If the run fails, every tick of the batch is
reported failed and retried (after five receives it rests in the DLQ). Findings become exceptions for
finance once each (deterministic ids), so a retried or repeated run adds nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from r2r_core import settings as settings_module
from r2r_core.erp_access import erp_client
from r2r_core.flows.reconciliation import reconcile
from r2r_core.settings import ConsumerSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import handler_metrics, service_logger, tracer

logger = service_logger("r2r-reconciliation")
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = settings_module.load(ConsumerSettings)
    records = event.get("Records") or []
    if records and not any(_is_tick(r) for r in records):
        # Only the schedule's ticks start a run (a direct invocation without records is a manual run).
        logger.warning("not a scheduled tick: ignored", extra={"messages": len(records)})
        return {"batchItemFailures": []}
    try:
        result = reconcile(
            store=StateStore(settings.state_table_name),
            audit=AuditLog(settings.audit_table_name),
            erp=erp_client(settings.erp_base_url, settings.erp_secret_arn),
            today=datetime.now(UTC).date(),
        )
    except Exception:
        logger.exception("reconciliation failed", extra={"ticks": len(records)})
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}
    logger.info(
        "reconciliation done",
        extra={"ticks": len(records), "findings": len(result["findings"]), "new": result["new_exceptions"]},
    )
    return {"batchItemFailures": []}


def _is_tick(record: dict[str, Any]) -> bool:
    try:
        body = json.loads(record.get("body") or "{}")
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and body.get("detail-type") == "Scheduled Event"
        and body.get("source") == "aws.events"
    )
