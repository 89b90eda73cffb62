"""The billing run: one invoice for a contract from its billable charges, credits and milestone.

* Time lines are grouped by the contract's ``line_grouping`` (role and region — the default —, role, or
  resource), and by budget when the contract bills against budgets; one rate per line, so
  quantity × rate = amount holds before rounding. Each line is rounded half-up to the currency's minor
  unit once; the total is the sum of the rounded lines.
* Expenses are a line each (their amount was rounded once when decided).
* A charge invoiced earlier whose entry changed or lost its approval is credited with a negative line of
  exactly what it was billed (``Reversal``); its new version, if billable, is billed as any other charge,
  so original + credit + re-bill nets to the corrected amount. Nothing is ever silently re-billed.
* Charges deferred by the billing schedule wait until ``billable_from``; a period-end run bills only what
  was billable by the day after its period (``bill_through``), whatever day it runs.
* Caps are checked again on the rounded lines: a charge is admitted only as far as every cap (plus
  tolerance) still holds for what was invoiced before plus this invoice, in 0.01 h steps. So an invoice
  never exceeds a hard cap, whatever was decided when the time was posted — unless finance released the
  charge over the cap (``cap_released``, ``r2r billing release``): then it is billed in full and counts
  against the caps like any other.
* The run is a pure function of its inputs: the same charges give the same invoice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import Any

from r2r_core.billing.decisions import ZERO, CapLimit, hard_limit
from r2r_core.model.entities import (
    CapBasis,
    CapMeasure,
    CapThresholdReached,
    Engagement,
    Invoice,
    InvoiceLine,
    InvoiceLineKind,
    LineGrouping,
)
from r2r_core.model.money import Money, round_money

WARNING_THRESHOLDS = (80, 100)
HUNDREDTH = Decimal("0.01")


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True)
class Charge:
    """A decided, billable, not yet invoiced time entry or expense (the billable part of it)."""

    kind: str  # time | expense
    source_id: str
    version: int
    billable_from: date
    billable_hours: Decimal
    rate: Decimal
    amount: Decimal
    resource_id: str = ""
    role: str = ""
    region: str = ""
    category: str = ""
    work_date: date | None = None
    budget_id: str | None = None
    cap_released: bool = False  # approved over the cap by finance: billed in full

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Charge:
        return cls(
            kind=item.get("kind", "time"),
            source_id=item["source_id"] if "source_id" in item else item["time_entry_id"],
            version=int(item.get("version", 1)),
            billable_from=date.fromisoformat(item.get("billable_from") or item["work_date"]),
            billable_hours=_dec(item.get("billable_hours", item.get("hours"))),
            rate=_dec(item["rate"]),
            amount=_dec(item["amount"]),
            resource_id=item.get("resource_id", ""),
            role=item.get("role", ""),
            region=item.get("region", ""),
            category=item.get("category", ""),
            work_date=date.fromisoformat(item["work_date"]) if item.get("work_date") else None,
            budget_id=item.get("budget_id"),
            cap_released=bool(item.get("cap_released", False)),
        )


@dataclass(frozen=True)
class Reversal:
    """What an earlier invoice billed for an entry that has since changed: credited in full."""

    charge: Charge
    invoice_id: str
    why: str


@dataclass(frozen=True)
class Billed:
    """What this invoice bills of one charge; ``held_hours`` > 0 when the run had to cap it."""

    kind: str
    source_id: str
    version: int
    billable_hours: Decimal
    amount: Decimal
    held_hours: Decimal = ZERO


@dataclass(frozen=True)
class PriorBilling:
    """What earlier invoices of the contract billed in fees (rounded lines) and hours, by cap scope."""

    fees: Mapping[str, Decimal] = field(default_factory=dict)
    hours: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class MilestoneBilling:
    id: str
    name: str
    amount: Money


@dataclass(frozen=True)
class BillingRun:
    invoice: Invoice | None
    billed: list[Billed]
    credited: list[Reversal]
    waiting: list[str]  # charges not yet billable (deferred)
    fees: dict[str, Decimal]  # this invoice's fees by cap scope
    hours: dict[str, Decimal]
    warnings: list[CapThresholdReached]


def cap_limits(engagement: Engagement) -> dict[str, CapLimit]:
    """Hard limits (cap + tolerance) by scope: ``contract`` and ``budget:<id>``."""
    tolerance = engagement.cap_tolerance_percent
    limits: dict[str, CapLimit] = {}
    if engagement.cap is not None or engagement.cap_hours is not None:
        limits["contract"] = CapLimit(
            "contract",
            "the contract cap",
            hard_limit(engagement.cap.amount, tolerance) if engagement.cap is not None else None,
            hard_limit(engagement.cap_hours, tolerance) if engagement.cap_hours is not None else None,
        )
    for budget in engagement.budgets:
        limits[f"budget:{budget.id}"] = CapLimit(
            f"budget:{budget.id}",
            f"budget {budget.id}",
            hard_limit(budget.amount.amount, tolerance) if budget.amount is not None else None,
            hard_limit(budget.hours, tolerance) if budget.hours is not None else None,
        )
    return limits


def cap_warnings(
    engagement: Engagement,
    *,
    basis: CapBasis,
    before: Mapping[str, tuple[Decimal, Decimal]],
    after: Mapping[str, tuple[Decimal, Decimal]],
    on: date,
) -> list[CapThresholdReached]:
    """A warning for every cap whose consumption crossed 80 % or 100 % (of the cap, before tolerance)."""
    plain: dict[str, tuple[Decimal | None, Decimal | None]] = {}
    if engagement.cap is not None or engagement.cap_hours is not None:
        plain["contract"] = (
            engagement.cap.amount if engagement.cap is not None else None,
            engagement.cap_hours,
        )
    for budget in engagement.budgets:
        plain[f"budget:{budget.id}"] = (
            budget.amount.amount if budget.amount is not None else None,
            budget.hours,
        )
    warnings = []
    for scope, (amount_cap, hours_cap) in sorted(plain.items()):
        was = before.get(scope, (ZERO, ZERO))
        now = after.get(scope, (ZERO, ZERO))
        for measure, limit, old, new in (
            (CapMeasure.AMOUNT, amount_cap, was[0], now[0]),
            (CapMeasure.HOURS, hours_cap, was[1], now[1]),
        ):
            if limit is None or limit <= 0:
                continue
            for threshold in WARNING_THRESHOLDS:
                mark = limit * threshold / Decimal(100)
                if old < mark <= new:
                    warnings.append(
                        CapThresholdReached(
                            id=f"{engagement.id}:{scope}:{measure.value}:{threshold}:{basis.value}",
                            engagement_id=engagement.id,
                            basis=basis,
                            scope=scope,
                            measure=measure,
                            threshold_percent=threshold,
                            consumed=new,
                            limit=limit,
                            currency=engagement.currency if measure is CapMeasure.AMOUNT else None,
                            reached_on=on,
                        )
                    )
    return warnings


def _group_key(engagement: Engagement, charge: Charge) -> tuple[str, ...]:
    budget = (charge.budget_id or "",) if engagement.budgets else ()
    if engagement.line_grouping is LineGrouping.RESOURCE:
        return (*budget, charge.resource_id)
    if engagement.line_grouping is LineGrouping.ROLE:
        return (*budget, charge.role)
    return (*budget, charge.role, charge.region)


def _time_line(
    engagement: Engagement, key: tuple[str, ...], rate: Decimal, hours: Decimal, members: list[str]
) -> InvoiceLine:
    budget_prefix = ""
    parts = key
    if engagement.budgets:
        budget_id, parts = key[0], key[1:]
        budget = next((b for b in engagement.budgets if b.id == budget_id), None)
        if budget is not None:
            budget_prefix = f"PO {budget.po_number}: " if budget.po_number else f"Budget {budget.id}: "
    role = region = None
    if engagement.line_grouping is LineGrouping.RESOURCE:
        label = parts[0]
    elif engagement.line_grouping is LineGrouping.ROLE:
        role = label = parts[0]
    else:
        role, region = parts
        label = f"{role} ({region})"
    return InvoiceLine(
        line_no=1,
        kind=InvoiceLineKind.TIME,
        description=f"{budget_prefix}{label} — time and materials",
        role=role,
        region=region,
        quantity=hours,
        rate=rate,
        amount=round_money(hours * rate, engagement.currency),
        source_ids=sorted(members),
    )


class _Ledger:
    """Fees (rounded lines) and hours billed per cap scope, and this invoice's time groups."""

    def __init__(self, engagement: Engagement, prior: PriorBilling) -> None:
        self.engagement = engagement
        self.currency = engagement.currency
        self.limits = cap_limits(engagement)
        self.fees = {scope: prior.fees.get(scope, ZERO) for scope in self.limits}
        self.hours = {scope: prior.hours.get(scope, ZERO) for scope in self.limits}
        self.start = {scope: (self.fees[scope], self.hours[scope]) for scope in self.limits}
        self.groups: dict[tuple[tuple[str, ...], Decimal], tuple[Decimal, list[str]]] = {}

    def scopes(self, charge: Charge) -> list[str]:
        found = ["contract"] if "contract" in self.limits else []
        if charge.budget_id and f"budget:{charge.budget_id}" in self.limits:
            found.append(f"budget:{charge.budget_id}")
        return found

    def credit(self, charge: Charge, amount: Decimal) -> None:
        for scope in self.scopes(charge):
            self.fees[scope] += amount
            self.hours[scope] -= charge.billable_hours

    def _delta(self, group_hours: Decimal, extra: Decimal, rate: Decimal) -> Decimal:
        return round_money((group_hours + extra) * rate, self.currency) - round_money(
            group_hours * rate, self.currency
        )

    def _fits(self, charge: Charge, group_hours: Decimal, extra: Decimal) -> bool:
        delta = self._delta(group_hours, extra, charge.rate)
        for scope in self.scopes(charge):
            limit = self.limits[scope]
            if limit.amount is not None and self.fees[scope] + delta > limit.amount:
                return False
            if limit.hours is not None and self.hours[scope] + extra > limit.hours:
                return False
        return True

    def admit(self, charge: Charge) -> Decimal:
        """Bill as much of the charge as every cap allows (0.01 h steps), all of a charge released over
        the cap; the hours admitted."""
        key = (_group_key(self.engagement, charge), charge.rate)
        group_hours, members = self.groups.get(key, (ZERO, []))
        allowed = charge.billable_hours
        if not charge.cap_released and not self._fits(charge, group_hours, allowed):
            allowed = allowed.quantize(HUNDREDTH, rounding=ROUND_DOWN)
            # Start just above the answer and step down in hundredths of an hour until every cap holds.
            for scope in self.scopes(charge):
                limit = self.limits[scope]
                if limit.hours is not None:
                    allowed = min(allowed, (limit.hours - self.hours[scope]).quantize(HUNDREDTH, ROUND_DOWN))
                if limit.amount is not None and charge.rate > 0:
                    room = (limit.amount - self.fees[scope]) / charge.rate + HUNDREDTH
                    allowed = min(allowed, room.quantize(HUNDREDTH, rounding=ROUND_DOWN))
            allowed = max(ZERO, allowed)
            while allowed > 0 and not self._fits(charge, group_hours, allowed):
                allowed -= HUNDREDTH
        if allowed <= 0:
            return ZERO
        delta = self._delta(group_hours, allowed, charge.rate)
        for scope in self.scopes(charge):
            self.fees[scope] += delta
            self.hours[scope] += allowed
        self.groups[key] = (group_hours + allowed, [*members, charge.source_id])
        return allowed


def _credit_line(reversal: Reversal, currency: str) -> InvoiceLine:
    c = reversal.charge
    amount = -(round_money(c.billable_hours * c.rate, currency) if c.kind == "time" else c.amount)
    what = (
        f"time entry {c.source_id} v{c.version} ({c.billable_hours} h × {c.rate})"
        if c.kind == "time"
        else f"expense {c.source_id} v{c.version}"
    )
    return InvoiceLine(
        line_no=1,
        kind=InvoiceLineKind.ADJUSTMENT,
        description=f"Credit: {what} billed on {reversal.invoice_id} — {reversal.why}"[:200],
        role=c.role or None,
        region=c.region or None,
        quantity=-c.billable_hours,
        rate=c.rate,
        amount=amount,
        source_ids=[c.source_id],
    )


def _expense_line(charge: Charge) -> InvoiceLine:
    return InvoiceLine(
        line_no=1,
        kind=InvoiceLineKind.EXPENSE,
        description=f"Expense: {charge.category} on {charge.billable_from.isoformat()} "
        f"({charge.resource_id})"[:200],
        quantity=Decimal(1),
        rate=charge.amount,
        amount=charge.amount,
        source_ids=[charge.source_id],
    )


def _milestone_line(milestone: MilestoneBilling, currency: str) -> InvoiceLine:
    amount = round_money(milestone.amount.amount, currency)
    return InvoiceLine(
        line_no=1,
        kind=InvoiceLineKind.MILESTONE,
        description=f"Milestone: {milestone.name}",
        quantity=Decimal(1),
        rate=amount,
        amount=amount,
        source_ids=[milestone.id],
    )


def billing_run(
    engagement: Engagement,
    *,
    invoice_id: str,
    client_id: str,
    project_id: str,
    invoice_date: date,
    charges: Iterable[Charge],
    reversals: Sequence[Reversal] = (),
    milestone: MilestoneBilling | None = None,
    prior: PriorBilling | None = None,
    po_number: str | None = None,
    bill_through: date | None = None,
) -> BillingRun:
    """``bill_through`` (default: the invoice date) is the last ``billable_from`` this run bills."""
    currency = engagement.currency
    through = bill_through or invoice_date
    ledger = _Ledger(engagement, prior or PriorBilling())

    # Credits first: they free room under the caps.
    credit_lines = []
    for reversal in sorted(reversals, key=lambda r: (r.charge.kind, r.charge.source_id, r.charge.version)):
        line = _credit_line(reversal, currency)
        credit_lines.append(line)
        if reversal.charge.kind == "time":
            ledger.credit(reversal.charge, line.amount)

    waiting: list[str] = []
    billed: list[Billed] = []
    expense_lines: list[InvoiceLine] = []
    ordered = sorted(
        charges, key=lambda c: (c.billable_from, c.work_date or c.billable_from, c.kind, c.source_id)
    )
    for charge in ordered:
        if charge.billable_from > through:
            waiting.append(charge.source_id)
        elif charge.kind == "expense":
            expense_lines.append(_expense_line(charge))
            billed.append(Billed("expense", charge.source_id, charge.version, Decimal(1), charge.amount))
        else:
            allowed = ledger.admit(charge)
            billed.append(
                Billed(
                    "time",
                    charge.source_id,
                    charge.version,
                    allowed,
                    round_money(allowed * charge.rate, currency),
                    charge.billable_hours - allowed,
                )
            )

    lines = [
        _time_line(engagement, key, rate, hours, members)
        for (key, rate), (hours, members) in sorted(ledger.groups.items())
    ]
    lines += expense_lines + credit_lines
    if milestone is not None:
        lines.append(_milestone_line(milestone, currency))
    lines = [line.model_copy(update={"line_no": number}) for number, line in enumerate(lines, start=1)]
    invoice = None
    if lines:
        invoice = Invoice(
            id=invoice_id,
            engagement_id=engagement.id,
            client_id=client_id,
            project_id=project_id,
            milestone_id=milestone.id if milestone else None,
            invoice_date=invoice_date,
            currency=currency,
            lines=lines,
            total=Money(amount=sum((line.amount for line in lines), ZERO), currency=currency),
            po_number=po_number,
        )
    scopes = ledger.limits
    warnings = cap_warnings(
        engagement,
        basis=CapBasis.INVOICED,
        before=ledger.start,
        after={scope: (ledger.fees[scope], ledger.hours[scope]) for scope in scopes},
        on=invoice_date,
    )
    return BillingRun(
        invoice=invoice,
        billed=billed,
        credited=list(reversals),
        waiting=waiting,
        fees={scope: ledger.fees[scope] - ledger.start[scope][0] for scope in scopes},
        hours={scope: ledger.hours[scope] - ledger.start[scope][1] for scope in scopes},
        warnings=warnings,
    )
