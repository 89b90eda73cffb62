"""The steps of the milestone-to-invoice state machine.

Each step takes the execution state (a dict) and returns it with its own results added. An execution
is either a **milestone run** (input ``milestone_id``: the unbilled charges plus the milestone line) or
a **period-end run** (input ``period_end``, ``yyyy-mm-dd``, started by ``billing_period_close`` for a
contract billed monthly: the charges billable by the day after the period, no milestone line). The
draft of a milestone run is ``INVOICE#<milestone id>``, of a period run ``INVOICE#PERIOD#<period end>``
(an id cannot contain ``#``, so the two never collide).
Steps are safe to repeat: the billing run (``r2r_core.billing.invoicing.billing_run``) is
frozen as a draft once per milestone and reused by a redriven execution, the ERP invoice is
upserted by external id, and charges move from ``unbilled`` to ``invoiced`` with a
conditional write naming the invoice and the version billed, so an hour is never billed
twice. A charge whose entry changed between the draft and the invoice is credited on the
next invoice (an ``ADJUST#`` item), never re-billed silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.billing.invoicing import (
    Charge,
    MilestoneBilling,
    PriorBilling,
    Reversal,
    billing_run,
)
from r2r_core.billing.revenue import revenue_for_milestone
from r2r_core.bus import EventPublisher
from r2r_core.erp import records
from r2r_core.erp.mapping import ErpMapping
from r2r_core.errors import ContractInvalid, NoBillableWork, TaxConfigurationMissing
from r2r_core.flows.charges import publish_once
from r2r_core.flows.period_close import period_billed
from r2r_core.flows.project_setup import load_terms
from r2r_core.kpis import BilledTime, invoice_kpis
from r2r_core.model.entities import (
    CapThresholdReached,
    Invoice,
    InvoiceLine,
    InvoiceLineKind,
    Milestone,
)
from r2r_core.model.events import EVENT_TYPES, EventEnvelope, event_id_for
from r2r_core.model.money import Money
from r2r_core.state import AuditLog, StateStore, now_iso
from r2r_core.telemetry import emit

logger = Logger(child=True)


def period_end_of(state: Mapping[str, Any]) -> date | None:
    """The billing period a period-end run invoices (``None`` for a milestone run)."""
    if state.get("milestone_id"):
        return None
    if not state.get("period_end"):
        raise ContractInvalid("an invoice run needs a milestone_id or a period_end in its input")
    return date.fromisoformat(str(state["period_end"]))


def draft_sk(state: Mapping[str, Any]) -> str:
    """StateTable sort key (under ``ENG#<engagement>``) of the run's frozen draft."""
    period_end = period_end_of(state)
    return (
        f"INVOICE#{state['milestone_id']}"
        if period_end is None
        else f"INVOICE#PERIOD#{period_end.isoformat()}"
    )


def invoice_id_of(state: Mapping[str, Any]) -> str:
    period_end = period_end_of(state)
    if period_end is None:
        return f"{state['engagement_id']}-{state['milestone_id']}"
    return f"{state['engagement_id']}-period-{period_end.isoformat()}"


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
        mapping: ErpMapping | None = None,
        today: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.audit = audit
        self._erp = erp
        self._publisher = publisher
        self.item_ids = item_ids or {}
        # The account's mapping; plain ``item_ids`` (by line kind) are the items of a bare one.
        self.mapping = mapping or ErpMapping(items=self.item_ids)
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
        item = self.store.get(f"ENG#{state['engagement_id']}", draft_sk(state))
        if item is None:
            raise ContractInvalid(
                f"no invoice draft {draft_sk(state)} for engagement {state['engagement_id']}"
            )
        return Invoice.model_validate_json(item["invoice"])

    def _audit(self, state: dict[str, Any], action: str, detail: dict[str, Any]) -> None:
        period_end = period_end_of(state)
        self.audit.append(
            kind="milestone" if period_end is None else "billing_period",
            entity_id=state["milestone_id"] if period_end is None else invoice_id_of(state),
            action=action,
            event_id=state["event_id"],
            correlation_id=state["correlation_id"],
            detail=detail,
        )

    def _mark_billed(self, pk: str, invoice: Invoice, billed: list[dict[str, Any]]) -> list[str]:
        """Mark each billed charge invoiced (the version drafted, or already by this invoice)."""
        marked_ids = []
        for entry in billed:
            sk = f"{'CHARGE#' if entry['kind'] == 'time' else 'EXPENSE#'}{entry['source_id']}"
            held = Decimal(entry["held_hours"])
            if held > 0:
                # The run caps from the hours billable at posting: what posting already held stays held.
                held += Decimal(str((self.store.get(pk, sk) or {}).get("held_hours") or 0))
            if Decimal(entry["billable_hours"]) <= 0:
                # The caps left no room at the run: the whole charge stays held.
                self.store.update_if(
                    pk,
                    sk,
                    set_values=self._capped_at_run(entry, held),
                    condition="#status = :unbilled AND #version = :v",
                    values={":unbilled": "unbilled", ":v": entry["version"]},
                )
                continue
            values: dict[str, Any] = {
                "status": "invoiced",
                "invoice_id": invoice.id,
                "invoiced_at": now_iso(),
            }
            if held > 0:
                values |= self._capped_at_run(entry, held) | {"status": "invoiced"}
            marked = self.store.update_if(
                pk,
                sk,
                set_values=values,
                condition="(#status = :unbilled AND #version = :v) OR #invoice_id = :invoice_id",
                values={":unbilled": "unbilled", ":invoice_id": invoice.id, ":v": entry["version"]},
            )
            if not marked:
                current = self.store.get(pk, sk) or {}
                if (
                    int(current.get("version", 0)) > int(entry["version"])
                    and current.get("status") != "invoiced"
                ):
                    # Changed after the draft froze it: this invoice bills the drafted version, so that
                    # version is credited on the next invoice and the new one billed then.
                    self.store.put_new(
                        {
                            "pk": pk,
                            "sk": f"ADJUST#{entry['kind']}#{entry['source_id']}#v{entry['version']}",
                            "kind": entry["kind"],
                            "source_id": entry["source_id"],
                            "version": entry["version"],
                            "billable_hours": Decimal(entry["billable_hours"]),
                            "amount": Decimal(entry["amount"]),
                            "rate": self._drafted_rate(invoice, entry),
                            "billable_from": invoice.invoice_date.isoformat(),
                            "invoice_id": invoice.id,
                            "status": "pending",
                            "why": f"changed to version {current.get('version')} while invoiced",
                        }
                    )
                else:
                    raise ContractInvalid(
                        f"{entry['kind']} {entry['source_id']} on draft {invoice.id} is already billed "
                        "elsewhere"
                    )
            marked_ids.append(entry["source_id"])
        return marked_ids

    @staticmethod
    def _drafted_rate(invoice: Invoice, entry: dict[str, Any]) -> Decimal:
        for line in invoice.lines:
            if entry["source_id"] in line.source_ids:
                return line.rate
        return Decimal(entry["amount"])

    @staticmethod
    def _capped_at_run(entry: dict[str, Any], held: Decimal) -> dict[str, Any]:
        return {
            "decision": "capped",
            "rule": "capped-at-billing-run",
            "billable_hours": Decimal(entry["billable_hours"]),
            "amount": Decimal(entry["amount"]),
            "held_hours": held,
            "status": "held_over_cap",
            "reason": "At the billing run the caps (plus tolerance) left room for "
            f"{entry['billable_hours']} h of this entry: {held} h in all are held for approval.",
        }

    # -- steps --------------------------------------------------------------------
    def validate_contract(self, state: dict[str, Any], execution_id: str) -> dict[str, Any]:
        deal, _ = self._terms(state)
        period_end = period_end_of(state)
        if period_end is not None:
            pk = f"ENG#{deal.engagement.id}"
            completed = [
                str(i["sk"]).removeprefix("MILESTONE#") for i in self.store.query_prefix(pk, "MILESTONE#")
            ]
            if not period_billed(deal.engagement, completed):
                raise ContractInvalid(
                    f"engagement {deal.engagement.id} is not billed monthly "
                    f"(billing_schedule {deal.engagement.billing_schedule.value}) and has open milestones: "
                    "no period-end invoice"
                )
            self._audit(state, "contract_validated", {"execution_id": execution_id})
            return {
                "client_id": deal.client.id,
                "project_id": deal.project.id,
                "currency": deal.engagement.currency,
                "period_end": period_end.isoformat(),
            }
        milestone, _ = self._milestone(state)
        engagement = deal.engagement
        terms = {m.id: m for m in engagement.milestones}
        if milestone.id not in terms:
            raise ContractInvalid(
                f"milestone {milestone.id} is not in the contract of engagement {engagement.id} "
                f"(contract milestones: {', '.join(sorted(terms)) or 'none'})"
            )
        agreed = engagement.milestone_amount(milestone.id)
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
        """Freeze the invoice content (the billing run): billable charges, credits, the milestone (a period
        run: the charges billable by the day after its period, no milestone)."""
        pk = f"ENG#{state['engagement_id']}"
        period_end = period_end_of(state)
        existing = self.store.get(pk, draft_sk(state))
        if existing is None:
            deal, _ = self._terms(state)
            engagement = deal.engagement
            milestone_billing: MilestoneBilling | None = None
            milestone_completed_at: str | None = None
            if period_end is None:
                milestone, milestone_item = self._milestone(state)
                milestone_billing = MilestoneBilling(
                    milestone.id, milestone.name, engagement.milestone_amount(milestone.id)
                )
                milestone_completed_at = milestone_item.get("completed_at")
            unbilled = [
                item
                for prefix in ("CHARGE#", "EXPENSE#")
                for item in self.store.query_prefix(pk, prefix)
                if item.get("status") == "unbilled"
            ]
            charges = [Charge.from_item(item) for item in unbilled]
            reversals = [
                Reversal(Charge.from_item(item), item.get("invoice_id", ""), item.get("why", "changed"))
                for item in self.store.query_prefix(pk, "ADJUST#")
                if item.get("status") == "pending"
            ]
            prior = PriorBilling()
            billed_before = Decimal(0)
            for item in self.store.query_prefix(pk, "INVOICE#"):
                if item.get("status") == "created":
                    billed_before += Decimal(item.get("total", 0))
                    fees, hours = json.loads(item.get("fees", "{}")), json.loads(item.get("fee_hours", "{}"))
                    prior = PriorBilling(
                        fees={k: prior.fees.get(k, Decimal(0)) + Decimal(v) for k, v in fees.items()}
                        | {k: v for k, v in prior.fees.items() if k not in fees},
                        hours={k: prior.hours.get(k, Decimal(0)) + Decimal(v) for k, v in hours.items()}
                        | {k: v for k, v in prior.hours.items() if k not in hours},
                    )
            run = billing_run(
                engagement,
                invoice_id=invoice_id_of(state),
                client_id=deal.client.id,
                project_id=deal.project.id,
                invoice_date=self.today().date(),
                charges=charges,
                reversals=reversals,
                milestone=milestone_billing,
                prior=prior,
                po_number=engagement.po_number,
                # A period run bills what was billable by the first day after its period, no later work.
                bill_through=period_end + timedelta(days=1) if period_end is not None else None,
            )
            if run.invoice is None:  # a milestone run always has its milestone line
                raise NoBillableWork(
                    f"engagement {engagement.id}: nothing billable for the period ending {period_end} "
                    f"(waiting: {', '.join(run.waiting) or 'none'})"
                )
            invoice = run.invoice
            created = self.store.put_new(
                {
                    "pk": pk,
                    "sk": draft_sk(state),
                    "invoice": invoice.model_dump_json(),
                    "billed": json.dumps(
                        [
                            {
                                "kind": b.kind,
                                "source_id": b.source_id,
                                "version": b.version,
                                "billable_hours": str(b.billable_hours),
                                "amount": str(b.amount),
                                "held_hours": str(b.held_hours),
                            }
                            for b in run.billed
                        ]
                    ),
                    "credited": json.dumps(
                        [[r.charge.kind, r.charge.source_id, r.charge.version] for r in run.credited]
                    ),
                    "fees": json.dumps({k: str(v) for k, v in run.fees.items()}),
                    "fee_hours": json.dumps({k: str(v) for k, v in run.hours.items()}),
                    "warnings": json.dumps([w.model_dump(mode="json") for w in run.warnings]),
                    "status": "draft",
                    "total": invoice.total.amount,
                    "currency": invoice.currency,
                    "execution_id": execution_id,
                    "drafted_at": now_iso(),
                    "kpi_inputs": json.dumps(
                        _kpi_inputs(run.billed, unbilled, billed_before, milestone_completed_at)
                    ),
                }
            )
            if created:
                self._audit(
                    state,
                    "invoice_drafted",
                    {
                        "invoice_id": invoice.id,
                        "total": invoice.total.amount,
                        "lines": len(invoice.lines),
                        "waiting": run.waiting,
                        "credits": len(run.credited),
                    },
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
        """Upsert the run's ERP documents: the invoice, or — credits larger than the charges — a credit
        memo for the credits (and an invoice for the charges, if the run has any)."""
        deal, terms = self._terms(state)
        invoice = self._draft(state)
        to_invoice, credits = erp_documents(invoice)
        mapping = self.mapping
        tax_code = mapping.tax_code_for(deal.client.billing_country)

        def erp_lines(lines: list[Any], sign: int) -> list[records.InvoiceLine]:
            return [
                records.InvoiceLine(
                    item_id=mapping.item_for(line.kind.value, line.role),
                    description=line.description,
                    quantity=sign * line.quantity,
                    rate=line.rate,
                    amount=sign * line.amount,
                    tax_code_id=tax_code,
                )
                for line in lines
            ]

        common: dict[str, Any] = {
            "customer_id": terms["erp_customer_id"],
            "job_id": terms["erp_job_id"],
            "tran_date": invoice.invoice_date,
            "currency": invoice.currency,
            "currency_id": mapping.currency_id(invoice.currency),
            "subsidiary_id": mapping.subsidiary_id,
            "segments": mapping.segments(deal.engagement.region, deal.engagement.business_unit).as_fields(),
        }
        erp_id: str | None = None
        external_id: str | None = None
        if to_invoice is not None:
            external_id = records.external_id("invoice", invoice.id)
            erp_id = self._erp().upsert(
                "invoice",
                external_id,
                records.invoice_body(
                    **common, memo=f"r2r invoice {invoice.id}", lines=erp_lines(to_invoice.lines, 1)
                ),
            )
        memo: dict[str, Any] = {}
        if credits:
            memo_external_id = records.external_id("credit-memo", invoice.id)
            memo_id = self._erp().upsert(
                "creditMemo",
                memo_external_id,
                records.credit_memo_body(
                    **common, memo=f"r2r credit memo {invoice.id}", lines=erp_lines(credits, -1)
                ),
            )
            memo = {
                "erp_credit_memo_id": memo_id,
                "credit_memo_external_id": memo_external_id,
                "credit_memo_total": str(-sum((line.amount for line in credits), Decimal(0))),
            }
        pk = f"ENG#{state['engagement_id']}"
        draft = self.store.get(pk, draft_sk(state)) or {}
        billed_ids = self._mark_billed(pk, invoice, json.loads(draft.get("billed", "[]")))
        for kind, source_id, version in json.loads(draft.get("credited", "[]")):
            self.store.update_if(
                pk,
                f"ADJUST#{kind}#{source_id}#v{version}",
                set_values={"status": "credited", "credited_on_invoice_id": invoice.id}
                | ({"credit_memo_external_id": memo["credit_memo_external_id"]} if memo else {}),
                condition="#status = :pending OR #credited_on_invoice_id = :invoice_id",
                values={":pending": "pending", ":invoice_id": invoice.id},
            )
        period_end = period_end_of(state)
        if period_end is None:
            self.store.update_if(
                pk,
                f"MILESTONE#{state['milestone_id']}",
                set_values={"status": "invoiced", "invoice_id": invoice.id},
                condition="attribute_exists(pk)",
                values={},
            )
        self.store.update_if(
            pk,
            draft_sk(state),
            set_values={
                "status": "created",
                "document": document_of(to_invoice, credits),
                "created_at": now_iso(),
            }
            | ({"erp_id": erp_id, "external_id": external_id} if erp_id is not None else {})
            | memo,
            condition="attribute_exists(pk)",
            values={},
        )
        if memo:
            self.store.put_crosswalk(
                "credit_memo",
                invoice.id,
                internal_id=memo["erp_credit_memo_id"],
                external_id=memo["credit_memo_external_id"],
            )
        if to_invoice is None or erp_id is None or external_id is None:
            # Only a credit memo: no invoice to poll for its status, no invoice KPIs.
            self._audit(state, "credit_memo_created", {"invoice_id": invoice.id, **memo})
            logger.info("credit memo created", extra={"invoice_id": invoice.id, **memo})
            return {
                "erp_invoice_id": None,
                "invoice_external_id": None,
                "document": document_of(to_invoice, credits),
                **memo,
            }
        self.store.put_crosswalk("invoice", invoice.id, internal_id=erp_id, external_id=external_id)
        # The invoice status poller finds the engagement, milestone (or period) and draft of an invoice here.
        self.store.put_new(
            {
                "pk": f"INVOICE#{invoice.id}",
                "sk": "LOOKUP",
                "engagement_id": state["engagement_id"],
                **(
                    {"milestone_id": state["milestone_id"]}
                    if period_end is None
                    else {"period_end": period_end.isoformat()}
                ),
                "draft_sk": draft_sk(state),
                "external_id": external_id,
                "region": deal.engagement.region,
                "business_unit": deal.engagement.business_unit,
            }
        )
        self._emit_kpis(deal.engagement, to_invoice, draft)
        self._audit(
            state,
            "invoice_created",
            {
                "invoice_id": invoice.id,
                "erp_id": erp_id,
                "total": to_invoice.total.amount,
                "time_entries": billed_ids,
                **memo,
            },
        )
        logger.info("invoice created", extra={"invoice_id": invoice.id, "erp_id": erp_id})
        return {
            "erp_invoice_id": erp_id,
            "invoice_external_id": external_id,
            "document": document_of(to_invoice, credits),
            **memo,
        }

    def _emit_kpis(self, engagement: Any, invoice: Invoice, draft: dict[str, Any]) -> None:
        """KPIs of the invoice from what the draft froze (no extra read). A redriven step emits again:
        CloudWatch counts that run twice, the StateTable (and the report) count the invoice once."""
        inputs = json.loads(draft.get("kpi_inputs") or "{}")
        completed = inputs.get("milestone_completed_at")
        emit(
            invoice_kpis(
                region=engagement.region,
                business_unit=engagement.business_unit,
                currency=invoice.currency,
                invoice_total=invoice.total.amount,
                invoiced_at=self.today(),
                milestone_completed_at=datetime.fromisoformat(completed) if completed else None,
                time=billed_time(inputs.get("time", [])),
                contract_value=engagement.contract_value.amount if engagement.contract_value else None,
                billed_before=Decimal(inputs.get("billed_before", "0")),
            )
        )

    def publish_invoice_created(self, state: dict[str, Any], execution_id: str) -> dict[str, Any]:
        """``invoice.created`` for the invoice the ERP got (its charges only when the credits went on a credit
        memo); none when the run issued only a credit memo (``document: credit_memo`` in the output)."""
        to_invoice, _credits = erp_documents(self._draft(state))
        invoice_event_id: str | None = None
        if to_invoice is not None and state.get("erp_invoice_id"):
            invoice = to_invoice.model_copy(
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
            invoice_event_id = envelope.event_id
        deal, _ = self._terms(state)
        draft = self.store.get(f"ENG#{state['engagement_id']}", draft_sk(state)) or {}
        for warning in json.loads(draft.get("warnings", "[]")):
            record = CapThresholdReached.model_validate(warning)
            publish_once(
                self.store,
                self._publisher(),
                engagement_id=state["engagement_id"],
                sk=f"CAPWARN#{record.id}",
                event_type="billing.cap_threshold_reached",
                record=record,
                correlation_id=state["correlation_id"],
            )
        if period_end_of(state) is not None:
            # Hourly work was recognised as delivered (time posting): a period invoice recognises nothing.
            return {"invoice_event_id": invoice_event_id, "revenue_event_id": None}
        milestone, _ = self._milestone(state)
        revenue = revenue_for_milestone(deal.engagement, milestone)
        if revenue is not None:
            publish_once(
                self.store,
                self._publisher(),
                engagement_id=state["engagement_id"],
                sk=f"REVENUE#{revenue.id}",
                event_type="revenue.recognized",
                record=revenue,
                correlation_id=state["correlation_id"],
            )
        return {"invoice_event_id": invoice_event_id, "revenue_event_id": revenue.id if revenue else None}


def erp_documents(invoice: Invoice) -> tuple[Invoice | None, list[InvoiceLine]]:
    """What the ERP gets for a frozen billing run: the invoice as drafted when its total is not negative
    (credits on the invoice); otherwise an invoice of the charge lines (None when there are none) and the
    credit lines for a credit memo — r2r never sends a negative invoice."""
    if invoice.total.amount >= 0:
        return invoice, []
    credits = [line for line in invoice.lines if line.kind is InvoiceLineKind.ADJUSTMENT]
    charged = [line for line in invoice.lines if line.kind is not InvoiceLineKind.ADJUSTMENT]
    if not charged:
        return None, credits
    lines = [line.model_copy(update={"line_no": n}) for n, line in enumerate(charged, start=1)]
    total = Money(amount=sum((line.amount for line in lines), Decimal(0)), currency=invoice.currency)
    return Invoice.model_validate({**invoice.model_dump(), "lines": lines, "total": total}), credits


def document_of(to_invoice: Invoice | None, credits: list[InvoiceLine]) -> str:
    if not credits:
        return "invoice"
    return "credit_memo" if to_invoice is None else "invoice_and_credit_memo"


STEPS = (
    "validate_contract",
    "confirm_approved_charges",
    "check_tax_and_legal_entity",
    "create_invoice",
    "publish_invoice_created",
)


def _kpi_inputs(
    billed: Any, unbilled: list[dict[str, Any]], billed_before: Decimal, milestone_completed_at: str | None
) -> dict[str, Any]:
    """What the KPIs of this invoice need, frozen with the draft: the time billed (region, resource,
    approval, hours, amounts written off), the total billed before, when the milestone completed."""
    items = {(item.get("kind"), item.get("source_id")): item for item in unbilled}
    time = []
    for b in billed:
        item = items.get((b.kind, b.source_id))
        if b.kind != "time" or item is None or not item.get("approved_at"):
            continue
        time.append(
            {
                "region": item.get("region") or "",
                "resource_id": item.get("resource_id") or "",
                "work_date": item.get("work_date"),
                "approved_at": item.get("approved_at"),
                "hours": str(item.get("hours", 0)),
                "billable_hours": str(b.billable_hours),
                "amount": str(b.amount),
                "held_amount": str(item.get("held_amount", 0)),
                "written_off": item.get("cap_policy") == "write_off",
            }
        )
    return {
        "time": time,
        "billed_before": str(billed_before),
        "milestone_completed_at": milestone_completed_at,
    }


def billed_time(rows: list[dict[str, Any]]) -> list[BilledTime]:
    return [
        BilledTime(
            region=row["region"],
            resource_id=row["resource_id"],
            work_date=date.fromisoformat(row["work_date"]),
            approved_at=datetime.fromisoformat(row["approved_at"]),
            hours=Decimal(row["hours"]),
            billable_hours=Decimal(row["billable_hours"]),
            amount=Decimal(row["amount"]),
            held_amount=Decimal(row["held_amount"]),
            written_off=bool(row["written_off"]),
        )
        for row in rows
    ]
