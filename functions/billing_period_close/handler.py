"""SQS consumer (fed by a daily schedule rule): start the period-end invoice runs that are due, and
post the time summaries of ended periods (accounts in summary posting mode, ``flows.time_summary``).

Every message is one tick of the schedule; a batch of ticks needs one pass (the latest tick decides the
period). If the pass fails, every tick of the batch is reported failed and retried (after five receives
it rests in the DLQ). Starting a run twice is harmless: the execution name is deterministic.
"""

from __future__ import annotations

import time
from typing import Any

from r2r_core import settings as settings_module
from r2r_core.bus import EventPublisher
from r2r_core.erp_access import erp_client, erp_mapping
from r2r_core.flows.period_close import close_billing_periods, period_end_items, tick_from
from r2r_core.flows.time_summary import flush_ended_periods
from r2r_core.runtime import aws_client, environ
from r2r_core.settings import ConsumerSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import handler_metrics, service_logger, tracer

logger = service_logger("r2r-billing-period-close")
# Periods flushed at a time: the ERP share an ERP-writing consumer may use (``ERP_CONCURRENCY_SHARE``,
# erpConcurrencyShare). The flush is ERP-bound (a month's summaries at NetSuite's pace), so fewer workers
# only make it slower. A second pass at the same time (a retried tick beside the day's) could double it
# for a while; NetSuite then answers 429, which the client absorbs by backing off.
DEFAULT_FLUSH_WORKERS = 2
FLUSH_MARGIN_S = 8.0
metrics = handler_metrics()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = settings_module.load(ConsumerSettings)
    if not settings.state_machine_arn:
        raise RuntimeError("STATE_MACHINE_ARN is not set")
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    store, audit = StateStore(settings.state_table_name), AuditLog(settings.audit_table_name)
    try:
        tick = tick_from(r["body"] for r in records)
        # One scan of StateTable for both steps, returning only what they use.
        items = period_end_items(store)
        result = close_billing_periods(
            store=store,
            audit=audit,
            sfn=aws_client("stepfunctions"),
            state_machine_arn=settings.state_machine_arn,
            tick=tick,
            items=items,
        )
        if settings.erp_base_url and settings.erp_secret_arn:
            # Both steps are idempotent: a retried tick starts nothing twice and re-posts nothing unchanged.
            flushed = flush_ended_periods(
                store,
                audit,
                erp_client(settings.erp_base_url, settings.erp_secret_arn),
                erp_mapping(settings.erp_secret_arn),
                today=tick.at.date(),
                correlation_id=tick.event_id,
                workers=flush_workers(),
                deadline=_deadline(context),
                # The revenue of each summary posting (``revenue.recognized`` per group).
                publisher=EventPublisher(settings.event_bus_name) if settings.event_bus_name else None,
                items=items,
            )
            result["time_summaries_flushed"] = sum(1 for f in flushed.results if f.flushed)
            result["time_summary_erp_requests"] = sum(f.erp_requests for f in flushed.results)
            if flushed.remaining:
                # Out of time: the tick comes back (visibility timeout) and flushes the rest.
                logger.warning("time summaries left for the retry", extra={"remaining": flushed.remaining})
                return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}
    except Exception:
        logger.exception("billing period close failed", extra={"ticks": len(records)})
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}
    logger.info("billing period close done", extra={"ticks": len(records), **result})
    return {"batchItemFailures": []}


def flush_workers() -> int:
    """How many periods the flush posts at a time: the function's ERP share (at least one)."""
    share = environ().get("ERP_CONCURRENCY_SHARE", "")
    return max(1, int(share)) if share.isdigit() else DEFAULT_FLUSH_WORKERS


def _deadline(context: Any) -> float | None:
    """When to stop starting new flushes: shortly before the invocation times out."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return time.monotonic() + remaining() / 1000 - FLUSH_MARGIN_S if remaining else None
