"""Lineage of an invoice: where every line came from, as a JSON-able document.

invoice line → charges (the billing decision of each time entry / expense) → the time entry or expense
(its version, work date, resource, approval, ERP timeBill) → assignment → project → engagement → the
closed-won opportunity (its version), with the ERP ids from the crosswalk and the audit trail (AuditTable)
of each. Used by ``r2r lineage invoice`` and by the operator API (``GET /ops/lineage/invoices/{id}``).

``invoice_id`` is the canonical invoice id (``INVOICE#<id>`` / ``LOOKUP``), or the ERP internal or
external id of the invoice.
"""

from __future__ import annotations

from typing import Any

from r2r_core.model.entities import ClosedWonDeal, Invoice
from r2r_core.state import AuditLog, StateStore

_CHARGE_FIELDS = (
    "kind",
    "version",
    "decision",
    "rule",
    "work_date",
    "resource_id",
    "role",
    "region",
    "category",
    "hours",
    "billable_hours",
    "rate",
    "amount",
    "currency",
    "assignment_id",
    "project_id",
    "approved_at",
    "erp_time_bill_id",
    "erp_time_bill_external_id",
    "correlation_id",
    "status",
    "invoice_id",
    "invoiced_at",
)


class NotFound(Exception):
    pass


def _draft(store: StateStore, invoice_id: str) -> dict[str, Any]:
    lookup = store.get(f"INVOICE#{invoice_id}", "LOOKUP")
    if lookup is not None:
        draft = store.get(f"ENG#{lookup['engagement_id']}", lookup["draft_sk"])
        if draft is not None:
            return draft
    for item in store.scan_prefix("ENG#"):
        if str(item["sk"]).startswith("INVOICE#") and invoice_id in {
            str(item.get("erp_id")),
            str(item.get("external_id")),
        }:
            return item
    raise NotFound(f"no invoice {invoice_id!r} (canonical, ERP internal or external id) in the StateTable")


def _audit(audit: AuditLog, kind: str, entity_id: str | None) -> list[dict[str, Any]]:
    if not entity_id:
        return []
    return [
        {
            "at": entry["at"],
            "action": entry["action"],
            "event_id": entry.get("event_id"),
            "correlation_id": entry.get("correlation_id"),
        }
        for entry in audit.history(kind, entity_id)
    ]


def _erp(store: StateStore, kind: str, canonical_id: str | None) -> dict[str, Any] | None:
    if not canonical_id:
        return None
    found = store.crosswalk(kind, canonical_id)
    return {"internal_id": found["internal_id"], "external_id": found["external_id"]} if found else None


def invoice_lineage(store: StateStore, audit: AuditLog, invoice_id: str) -> dict[str, Any]:
    """The lineage of one invoice as a JSON-able document."""
    draft = _draft(store, invoice_id)
    invoice = Invoice.model_validate_json(draft["invoice"])
    pk = draft["pk"]
    terms = store.get(pk, "TERMS")
    deal = ClosedWonDeal.model_validate_json(terms["deal"]) if terms else None
    lines: list[dict[str, Any]] = []
    for line in invoice.lines:
        sources: list[dict[str, Any]] = []
        for source_id in line.source_ids:
            if line.kind.value == "milestone":
                sources.append({"milestone_id": source_id, "audit": _audit(audit, "milestone", source_id)})
                continue
            prefix, audit_kind = (
                ("EXPENSE#", "expense") if line.kind.value == "expense" else ("CHARGE#", "time_entry")
            )
            charge = store.get(pk, f"{prefix}{source_id}") or {}
            sources.append(
                {
                    "id": source_id,
                    "charge": {key: charge.get(key) for key in _CHARGE_FIELDS if charge.get(key) is not None},
                    "audit": _audit(audit, audit_kind, source_id),
                }
            )
        lines.append(
            {
                "line_no": line.line_no,
                "kind": line.kind.value,
                "description": line.description,
                "quantity": str(line.quantity),
                "rate": str(line.rate),
                "amount": str(line.amount),
                "sources": sources,
            }
        )
    engagement_id = invoice.engagement_id
    return {
        "invoice": {
            "id": invoice.id,
            "erp_id": draft.get("erp_id"),
            "external_id": draft.get("external_id"),
            "invoice_date": invoice.invoice_date.isoformat(),
            "total": str(invoice.total.amount),
            "currency": invoice.currency,
            "status": draft.get("status"),
            "created_at": draft.get("created_at"),
            "draft": {"pk": pk, "sk": draft["sk"]},
            "milestone_id": invoice.milestone_id,
        },
        "lines": lines,
        "project": {"id": invoice.project_id, "erp": _erp(store, "project", invoice.project_id)},
        "client": {"id": invoice.client_id, "erp": _erp(store, "client", invoice.client_id)},
        "engagement": {
            "id": engagement_id,
            "terms_version": terms.get("version") if terms else None,
            "terms_updated_at": terms.get("updated_at") if terms else None,
            "audit": _audit(audit, "engagement", engagement_id),
        },
        "opportunity": (
            {"id": deal.id, "version": deal.version, "close_date": str(deal.close_date), "name": deal.name}
            if deal
            else None
        ),
    }
