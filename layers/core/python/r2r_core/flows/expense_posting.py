"""Approved expense → billing decision → ERP expenseReport (upsert by external id) → charge recorded.

The decision (``r2r_core.billing.decisions.decide_expense``) applies the contract's expense policy:
billable or cost only, receipt rule, dated FX conversion, markup, per-category cap. A billable charge
waits as ``unbilled`` under ``ENG#<engagement>`` / ``EXPENSE#<expense>`` for the next invoice; a newer
version of an invoiced expense queues a credit for what was invoiced (never a silent re-bill).
"""

from __future__ import annotations

from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.billing.decisions import decide_expense
from r2r_core.erp import records
from r2r_core.erp.mapping import ErpMapping
from r2r_core.flows.batch_tail import BatchTail
from r2r_core.flows.charges import (
    audit_charge,
    charge_audited,
    charge_key,
    engagement_of,
    erp_body_json,
    prior_charge,
    record_decision,
    settle_erp_record,
)
from r2r_core.model.entities import Expense
from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, StateStore

logger = Logger(child=True)


class Erp(Protocol):
    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str: ...


def post_expense(
    envelope: EventEnvelope,
    *,
    store: StateStore,
    audit: AuditLog,
    erp: Erp,
    mapping: ErpMapping | None = None,
    tail: BatchTail | None = None,
) -> dict[str, Any]:
    """Decide, post and record one approved expense version.

    ``tail``: the invocation's last writes (``flows.batch_tail``): the audit record is handed to it and
    written after the batch; without it, at once.
    """
    expense = Expense.model_validate(envelope.data)
    deal, terms = engagement_of(store, "expense", expense)
    key = charge_key(expense.engagement_id, "expense", expense.id)
    existing, duplicate = prior_charge(store, audit, envelope, key=key, kind="expense")
    if duplicate is not None:
        # No idempotency record guards this consumer (the charge's version does): a redelivery completes
        # what a crash right after recording left undone, idempotently (the audit record, by event, written
        # only when absent: a batched write cannot be conditional).
        if (
            existing is not None
            and int(existing["version"]) == envelope.source_record_version
            and not charge_audited(audit, envelope, existing, kind="expense", tail=tail)
        ):
            _audit_charge(audit, envelope, existing, tail=tail)
        return duplicate

    decision = decide_expense(expense, deal.engagement)
    account = mapping or ErpMapping()
    report_eid = records.external_id("expense", expense.id)
    report = records.expense_report_body(
        employee_external_id=records.external_id("resource", expense.resource_id),
        job_id=terms["erp_job_id"],
        tran_date=expense.expense_date,
        amount=expense.amount.amount,
        currency=expense.amount.currency,
        is_billable=decision.billable,
        category_id=account.expense_categories.get(expense.category),
        memo=f"{expense.category} — {decision.rule}",
        segments=account.segments(deal.engagement.region, deal.engagement.business_unit).as_fields(),
    )
    report_id = erp.upsert("expenseReport", report_eid, report)
    recorded = record_decision(
        store,
        engagement_id=expense.engagement_id,
        decision=decision,
        existing=existing,
        extra={
            "expense_id": expense.id,
            "project_id": expense.project_id,
            "approved_at": expense.approved_at.isoformat(),
            "original_amount": expense.amount.amount,
            "original_currency": expense.amount.currency,
            "erp_expense_report_id": report_id,
            "erp_expense_report_external_id": report_eid,
            "erp_body": erp_body_json(report),
            "correlation_id": envelope.correlation_id,
        },
    )
    settle_erp_record(erp, recorded, record_type="expenseReport", external_id=report_eid, body=report)
    if not recorded.written:
        return {"decision": decision.decision.value, "duplicate": True}
    assert recorded.item is not None
    _audit_charge(audit, envelope, recorded.item, tail=tail)
    logger.info(
        "expense posted",
        extra={
            "expense_id": expense.id,
            "decision": decision.decision.value,
            "erp_expense_report_id": report_id,
        },
    )
    return {
        "decision": decision.decision.value,
        "amount": str(decision.amount),
        "erp_expense_report_id": report_id,
    }


def _audit_charge(
    audit: AuditLog, envelope: EventEnvelope, charge: dict[str, Any], *, tail: BatchTail | None = None
) -> None:
    """The audit record of a recorded expense charge version (once per event: a repeat is a no-op)."""
    audit_charge(
        audit,
        envelope,
        charge,
        kind="expense",
        tail=tail,
        erp_expense_report_id=charge.get("erp_expense_report_id"),
    )
