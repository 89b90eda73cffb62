"""Exceptions for finance: one record per permanent failure, with the business context to act on it."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from r2r_core.erp.errors import ErpError, error_details_from_message
from r2r_core.flows.project_setup import load_terms
from r2r_core.kpis import invoice_failed_kpis, project_setup_kpi, region_of
from r2r_core.model.events import EventEnvelope
from r2r_core.notify import notify_exception
from r2r_core.state import AuditLog, StateStore, exception_id, now_iso
from r2r_core.telemetry import emit

logger = Logger(child=True)


def _business_context(store: StateStore, engagement_id: str | None) -> dict[str, Any]:
    if not engagement_id:
        return {}
    loaded = load_terms(store, engagement_id)
    if loaded is None:
        return {"engagement_id": engagement_id}
    deal, _ = loaded
    return {
        "engagement_id": engagement_id,
        "client_id": deal.client.id,
        "client_name": deal.client.name,
        "project_id": deal.project.id,
        "opportunity_id": deal.id,
        "region": deal.engagement.region,
        "business_unit": deal.engagement.business_unit,
        "owner": f"finance-ops/{deal.engagement.region}/{deal.engagement.business_unit or 'all'}",
    }


def _erp_fields(error: Exception) -> dict[str, Any]:
    """What finance needs to fix a refused ERP write: NetSuite's code, field path and detail."""
    if not isinstance(error, ErpError):
        return {}
    return {
        "erp_status": error.status,
        "erp_error_code": error.code,
        "erp_error_path": error.error_path,
        "erp_error_detail": error.detail,
    }


def record_event_failure(
    envelope: EventEnvelope, error: Exception, *, store: StateStore, audit: AuditLog, stage: str
) -> bool:
    """Record a permanent failure of a consumer on one canonical event; True when newly recorded."""
    data = envelope.data
    context = _business_context(store, data.get("engagement_id") or data.get("engagement", {}).get("id"))
    amount = data.get("amount") if isinstance(data.get("amount"), dict) else None
    record = {
        "id": exception_id(
            stage, envelope.type, envelope.source_record_id, str(envelope.source_record_version)
        ),
        "kind": f"{stage}_failed",
        "status": "open",
        "error_type": type(error).__name__,
        "error": str(error),
        "event_type": envelope.type,
        "event_id": envelope.event_id,
        "correlation_id": envelope.correlation_id,
        "source_system": envelope.source_system,
        "source_record_id": envelope.source_record_id,
        "source_record_version": envelope.source_record_version,
        "amount_at_risk": amount["amount"] if amount else None,
        "currency": amount["currency"] if amount else None,
        "created_at": now_iso(),
        **_erp_fields(error),
        **context,
    }
    created = store.put_exception(record)
    if created:
        audit.append(
            kind="exception",
            entity_id=record["id"],
            action="opened",
            event_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
            detail={"error": record["error"], "stage": stage},
        )
        logger.warning(
            "exception recorded", extra={"exception_id": record["id"], "error_type": record["error_type"]}
        )
        notify_exception(record)
        if stage == "project_setup":
            region, business_unit = region_of(data)
            emit([project_setup_kpi(succeeded=False, region=region, business_unit=business_unit)])
    return created


def record_execution_failure(event: dict[str, Any], *, store: StateStore, audit: AuditLog) -> bool:
    """Record a failed/timed-out/aborted milestone-to-invoice execution (an ``aws.states`` event)."""
    detail = event["detail"]
    execution_input = json.loads(detail.get("input") or "{}")
    engagement_id = execution_input.get("engagement_id")
    milestone_id = execution_input.get("milestone_id")
    period_end = execution_input.get("period_end")
    context = _business_context(store, engagement_id)
    # A milestone run's draft, or a period-end run's (see r2r_core.flows.invoicing.draft_sk).
    sk = (
        f"INVOICE#{milestone_id}"
        if milestone_id
        else (f"INVOICE#PERIOD#{period_end}" if period_end else None)
    )
    draft = store.get(f"ENG#{engagement_id}", sk) if engagement_id and sk else None
    record = {
        "id": exception_id("execution", detail["executionArn"], detail.get("status", "")),
        "kind": "invoice_workflow_failed",
        "status": "open",
        "error_type": detail.get("error") or detail.get("status"),
        "error": _cause_message(detail.get("cause")),
        "execution_arn": detail["executionArn"],
        "execution_status": detail.get("status"),
        "milestone_id": milestone_id,
        **({"period_end": period_end} if period_end else {}),
        "correlation_id": execution_input.get("correlation_id"),
        "event_id": execution_input.get("event_id"),
        "amount_at_risk": draft["total"] if draft else None,
        "currency": draft["currency"] if draft else None,
        "recovery": "fix the cause, then redrive the execution from the Step Functions console",
        "created_at": now_iso(),
        **(error_details_from_message(_cause_message(detail.get("cause"))) if _is_erp(detail) else {}),
        **context,
    }
    created = store.put_exception(record)
    if created:
        audit.append(
            kind="exception",
            entity_id=record["id"],
            action="opened",
            event_id=execution_input.get("event_id") or detail["executionArn"],
            correlation_id=execution_input.get("correlation_id") or detail["executionArn"],
            detail={"execution_arn": detail["executionArn"], "error": record["error_type"]},
        )
        notify_exception(record)
        emit(invoice_failed_kpis(context.get("region"), context.get("business_unit")))
    return created


def _is_erp(detail: dict[str, Any]) -> bool:
    return str(detail.get("error") or "").startswith("Erp")


def _cause_message(cause: str | None) -> str:
    """Lambda task causes are JSON ``{errorType, errorMessage, ...}``: keep the message."""
    if not cause:
        return ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return str(parsed["errorMessage"])
    return cause
