"""SQS consumer (fed by a schedule rule every 5 minutes): poll Kantata OX, publish canonical events.

Kantata has no webhooks. Every message is one tick of the schedule; a batch of ticks needs one poll. If
the poll fails (Kantata still throttling after the backoff, AWS trouble), every tick of the batch is
reported failed and retried (after five receives it rests in the DLQ); the watermark holds the pages
already published, so the retry goes on from there.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from r2r_core import settings as settings_module
from r2r_core.bus import EventPublisher
from r2r_core.flows.ingest import RawArchive
from r2r_core.flows.kantata_poll import poll_kantata
from r2r_core.kantata_access import kantata_client
from r2r_core.settings import KantataPollerSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import handler_metrics, tracer

logger = Logger(service="r2r-kantata-poller")
metrics = handler_metrics()
# Stop paging this long before the function's timeout: the next tick goes on from the watermark.
SAFETY_MS = 20_000


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = settings_module.load(KantataPollerSettings)
    records = event.get("Records") or []
    try:
        result = poll_kantata(
            kantata=kantata_client(settings.kantata_base_url, settings.kantata_secret_arn),
            store=StateStore(settings.state_table_name),
            audit=AuditLog(settings.audit_table_name),
            publisher=EventPublisher(settings.event_bus_name),
            archive=RawArchive(settings.raw_bucket_name),
            per_page=settings.page_size,
            time_left=lambda: context.get_remaining_time_in_millis() > SAFETY_MS,
        )
    except Exception:
        logger.exception("kantata poll failed", extra={"ticks": len(records)})
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}
    logger.info("kantata poll done", extra={"ticks": len(records), "result": result})
    return {"batchItemFailures": []}
