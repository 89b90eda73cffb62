"""The canonical model: one name per concept, used the same in code, events, tables and docs.

Every entity that arrives from a source system carries ``id`` (the canonical id, stable
across systems) and ``version`` (the source record's version: a counter or a
last-modified timestamp in epoch milliseconds) so that consumers can be idempotent on
(id, version) and reject stale updates. Money is always :class:`Money` or a ``Decimal``
next to an explicit currency, never a float.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from r2r_core.model.money import CurrencyCode, Money

CanonicalId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Hours = Annotated[Decimal, Field(ge=0, le=24, max_digits=6, decimal_places=2, allow_inf_nan=False)]
Rate = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=4, allow_inf_nan=False)]
Version = Annotated[int, Field(ge=1, description="Source record version: a counter or epoch milliseconds.")]


class CanonicalModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


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
    rate: Rate = Field(description="Hourly bill rate in the rate card's currency.")
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


class MilestoneTerms(CanonicalModel):
    """A fixed-fee milestone as the contract defines it."""

    id: CanonicalId
    name: Name
    amount: Money
    due_date: date | None = None


class Engagement(SourceRecord):
    """The contract / statement of work: how and in what currency the work is billed."""

    client_id: CanonicalId
    opportunity_id: CanonicalId | None = None
    name: Name
    billing_type: BillingType
    currency: CurrencyCode
    contract_value: Money | None = None
    rate_card: RateCard | None = None
    cap: Money | None = Field(default=None, description="Not-to-exceed amount for capped T&M.")
    cap_hours: Hours | None = None
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
        if self.rate_card is not None and self.rate_card.currency != self.currency:
            raise ValueError(
                f"rate_card.currency {self.rate_card.currency} differs from currency {self.currency}"
            )
        for index, milestone in enumerate(self.milestones):
            if milestone.amount.currency != self.currency:
                raise ValueError(f"milestones[{index}].amount.currency differs from engagement currency")
        hourly = {BillingType.TIME_AND_MATERIALS, BillingType.CAPPED_TIME_AND_MATERIALS}
        if self.billing_type in hourly and self.rate_card is None:
            raise ValueError(f"a {self.billing_type.value} engagement needs a rate_card")
        return self


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


class TimeEntry(SourceRecord):
    """One resource's approved hours on one project for one day."""

    engagement_id: CanonicalId
    project_id: CanonicalId
    resource_id: CanonicalId
    assignment_id: CanonicalId | None = None
    role: Name
    region: Name
    work_date: date
    hours: Hours = Field(gt=0)
    billable: bool = True
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
    approved_at: AwareDatetime


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
