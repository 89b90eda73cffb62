"""The steps of the milestone-to-invoice state machine.

Each step takes the execution state (a dict) and returns it with its own results added.
Steps are safe to repeat: the draft is stored once per milestone and reused by a
redriven execution, the ERP invoice is upserted by external id, and charges move from
``unbilled`` to ``invoiced`` with a conditional write naming the invoice, so an hour is
never billed twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.billing.invoicing import draft_invoice
from r2r_core.bus import EventPublisher
from r2r_core.erp import records
from r2r_core.errors import ContractInvalid, TaxConfigurationMissing
from r2r_core.flows.project_setup import load_terms
from r2r_core.model.entities import Invoice, InvoiceLineKind, Milestone
from r2r_core.model.events import EVENT_TYPES, EventEnvelope, event_id_for
from r2r_core.state import AuditLog, StateStore, now_iso

logger = Logger(child=True)


class Erp(Protocol):
    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str: ...


class InvoiceSteps:
    def __init__(
        self,
        *,
        store: StateStore,
        audit: AuditLog,
        erp: Callable[[], Erp],
        publisher: Callable[[], EventPublisher],
        item_ids: dict[str, str] | None = None,
        today: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.audit = audit
        self._erp = erp
        self._publisher = publisher
        self.item_ids = item_ids or {}
        self.today = today

    def run(self, step: str, state: dict[str, Any], execution_id: str) -> dict[str, Any]:
        handler = getattr(self, step, None) if step in STEPS else None
        if handler is None:
            raise ValueError(f"unknown invoice step {step!r}; expected one of {', '.join(STEPS)}")
        result: dict[str, Any] = handler(state, execution_id)
        return {**state, **result}

    # -- helpers ------------------------------------------------------------------
    def _terms(self, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        loaded = load_terms(self.store, state["engagement_id"])
        if loaded is None:
            raise ContractInvalid(
                f"engagement {state['engagement_id']} has no contract terms: was it set up?"
            )
        return loaded

    def _milestone(self, state: dict[str, Any]) -> tuple[Milestone, dict[str, Any]]:
        item = self.store.get(f"ENG#{state['engagement_id']}", f"MILESTONE#{state['milestone_id']}")
        if item is None:
            raise ContractInvalid(f"milestone {state['milestone_id']} was not recorded as completed")
        return Milestone.model_validate_json(item["milestone"]), item

    def _draft(self, state: dict[str, Any]) -> Invoice:
        item = self.store.get(f"ENG#{state['engagement_id']}", f"INVOICE#{state['milestone_id']}")
        if item is None:
            raise ContractInvalid(f"no invoice draft for milestone {state['milestone_id']}")
        return Invoice.model_validate_json(item["invoice"])

    def _audit(self, state: dict[str, Any], action: str, detail: dict[str, Any]) -> None:
        self.audit.append(
            kind="milestone",
            entity_id=state["milestone_id"],
            action=action,
            event_id=state["event_id"],
            correlation_id=state["correlation_id"],
            detail=detail,
        )

    # -- steps --------------------------------------------------------------------
    def validate_contract(self, state: dict[str, Any], execution_id: str) -> dict[str, Any]:
        deal, _ = self._terms(state)
        milestone, _ = self._milestone(state)
        engagement = deal.engagement
        terms = {m.id: m for m in engagement.milestones}
        if milestone.id not in terms:
            raise ContractInvalid(
                f"milestone {milestone.id} is not in the contract of engagement {engagement.id} "
                f"(contract milestones: {', '.join(sorted(terms)) or 'none'})"
            )
        agreed = terms[milestone.id].amount
        if milestone.amount != agreed:
            raise ContractInvalid(
                f"milestone {milestone.id} amount {milestone.amount} differs from the contract's {agreed}"
            )
        self._audit(state, "contract_validated", {"execution_id": execution_id})
        return {
            "client_id": deal.client.id,
            "project_id": deal.project.id,
            "currency": engagement.currency,
            "milestone_amount": str(milestone.amount.amount),
        }

    def confirm_approved_charges(self, state: dict[str, Any], execution_id: str) -> dict[str, Any]:
        """Freeze the invoice content: unbilled approved time plus the milestone amount."""
        pk = f"ENG#{state['engagement_id']}"
        existing = self.store.get(pk, f"INVOICE#{state['milestone_id']}")
        if existing is None:
            deal, _ = self._terms(state)
            milestone, _ = self._milestone(state)
            charges = [c for c in self.store.query_prefix(pk, "CHARGE#") if c.get("status") == "unbilled"]
            invoice = draft_invoice(
                invoice_id=f"{state['engagement_id']}-{state['milestone_id']}",
                engagement_id=deal.engagement.id,
                client_id=deal.client.id,
                project_id=deal.project.id,
                currency=deal.engagement.currency,
                milestone=milestone,
                charges=charges,
                invoice_date=self.today().date(),
                po_number=deal.engagement.po_number,
            )
            created = self.store.put_new(
                {
                    "pk": pk,
                    "sk": f"INVOICE#{state['milestone_id']}",
                    "invoice": invoice.model_dump_json(),
                    "status": "draft",
                    "total": invoice.total.amount,
                    "currency": invoice.currency,
                    "execution_id": execution_id,
                    "drafted_at": now_iso(),
                }
            )
            if created:
                self._audit(
                    state,
                    "invoice_drafted",
                    {"invoice_id": invoice.id, "total": invoice.total.amount, "lines": len(invoice.lines)},
                )
        invoice = self._draft(state)
        return {
            "invoice_id": invoice.id,
            "invoice_total": str(invoice.total.amount),
            "line_count": len(invoice.lines),
        }

    def check_tax_and_legal_entity(self, state: dict[str, Any], execution_id: str) -> dict[str, Any]:
        deal, _ = self._terms(state)
        engagement = deal.engagement
        missing = [
            name
            for name, value in (
                ("engagement.legal_entity", engagement.legal_entity),
                ("engagement.tax_registration", engagement.tax_registration),
            )
            if not value
        ]
        if missing:
            raise TaxConfigurationMissing(
                f"engagement {engagement.id} cannot be invoiced: {', '.join(missing)} not set in the contract"
            )
        return {"legal_entity": engagement.legal_entity, "client_country": deal.client.billing_country}

    def create_invoice(self, state: dict[str, Any], execution_id: str) -> dict[str, Any]:
        _, terms = self._terms(state)
        invoice = self._draft(state)
        external_id = records.external_id("invoice", invoice.id)
        lines = [
            records.InvoiceLine(
                item_id=self.item_ids.get(line.kind.value, self.item_ids.get("default", "1")),
                description=line.description,
                quantity=line.quantity,
                rate=line.rate,
                amount=line.amount,
            )
            for line in invoice.lines
        ]
        erp_id = self._erp().upsert(
            "invoice",
            external_id,
            records.invoice_body(
                customer_id=terms["erp_customer_id"],
                job_id=terms["erp_job_id"],
                tran_date=invoice.invoice_date,
                currency=invoice.currency,
                memo=f"r2r invoice {invoice.id}",
                lines=lines,
            ),
        )
        pk = f"ENG#{state['engagement_id']}"
        billed = [
            sid for line in invoice.lines if line.kind is InvoiceLineKind.TIME for sid in line.source_ids
        ]
        for time_entry_id in billed:
            marked = self.store.update_if(
                pk,
                f"CHARGE#{time_entry_id}",
                set_values={"status": "invoiced", "invoice_id": invoice.id, "invoiced_at": now_iso()},
                condition="#status = :unbilled OR #invoice_id = :invoice_id",
                values={":unbilled": "unbilled", ":invoice_id": invoice.id},
            )
            if not marked:
                raise ContractInvalid(
                    f"time entry {time_entry_id} on draft {invoice.id} is already billed elsewhere"
                )
        self.store.update_if(
            pk,
            f"MILESTONE#{state['milestone_id']}",
            set_values={"status": "invoiced", "invoice_id": invoice.id},
            condition="attribute_exists(pk)",
            values={},
        )
        self.store.update_if(
            pk,
            f"INVOICE#{state['milestone_id']}",
            set_values={
                "status": "created",
                "erp_id": erp_id,
                "external_id": external_id,
                "created_at": now_iso(),
            },
            condition="attribute_exists(pk)",
            values={},
        )
        self.store.put_crosswalk("invoice", invoice.id, internal_id=erp_id, external_id=external_id)
        self._audit(
            state,
            "invoice_created",
            {
                "invoice_id": invoice.id,
                "erp_id": erp_id,
                "total": invoice.total.amount,
                "time_entries": billed,
            },
        )
        logger.info("invoice created", extra={"invoice_id": invoice.id, "erp_id": erp_id})
        return {"erp_invoice_id": erp_id, "invoice_external_id": external_id}

    def publish_invoice_created(self, state: dict[str, Any], execution_id: str) -> dict[str, Any]:
        invoice = self._draft(state).model_copy(
            update={"erp_id": state["erp_invoice_id"], "external_id": state["invoice_external_id"]}
        )
        kind = EVENT_TYPES["invoice.created"]
        envelope = EventEnvelope(
            type=kind.name,
            schema_version=kind.schema_version,
            event_id=event_id_for("r2r", f"invoice.created/{invoice.id}"),
            source_system="erp",
            source_record_id=invoice.id,
            source_record_version=invoice.version,
            correlation_id=state["correlation_id"],
            occurred_at=datetime.now(UTC),
            data=invoice.model_dump(mode="json"),
        )
        self._publisher().publish(envelope)
        return {"invoice_event_id": envelope.event_id}


STEPS = (
    "validate_contract",
    "confirm_approved_charges",
    "check_tax_and_legal_entity",
    "create_invoice",
    "publish_invoice_created",
)
