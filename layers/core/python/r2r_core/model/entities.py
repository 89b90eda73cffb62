"""The canonical model: one name per concept, used the same in code, events, tables and docs.

Every entity that arrives from a source system carries ``id`` (the canonical id, stable
across systems) and ``version`` (the source record's version: a counter or a
last-modified timestamp in epoch milliseconds) so that consumers can be idempotent on
(id, version) and reject stale updates. Money is always :class:`Money` or a ``Decimal``
next to an explicit currency, never a float.
"""

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from r2r_core.model.money import CurrencyCode, Money, round_money

CanonicalId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Hours = Annotated[Decimal, Field(ge=0, le=24, max_digits=6, decimal_places=2, allow_inf_nan=False)]
Rate = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=4, allow_inf_nan=False)]
Percent = Annotated[Decimal, Field(ge=0, le=100, max_digits=7, decimal_places=4, allow_inf_nan=False)]
TotalHours = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False)]
FxRateValue = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=10, allow_inf_nan=False)]
Version = Annotated[int, Field(ge=1, description="Source record version: a counter or epoch milliseconds.")]


class CanonicalModel(BaseModel):
    # defer_build: a model's validator is built on its first use, not at import, so a function builds
    # only the models its first invocation touches (a cold start is not spent on the whole catalogue).
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, defer_build=True)


class SourceRecord(CanonicalModel):
    id: CanonicalId
    version: Version = 1


class SystemOfRecord(StrEnum):
    CRM = "crm"
    PSA = "psa"
    HRIS = "hris"
    ERP = "erp"


class BillingType(StrEnum):
    TIME_AND_MATERIALS = "time_and_materials"
    FIXED_FEE = "fixed_fee"
    CAPPED_TIME_AND_MATERIALS = "capped_time_and_materials"
    RETAINER = "retainer"
    MIXED = "mixed"


class Client(SourceRecord):
    name: Name
    legal_name: Name | None = None
    billing_country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
    currency: CurrencyCode
    tax_registration: str | None = Field(
        default=None, description="VAT/GST/sales-tax registration of the client."
    )
    region: Name
    business_unit: Name | None = None
    email: str | None = None


class RateCardRate(CanonicalModel):
    role: Name
    region: Name
    rate: Rate = Field(description="Hourly bill rate in the rate's currency.")
    currency: CurrencyCode | None = Field(
        default=None, description="Currency of this rate when it differs from the rate card's."
    )
    effective_from: date
    effective_to: date | None = Field(default=None, description="Inclusive last day; open-ended when absent.")

    @model_validator(mode="after")
    def _dates_ordered(self) -> Self:
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        return self

    def in_force_on(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)


class RateCard(SourceRecord):
    name: Name
    currency: CurrencyCode
    rates: list[RateCardRate] = Field(min_length=1)

    def currency_of(self, rate: RateCardRate) -> str:
        return rate.currency or self.currency


class AssignmentRate(CanonicalModel):
    """A bill rate agreed for one assignment: beats every rate card (precedence 1)."""

    assignment_id: CanonicalId
    rate: Money
    effective_from: date
    effective_to: date | None = Field(default=None, description="Inclusive last day; open-ended when absent.")

    @model_validator(mode="after")
    def _dates_ordered(self) -> Self:
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        if self.rate.amount < 0:
            raise ValueError("rate.amount is negative")
        return self

    def in_force_on(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)


class MilestoneTerms(CanonicalModel):
    """A fixed-fee milestone as the contract defines it: an amount, or a percent of the contract value."""

    id: CanonicalId
    name: Name
    amount: Money | None = None
    percent_of_contract: Percent | None = None
    due_date: date | None = None

    @model_validator(mode="after")
    def _amount_or_percent(self) -> Self:
        if (self.amount is None) == (self.percent_of_contract is None):
            raise ValueError("a milestone needs exactly one of amount and percent_of_contract")
        return self


class CapPolicy(StrEnum):
    """What happens to work over a not-to-exceed: held for a change order, or written off."""

    HOLD_FOR_APPROVAL = "hold_for_approval"
    WRITE_OFF = "write_off"


class BudgetCap(CanonicalModel):
    """A purchase order or budget inside the contract: its own not-to-exceed for work in its dates."""

    id: CanonicalId
    po_number: str | None = None
    amount: Money | None = None
    hours: TotalHours | None = None
    effective_from: date
    effective_to: date | None = None

    @model_validator(mode="after")
    def _a_limit(self) -> Self:
        if self.amount is None and self.hours is None:
            raise ValueError(f"budget {self.id} needs amount, hours or both")
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError(f"budget {self.id}: effective_to is before effective_from")
        return self

    def covers(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)


class RetainerTerms(CanonicalModel):
    """A prepaid retainer: time at rate draws the prepaid amount down; overage is billed at rate."""

    prepaid: Money


class BillingSchedule(StrEnum):
    WITH_NEXT_INVOICE = "with_next_invoice"
    MONTHLY = "monthly"


class LineGrouping(StrEnum):
    ROLE_AND_REGION = "role_and_region"
    ROLE = "role"
    RESOURCE = "resource"


class RevenueMethod(StrEnum):
    MILESTONE_ACCEPTANCE = "milestone_acceptance"
    PERCENT_COMPLETE = "percent_complete"


class FxRate(CanonicalModel):
    """1 ``from_currency`` = ``rate`` ``to_currency`` for the dates given (contractual or treasury rate)."""

    from_currency: CurrencyCode
    to_currency: CurrencyCode
    rate: FxRateValue
    effective_from: date
    effective_to: date | None = None

    def in_force_on(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)


class ExpensePolicy(CanonicalModel):
    """How approved expenses are re-billed to the client."""

    billable: bool = Field(default=True, description="False: expenses are cost only on this contract.")
    non_billable_categories: list[Name] = Field(default_factory=list)
    markup_percent: Percent = Decimal(0)
    category_caps: dict[str, Money] = Field(
        default_factory=dict, description="Most billed per expense of a category (after markup)."
    )
    receipt_required_over: Money | None = Field(
        default=None, description="A receipt is required above this amount; absent: always required."
    )


class Engagement(SourceRecord):
    """The contract / statement of work: how and in what currency the work is billed."""

    client_id: CanonicalId
    opportunity_id: CanonicalId | None = None
    name: Name
    billing_type: BillingType
    currency: CurrencyCode
    contract_value: Money | None = None
    rate_card: RateCard | None = Field(default=None, description="The project rate card (precedence 2).")
    client_rate_card: RateCard | None = Field(default=None, description="The client's card (precedence 3).")
    default_rate_card: RateCard | None = Field(default=None, description="The firm's default (precedence 4).")
    assignment_rates: list[AssignmentRate] = Field(
        default_factory=list, description="Assignment overrides (precedence 1)."
    )
    cap: Money | None = Field(default=None, description="Not-to-exceed amount for capped T&M.")
    cap_hours: TotalHours | None = None
    cap_tolerance_percent: Percent = Field(
        default=Decimal(0), description="Work may exceed a cap by this much before it is held."
    )
    cap_policy: CapPolicy = CapPolicy.HOLD_FOR_APPROVAL
    budgets: list[BudgetCap] = Field(default_factory=list, description="PO / budget caps by date range.")
    retainer: RetainerTerms | None = None
    billing_schedule: BillingSchedule = BillingSchedule.WITH_NEXT_INVOICE
    line_grouping: LineGrouping = LineGrouping.ROLE_AND_REGION
    revenue_method: RevenueMethod = RevenueMethod.MILESTONE_ACCEPTANCE
    estimated_hours: TotalHours | None = Field(
        default=None, description="Hours the fixed fee is estimated at (percent-complete revenue)."
    )
    expense_policy: ExpensePolicy = Field(default_factory=ExpensePolicy)
    fx_rates: list[FxRate] = Field(default_factory=list)
    milestones: list[MilestoneTerms] = Field(default_factory=list)
    legal_entity: Name | None = Field(default=None, description="Our billing entity (NetSuite subsidiary).")
    tax_registration: str | None = Field(default=None, description="Tax registration of our billing entity.")
    po_number: str | None = None
    start_date: date
    end_date: date | None = None
    region: Name
    business_unit: Name | None = None

    @model_validator(mode="after")
    def _currencies_agree(self) -> Self:
        for field in ("rate_card", "client_rate_card", "default_rate_card"):
            card: RateCard | None = getattr(self, field)
            if card is not None and not any(card.currency_of(r) == self.currency for r in card.rates):
                raise ValueError(
                    f"{field}.currency {card.currency} differs from currency {self.currency} "
                    f"and no rate of the card is in {self.currency}"
                )
        for index, milestone in enumerate(self.milestones):
            if milestone.amount is not None and milestone.amount.currency != self.currency:
                raise ValueError(f"milestones[{index}].amount.currency differs from engagement currency")
            if milestone.percent_of_contract is not None and self.contract_value is None:
                raise ValueError(f"milestones[{index}] is a percent of contract_value, which is not set")
        for name, money in (("cap", self.cap), ("contract_value", self.contract_value)):
            if money is not None and money.currency != self.currency:
                raise ValueError(f"{name}.currency differs from engagement currency")
        for index, budget in enumerate(self.budgets):
            if budget.amount is not None and budget.amount.currency != self.currency:
                raise ValueError(f"budgets[{index}].amount.currency differs from engagement currency")
        for index, override in enumerate(self.assignment_rates):
            if override.rate.currency != self.currency:
                raise ValueError(f"assignment_rates[{index}].rate.currency differs from engagement currency")
        if self.retainer is not None and self.retainer.prepaid.currency != self.currency:
            raise ValueError("retainer.prepaid.currency differs from engagement currency")
        hourly = {
            BillingType.TIME_AND_MATERIALS,
            BillingType.CAPPED_TIME_AND_MATERIALS,
            BillingType.RETAINER,
            BillingType.MIXED,
        }
        has_rates = any(
            (self.rate_card, self.client_rate_card, self.default_rate_card, self.assignment_rates)
        )
        if self.billing_type in hourly and not has_rates:
            raise ValueError(f"a {self.billing_type.value} engagement needs a rate_card")
        if self.billing_type is BillingType.CAPPED_TIME_AND_MATERIALS and (
            self.cap is None and self.cap_hours is None and not self.budgets
        ):
            raise ValueError("a capped_time_and_materials engagement needs cap, cap_hours or budgets")
        if self.billing_type is BillingType.RETAINER and self.retainer is None:
            raise ValueError("a retainer engagement needs retainer terms (retainer.prepaid)")
        if self.revenue_method is RevenueMethod.PERCENT_COMPLETE and (
            self.estimated_hours is None or self.estimated_hours <= 0 or self.contract_value is None
        ):
            raise ValueError("percent_complete revenue needs estimated_hours > 0 and contract_value")
        return self

    def milestone_amount(self, milestone_id: str) -> Money:
        """The contract amount of a milestone: its amount, or its percent of the contract value (half-up)."""
        for terms in self.milestones:
            if terms.id == milestone_id:
                if terms.amount is not None:
                    return terms.amount
                assert terms.percent_of_contract is not None and self.contract_value is not None
                exact = self.contract_value.amount * terms.percent_of_contract / Decimal(100)
                return Money(amount=round_money(exact, self.currency), currency=self.currency)
        raise KeyError(milestone_id)


class Project(SourceRecord):
    engagement_id: CanonicalId
    client_id: CanonicalId
    name: Name
    start_date: date
    end_date: date | None = None
    region: Name
    business_unit: Name | None = None
    billable: bool = True


class ResourceStatus(StrEnum):
    ACTIVE = "active"
    TERMINATED = "terminated"


class Resource(SourceRecord):
    """A worker (employee or contractor) as the HRIS knows them."""

    name: Name
    email: str | None = None
    role: Name
    region: Name
    business_unit: Name | None = None
    cost_rate: Money | None = None
    status: ResourceStatus = ResourceStatus.ACTIVE
    termination_date: date | None = None
    job_profile: Name | None = None
    cost_center: Name | None = None


class Assignment(SourceRecord):
    project_id: CanonicalId
    resource_id: CanonicalId
    role: Name
    bill_rate_override: Money | None = None
    start_date: date
    end_date: date | None = None
    planned_hours: Annotated[Decimal, Field(ge=0)] | None = None


class ApprovalStatus(StrEnum):
    APPROVED = "approved"
    UNAPPROVED = "unapproved"


class TimeEntry(SourceRecord):
    """One resource's approved hours on one project for one day.

    A later version with ``status`` ``unapproved`` withdraws the approval (credited if invoiced).
    """

    engagement_id: CanonicalId
    project_id: CanonicalId
    resource_id: CanonicalId
    assignment_id: CanonicalId | None = None
    role: Name
    region: Name
    work_date: date
    hours: Hours = Field(gt=0)
    billable: bool = True
    status: ApprovalStatus = ApprovalStatus.APPROVED
    approved_at: AwareDatetime
    notes: Annotated[str, StringConstraints(max_length=2000)] | None = None


class Expense(SourceRecord):
    engagement_id: CanonicalId
    project_id: CanonicalId
    resource_id: CanonicalId
    expense_date: date
    category: Name
    amount: Money
    billable: bool = True
    receipt_attached: bool = False
    status: ApprovalStatus = ApprovalStatus.APPROVED
    approved_at: AwareDatetime

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.amount.amount <= 0:
            raise ValueError("amount.amount must be positive")
        return self


class MilestoneStatus(StrEnum):
    PLANNED = "planned"
    COMPLETED = "completed"
    ACCEPTED = "accepted"


class Milestone(SourceRecord):
    """A milestone reached on a project; completing it triggers milestone-to-invoice."""

    engagement_id: CanonicalId
    project_id: CanonicalId
    name: Name
    amount: Money
    status: MilestoneStatus
    completed_on: date


class InvoiceLineKind(StrEnum):
    TIME = "time"
    MILESTONE = "milestone"
    EXPENSE = "expense"
    ADJUSTMENT = "adjustment"


class InvoiceLine(CanonicalModel):
    line_no: Annotated[int, Field(ge=1)]
    kind: InvoiceLineKind
    description: Name
    role: Name | None = None
    region: Name | None = None
    quantity: Annotated[Decimal, Field(allow_inf_nan=False)]
    rate: Annotated[Decimal, Field(allow_inf_nan=False)]
    amount: Annotated[Decimal, Field(allow_inf_nan=False)]
    source_ids: list[CanonicalId] = Field(
        default_factory=list, description="Canonical ids of the time entries, expenses or milestone billed."
    )


class InvoiceStatus(StrEnum):
    OPEN = "open"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    VOIDED = "voided"
    CREDITED = "credited"


class Invoice(SourceRecord):
    engagement_id: CanonicalId
    client_id: CanonicalId
    project_id: CanonicalId
    milestone_id: CanonicalId | None = None
    invoice_date: date
    currency: CurrencyCode
    lines: list[InvoiceLine] = Field(min_length=1)
    total: Money
    status: InvoiceStatus = InvoiceStatus.OPEN
    erp_id: str | None = None
    external_id: str | None = None
    po_number: str | None = None

    @model_validator(mode="after")
    def _total_is_sum_of_lines(self) -> Self:
        if self.total.currency != self.currency:
            raise ValueError("total.currency differs from invoice currency")
        line_sum = sum((line.amount for line in self.lines), Decimal(0))
        if line_sum != self.total.amount:
            raise ValueError(f"total {self.total.amount} is not the sum of the lines {line_sum}")
        return self


class InvoiceStatusChange(SourceRecord):
    """The settlement of an invoice changed in the ERP (seen by the status poller).

    ``id`` is the canonical invoice id; ``version`` counts the changes r2r has seen of it, so each
    change is its own business key. Amounts are in the invoice currency.
    """

    engagement_id: CanonicalId | None = None
    milestone_id: CanonicalId | None = None
    erp_id: str = Field(min_length=1, max_length=64)
    invoice_number: str = Field(min_length=1, max_length=64, description="The ERP document number (tranid).")
    invoice_date: date | None = None
    status: InvoiceStatus
    previous_status: InvoiceStatus | None = None
    total: Money
    amount_remaining: Money
    amount_paid: Money
    erp_last_modified: str = Field(min_length=1, max_length=40, description="ERP lastModifiedDate (ISO).")

    @model_validator(mode="after")
    def _one_currency(self) -> Self:
        if len({self.total.currency, self.amount_remaining.currency, self.amount_paid.currency}) != 1:
            raise ValueError("total, amount_remaining and amount_paid must share one currency")
        return self


class RevenueKind(StrEnum):
    TIME_AND_MATERIALS_DELIVERED = "time_and_materials_delivered"
    MILESTONE_ACCEPTED = "milestone_accepted"
    PERCENT_COMPLETE = "percent_complete"


class RevenueEvent(SourceRecord):
    engagement_id: CanonicalId
    project_id: CanonicalId
    kind: RevenueKind
    amount: Money
    recognized_on: date
    source_ids: list[CanonicalId] = Field(default_factory=list)


class CapMeasure(StrEnum):
    AMOUNT = "amount"
    HOURS = "hours"


class CapBasis(StrEnum):
    COMMITTED = "committed"  # approved billable work decided so far
    INVOICED = "invoiced"  # what invoices have billed so far


class CapThresholdReached(SourceRecord):
    """Work on a capped contract or budget reached 80 % or 100 % of a not-to-exceed (an early warning).

    ``id`` is ``<engagement>:<scope>:<measure>:<threshold>:<basis>``: each warning is raised once.
    """

    engagement_id: CanonicalId
    basis: CapBasis
    scope: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="'contract' or 'budget:<budget id>'."
    )
    measure: CapMeasure
    threshold_percent: Annotated[int, Field(ge=1, le=100)]
    consumed: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
    limit: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
    currency: CurrencyCode | None = Field(default=None, description="Set when measure is amount.")
    reached_on: date


class OpportunityUpdate(SourceRecord):
    """An opportunity changed in the CRM without reaching Closed Won (stage, amount or close date).

    ``id`` is the opportunity's canonical id; consumers compare versions, the CRM sends the latest values.
    """

    name: Name
    stage: Name
    is_won: bool = False
    is_closed: bool = False
    amount: Money | None = None
    close_date: date
    client_id: CanonicalId | None = None
    engagement_id: CanonicalId | None = Field(
        default=None, description="The engagement the opportunity becomes when it is won."
    )


class ClosedWonDeal(SourceRecord):
    """An opportunity that reached Closed Won: everything needed to set the work up.

    ``id`` is the opportunity's canonical id.
    """

    name: Name
    amount: Money
    close_date: date
    client: Client
    engagement: Engagement
    project: Project

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.engagement.client_id != self.client.id:
            raise ValueError("engagement.client_id does not match client.id")
        if self.project.engagement_id != self.engagement.id:
            raise ValueError("project.engagement_id does not match engagement.id")
        if self.project.client_id != self.client.id:
            raise ValueError("project.client_id does not match client.id")
        return self
