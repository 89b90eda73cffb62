"""A billing decision for every approved time entry and expense, with its rule and a plain reason.

Decisions (``Decision``):

* ``invoiceable`` — billed with the next invoice of the contract;
* ``deferred`` — billable, but not before ``billable_from`` (the billing schedule: monthly in arrears);
* ``held_for_milestone`` — fixed-fee work: billed through milestones, never by the hour;
* ``capped`` — part or all of it is over a not-to-exceed: the part over is held for approval or
  written off, as the contract says; the part under (``billable_hours`` / ``amount``) is billed;
* ``prepaid`` — drawn down from a retainer's prepaid balance (not invoiced again);
* ``non_billable`` — cost only;
* ``rejected`` — not billed, with a reason (approval withdrawn, outside the contract's dates,
  no receipt).

Caps are checked on exact (unrounded) amounts here, in hundredths of an hour: the billable part of a
capped entry is the most hours ``h`` (0.01 h steps) whose ``h × rate`` still fits. The billing run
checks again on rounded invoice lines (``billing.run``), so an invoice never exceeds a hard cap even
when two entries were decided at the same moment.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import date, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from r2r_core.billing.rates import RateInForce, resolve_rate
from r2r_core.errors import BillingRuleError
from r2r_core.memo import ObjectMemo
from r2r_core.model.entities import (
    ApprovalStatus,
    BillingSchedule,
    BillingType,
    CapPolicy,
    Engagement,
    Expense,
    TimeEntry,
)
from r2r_core.model.money import minor_unit_quantum, round_money

HOUR_STEP = Decimal("0.01")
ZERO = Decimal(0)


class Decision(StrEnum):
    INVOICEABLE = "invoiceable"
    DEFERRED = "deferred"
    HELD_FOR_MILESTONE = "held_for_milestone"
    CAPPED = "capped"
    PREPAID = "prepaid"
    NON_BILLABLE = "non_billable"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Consumption:
    """Billable work already committed (decided billable) on a contract, excluding the entry decided.

    Amounts are exact (hours × rate, unrounded); ``budgets`` maps budget id → (amount, hours).
    """

    amount: Decimal = ZERO
    hours: Decimal = ZERO
    budgets: Mapping[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    retainer_drawn: Decimal = ZERO

    def plus(self, decision: ChargeDecision) -> Consumption:
        exact = decision.billable_hours * decision.rate
        budgets = dict(self.budgets)
        if decision.budget_id is not None:
            amount, hours = budgets.get(decision.budget_id, (ZERO, ZERO))
            budgets[decision.budget_id] = (amount + exact, hours + decision.billable_hours)
        return Consumption(
            amount=self.amount + exact,
            hours=self.hours + decision.billable_hours,
            budgets=budgets,
            retainer_drawn=self.retainer_drawn + decision.prepaid_hours * decision.rate,
        )


@dataclass(frozen=True)
class ChargeDecision:
    """What r2r decided for one approved time entry or expense, and why."""

    kind: str  # "time" | "expense"
    source_id: str
    version: int
    decision: Decision
    rule: str
    reason: str
    currency: str
    work_date: date
    billable_from: date
    resource_id: str
    role: str = ""
    region: str = ""
    category: str = ""
    hours: Decimal = ZERO  # hours approved (time) or 1 (expense)
    rate: Decimal = ZERO  # bill rate (time) or the billed amount (expense)
    rate_rule: str = ""
    billable_hours: Decimal = ZERO  # hours (or 1 expense) to invoice
    amount: Decimal = ZERO  # billable amount, rounded half-up to the currency once
    held_hours: Decimal = ZERO  # over a cap: held for approval or written off (cap_policy)
    held_amount: Decimal = ZERO
    cap_policy: str = ""
    prepaid_hours: Decimal = ZERO  # drawn down from a retainer
    budget_id: str | None = None

    @property
    def billable(self) -> bool:
        return self.amount > 0 or self.billable_hours > 0

    # Backwards-compatible name for time decisions.
    @property
    def time_entry_id(self) -> str:
        return self.source_id


_DECISION_DEFAULTS = {
    f.name: f.default for f in fields(ChargeDecision) if f.default is not MISSING
}  # every field with a default has a plain one (no default_factory)
_DECISION_FIELDS = frozenset(f.name for f in fields(ChargeDecision))
# The shortcut is only the same as ``__init__`` while the class checks nothing on construction.
_PLAIN_INIT = not hasattr(ChargeDecision, "__post_init__")


def _charge_decision(base: Mapping[str, Any], changes: Mapping[str, Any]) -> ChargeDecision:
    """``ChargeDecision(**base, **changes)`` for the warm path: the frozen dataclass's ``__init__`` sets
    its 23 fields one ``object.__setattr__`` at a time, which cost a quarter of a decision. The result is
    the same instance (equal, same fields); unknown or missing fields are refused as ``__init__`` would."""
    return _decision_from({**_DECISION_DEFAULTS, **base, **changes})


def _decision_from(values: dict[str, Any]) -> ChargeDecision:
    """``ChargeDecision(**values)`` the same way (``values`` includes the defaults of what it leaves)."""
    if not _PLAIN_INIT or len(values) != len(_DECISION_FIELDS) or not _DECISION_FIELDS.issuperset(values):
        return ChargeDecision(**values)  # its own __init__ (names a wrong or missing field)
    made = object.__new__(ChargeDecision)
    object.__setattr__(made, "__dict__", values)  # a new dict made for this decision: no copy
    return made


def _period_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _schedule(engagement: Engagement, work_date: date, approved_on: date) -> tuple[date, str | None]:
    """(billable from, deferral sentence or None)."""
    if engagement.billing_schedule is BillingSchedule.MONTHLY:
        end = _period_end(work_date)
        if approved_on <= end:
            return end + timedelta(days=1), (
                f"billed monthly in arrears: waits for the period ending {end.isoformat()}"
            )
    return work_date, None


def _floor_hours(value: Decimal) -> Decimal:
    return max(ZERO, value.quantize(HOUR_STEP, rounding=ROUND_DOWN))


def hard_limit(limit: Decimal, tolerance_percent: Decimal) -> Decimal:
    """A cap plus its tolerance: work is billed up to here, exact."""
    return limit * (Decimal(100) + tolerance_percent) / Decimal(100)


@dataclass(frozen=True)
class CapLimit:
    scope: str  # "contract" | "budget:<id>"
    label: str  # for reasons: "the contract cap" / "PO 4711 (budget b-1)"
    amount: Decimal | None
    hours: Decimal | None


def applicable_caps(engagement: Engagement, work_date: date) -> tuple[list[CapLimit], str | None]:
    """The hard limits (cap + tolerance) that apply to work on a day, and the budget covering it."""
    tolerance = engagement.cap_tolerance_percent
    caps: list[CapLimit] = []
    if engagement.cap is not None or engagement.cap_hours is not None:
        caps.append(
            CapLimit(
                "contract",
                "the contract cap",
                hard_limit(engagement.cap.amount, tolerance) if engagement.cap is not None else None,
                hard_limit(engagement.cap_hours, tolerance) if engagement.cap_hours is not None else None,
            )
        )
    budget_id = None
    covering = [b for b in engagement.budgets if b.covers(work_date)]
    if len(covering) > 1:
        raise BillingRuleError(
            f"engagement {engagement.id}: budgets {', '.join(b.id for b in covering)} all cover "
            f"{work_date.isoformat()}: budget dates overlap"
        )
    if covering:
        budget = covering[0]
        budget_id = budget.id
        label = f"PO {budget.po_number} (budget {budget.id})" if budget.po_number else f"budget {budget.id}"
        caps.append(
            CapLimit(
                f"budget:{budget.id}",
                label,
                hard_limit(budget.amount.amount, tolerance) if budget.amount is not None else None,
                hard_limit(budget.hours, tolerance) if budget.hours is not None else None,
            )
        )
    elif engagement.budgets:
        raise BillingRuleError(
            f"engagement {engagement.id} bills against budgets, and none covers {work_date.isoformat()}"
        )
    return caps, budget_id


def _consumed(consumption: Consumption, scope: str) -> tuple[Decimal, Decimal]:
    if scope == "contract":
        return consumption.amount, consumption.hours
    return consumption.budgets.get(scope.removeprefix("budget:"), (ZERO, ZERO))


def hours_within_caps(
    caps: Sequence[CapLimit], consumption: Consumption, hours: Decimal, rate: Decimal
) -> tuple[Decimal, CapLimit | None]:
    """The most of ``hours`` (0.01 h steps) that fits every cap, and the cap that bound it."""
    allowed, binding = hours, None
    for cap in caps:
        used_amount, used_hours = _consumed(consumption, cap.scope)
        if cap.hours is not None:
            room = _floor_hours(cap.hours - used_hours)
            if room < allowed:
                allowed, binding = room, cap
        if cap.amount is not None and rate > 0:
            room = _floor_hours((cap.amount - used_amount) / rate)
            if room < allowed:
                allowed, binding = room, cap
    return allowed, binding


@dataclass(frozen=True, slots=True)
class DayTerms:
    """What an engagement says about work of a role in a region on a day: the rate in force (and its
    plain description, part of every reason), the hard limits that apply and the budget covering it."""

    rate: RateInForce
    described: str  # rate.describe()
    caps: tuple[CapLimit, ...]
    budget_id: str | None
    # "145.00 USD (Cloud Engineer, EMEA, <described> on 2026-11-16)": the middle of the usual reason
    at_rate: str
    # The fields of a billable decision that come from these terms, with every field's default.
    decision_base: Mapping[str, Any]
    quantum: Decimal  # the contract currency's minor unit (round_money)
    # The usual decision (``plain``: no retainer, no caps, no monthly schedule, so every entry of the day
    # is invoiceable at the rate, whole): its fields from these terms, and the end of its reason.
    plain: bool
    plain_base: dict[str, Any]  # only ever copied
    plain_tail: str  # " USD, invoiceable with the next invoice for the engagement."


# Per engagement object (r2r_core.memo: by identity, dropped with the engagement), per role, region,
# day and assignment: a warm invocation decides many entries of one engagement, and resolving the rate,
# describing it and finding the caps cost more than the rest of the decision.
_DAY_TERMS = ObjectMemo(max_objects=64, max_keys=2048)
_OVERRIDDEN = "assignments with an override"  # the key of their ids in an engagement's table


def day_terms(
    engagement: Engagement, role: str, region: str, on: date, *, assignment_id: str | None = None
) -> DayTerms:
    """``resolve_rate`` + ``applicable_caps`` for a day, remembered for this engagement object."""
    table = _DAY_TERMS.table(engagement)
    # An assignment without an override of its own gets the rate cards' answer: one key for all of them.
    if assignment_id is not None:
        overridden: frozenset[str] | None = None
        if engagement.assignment_rates:
            overridden = table.get(_OVERRIDDEN)
            if overridden is None:
                overridden = frozenset(o.assignment_id for o in engagement.assignment_rates)
                _DAY_TERMS.put(table, _OVERRIDDEN, overridden)
        if overridden is None or assignment_id not in overridden:
            assignment_id = None
    key = (role, region, on, assignment_id)
    found: DayTerms | None = table.get(key)
    if found is not None:
        return found
    rate = resolve_rate(engagement, role, region, on, assignment_id=assignment_id)
    caps, budget_id = applicable_caps(engagement, on)
    described = rate.describe()
    at_rate = f"{rate.rate} {engagement.currency} ({role}, {region}, {described} on {on.isoformat()})"
    # A plain dict (``{**proxy}`` of a read-only proxy would cost a third of a decision); only ever copied.
    decision_base = {
        **_DECISION_DEFAULTS,
        "kind": "time",
        "currency": engagement.currency,
        "rate": rate.rate,
        "rate_rule": rate.rule,
        "budget_id": budget_id,
    }
    quantum = minor_unit_quantum(engagement.currency)
    plain = (
        not caps
        and engagement.billing_type is not BillingType.RETAINER
        and engagement.billing_schedule is not BillingSchedule.MONTHLY
    )
    # Without the fields the entry gives (_PLAIN_ENTRY_FIELDS): the dict is filled, never overwritten.
    plain_base = {
        **{name: value for name, value in decision_base.items() if name not in _PLAIN_ENTRY_FIELDS},
        "decision": Decision.INVOICEABLE,
        "rule": "time-and-materials-at-rate",
        "prepaid_hours": ZERO,
    }
    plain_tail = f" {engagement.currency}, invoiceable with the next invoice for the engagement."
    # By construction the base and the entry's fields are every field once; checked here, once per terms
    # (were a field added to ChargeDecision and not here, the general path would decide instead).
    given = set(plain_base)
    every_field_once = (
        given.isdisjoint(_PLAIN_ENTRY_FIELDS) and given | _PLAIN_ENTRY_FIELDS == _DECISION_FIELDS
    )
    terms = DayTerms(
        rate, described, tuple(caps), budget_id, at_rate, decision_base, quantum,
        plain and every_field_once, plain_base, plain_tail,
    )  # fmt: skip
    _DAY_TERMS.put(table, key, terms)
    return terms


# The fields of the usual decision that come from the entry (``decide_time_entry``'s plain path).
_PLAIN_ENTRY_FIELDS = frozenset(
    {"source_id", "version", "work_date", "billable_from", "resource_id", "role", "region", "hours"}
    | {"billable_hours", "amount", "reason"}
)

# The members the usual decision asks for, as module names: an enum class attribute costs as much as
# eight of these lookups, and the usual decision asks six.
_UNAPPROVED = ApprovalStatus.UNAPPROVED
_FIXED_FEE = BillingType.FIXED_FEE
_RETAINER = BillingType.RETAINER
_MONTHLY = BillingSchedule.MONTHLY
_DEFERRED = Decision.DEFERRED
_INVOICEABLE = Decision.INVOICEABLE


def decide_time_entry(
    entry: TimeEntry,
    engagement: Engagement,
    consumption: Consumption | None = None,
    *,
    project_billable: bool = True,
) -> ChargeDecision:
    """The decision for one approved time entry, given what the contract has already consumed."""
    consumption = consumption or Consumption()
    currency = engagement.currency

    if entry.status == _UNAPPROVED:
        return _time_not_billed(
            entry,
            currency,
            Decision.REJECTED,
            "approval-withdrawn",
            f"{_what(entry)}: the approval was withdrawn in the PSA, so they are not billed "
            "(anything already invoiced is credited).",
        )
    if not entry.billable:
        return _time_not_billed(
            entry,
            currency,
            Decision.NON_BILLABLE,
            "entry-marked-non-billable",
            f"{_what(entry)} were approved as non-billable: recorded as cost only.",
        )
    if not project_billable:
        return _time_not_billed(
            entry,
            currency,
            Decision.NON_BILLABLE,
            "project-non-billable",
            f"{_what(entry)}: project {entry.project_id} is non-billable, so its time is cost only.",
        )
    if entry.work_date < engagement.start_date or (
        engagement.end_date is not None and entry.work_date > engagement.end_date
    ):
        period = f"{engagement.start_date.isoformat()} to {engagement.end_date or 'open end'}"
        return _time_not_billed(
            entry,
            currency,
            Decision.REJECTED,
            "outside-contract-dates",
            f"{_what(entry)}: the work date is outside the contract period ({period}), so it cannot be "
            "billed under this contract.",
        )
    if engagement.billing_type is _FIXED_FEE:
        return _time_not_billed(
            entry,
            currency,
            Decision.HELD_FOR_MILESTONE,
            "fixed-fee-billed-by-milestone",
            f"{_what(entry)}: engagement {engagement.id} is fixed fee, so time is billed through its "
            "milestones, not by the hour.",
        )

    terms = day_terms(
        engagement, entry.role, entry.region, entry.work_date, assignment_id=entry.assignment_id
    )
    if terms.plain:
        return _plain_time_decision(entry, terms)
    hours = entry.hours
    rate = terms.rate
    # The decision is built once, at the end of the path taken, from the terms' fields and the entry's
    # (dataclasses.replace on every step cost more than the rest of the decision on the warm path).
    values = {
        **terms.decision_base,
        "source_id": entry.id,
        "version": entry.version,
        "work_date": entry.work_date,
        "billable_from": entry.work_date,
        "resource_id": entry.resource_id,
        "role": entry.role,
        "region": entry.region,
        "hours": hours,
    }

    prepaid_hours = ZERO
    retainer_note = ""
    if engagement.billing_type is _RETAINER and engagement.retainer is not None:
        remaining = engagement.retainer.prepaid.amount - consumption.retainer_drawn
        prepaid_hours = min(hours, _floor_hours(remaining / rate.rate)) if rate.rate > 0 else hours
        if prepaid_hours == hours:
            drawn = round_money(hours * rate.rate, currency)
            values.update(
                decision=Decision.PREPAID,
                rule="retainer-drawdown",
                prepaid_hours=hours,
                reason=f"{_what(entry)} at {terms.described} = {drawn} {currency}, drawn down from the "
                f"prepaid retainer (balance before: {round_money(remaining, currency)} {currency}); "
                "not invoiced again.",
            )
            return _decision_from(values)
        retainer_note = (
            f" {prepaid_hours} h were drawn down from the prepaid retainer, which is now used up; "
            f"the other {hours - prepaid_hours} h are overage billed at rate."
        )
        hours -= prepaid_hours

    caps = terms.caps
    billable_hours, binding = (
        hours_within_caps(caps, consumption, hours, rate.rate) if caps else (hours, None)
    )
    amount = (billable_hours * rate.rate).quantize(terms.quantum, rounding=ROUND_HALF_UP)  # round_money
    if engagement.billing_schedule is _MONTHLY:
        billable_from, deferral = _schedule(engagement, entry.work_date, entry.approved_at.date())
    else:
        billable_from, deferral = entry.work_date, None  # _schedule's answer
    when = (
        f"deferred: {deferral} (billable from {billable_from.isoformat()})"
        if deferral
        else "invoiceable with the next invoice for the engagement"
    )
    if binding is not None:
        held = hours - billable_hours
        held_amount = round_money(held * rate.rate, currency)
        policy = engagement.cap_policy
        fate = (
            "held for approval (a change order or a raised cap releases it)"
            if policy is CapPolicy.HOLD_FOR_APPROVAL
            else "written off, as the contract says"
        )
        billed = (
            f"{billable_hours} h = {amount} {currency} fit and are {when}"
            if billable_hours > 0
            else "nothing fits any more"
        )
        values.update(
            decision=Decision.CAPPED,
            rule=f"capped-{policy.value.replace('_', '-')}",
            billable_from=billable_from,
            billable_hours=billable_hours,
            amount=amount,
            held_hours=held,
            held_amount=held_amount,
            cap_policy=policy.value,
            prepaid_hours=prepaid_hours,
            reason=f"{_what(entry)} at {terms.described} reach {binding.label} (cap plus "
            f"{engagement.cap_tolerance_percent} % tolerance): {billed}; the {held} h over "
            f"({held_amount} {currency}) are {fate}.{retainer_note}",
        )
        return _decision_from(values)
    rule = (
        "retainer-overage-at-rate" if engagement.billing_type is _RETAINER else "time-and-materials-at-rate"
    )
    values["decision"] = _DEFERRED if deferral else _INVOICEABLE
    values["rule"] = f"{rule}-deferred-monthly" if deferral else rule
    values["billable_from"] = billable_from
    values["billable_hours"] = hours
    values["amount"] = amount
    values["prepaid_hours"] = prepaid_hours
    values["reason"] = f"{hours} h × {terms.at_rate} = {amount} {currency}, {when}.{retainer_note}"
    return _decision_from(values)


def _plain_time_decision(entry: TimeEntry, terms: DayTerms) -> ChargeDecision:
    """The usual decision, as ``decide_time_entry``'s general path makes it when there is no retainer, no
    cap and no monthly schedule (``terms.plain``): invoiceable at the rate, whole, from the work date."""
    hours = entry.hours
    work_date = entry.work_date
    # round_money; the rounding passed by position (by keyword it nearly doubles what quantize costs)
    amount = (hours * terms.rate.rate).quantize(terms.quantum, ROUND_HALF_UP)
    # A copy of the terms' fields with the entry's stored into it (building a second dict to merge costs
    # half as much again); the keys stored are _PLAIN_ENTRY_FIELDS, as day_terms checked.
    values = terms.plain_base.copy()
    values["source_id"] = entry.id
    values["version"] = entry.version
    values["work_date"] = work_date
    values["billable_from"] = work_date
    values["resource_id"] = entry.resource_id
    values["role"] = entry.role
    values["region"] = entry.region
    values["hours"] = hours
    values["billable_hours"] = hours
    values["amount"] = amount
    # ``!s``: a Decimal's text without format()'s spec parsing (the same text: str is format "")
    values["reason"] = f"{hours!s} h × {terms.at_rate} = {amount!s}{terms.plain_tail}"
    # _decision_from(values) without checking the keys again on every entry
    if not _PLAIN_INIT:
        return ChargeDecision(**values)
    made = object.__new__(ChargeDecision)
    object.__setattr__(made, "__dict__", values)  # a new dict made for this decision: no copy
    return made


def _what(entry: TimeEntry) -> str:
    return f"{entry.hours} h of {entry.role} ({entry.region}) on {entry.work_date.isoformat()}"


def _time_not_billed(
    entry: TimeEntry, currency: str, kind: Decision, rule: str, reason: str
) -> ChargeDecision:
    return _decision_from(
        {
            **_DECISION_DEFAULTS,
            "kind": "time",
            "source_id": entry.id,
            "version": entry.version,
            "currency": currency,
            "work_date": entry.work_date,
            "billable_from": entry.work_date,
            "resource_id": entry.resource_id,
            "role": entry.role,
            "region": entry.region,
            "hours": entry.hours,
            "decision": kind,
            "rule": rule,
            "reason": reason,
        }
    )


def fx_rate(engagement: Engagement, from_currency: str, to_currency: str, on: date) -> Decimal:
    """The dated exchange rate of the contract; a missing rate is an error, never 1."""
    if from_currency == to_currency:
        return Decimal(1)
    found = [
        r
        for r in engagement.fx_rates
        if r.from_currency == from_currency and r.to_currency == to_currency and r.in_force_on(on)
    ]
    if len(found) != 1:
        problem = "no" if not found else f"{len(found)} overlapping"
        raise BillingRuleError(
            f"engagement {engagement.id}: {problem} exchange rate {from_currency}→{to_currency} in force on "
            f"{on.isoformat()}"
        )
    return found[0].rate


def decide_expense(expense: Expense, engagement: Engagement) -> ChargeDecision:
    """Billable or not, receipt rule, dated FX conversion, markup, per-category cap.

    Billed amount = round_half_up(amount × fx × (1 + markup %)) in the contract currency, once; a
    per-category cap then limits the billed amount (the excess is held or written off per
    ``cap_policy``).
    """
    currency = engagement.currency
    policy = engagement.expense_policy
    what = (
        f"expense {expense.id} ({expense.category}, {expense.amount}) on {expense.expense_date.isoformat()}"
    )
    base = ChargeDecision(
        kind="expense",
        source_id=expense.id,
        version=expense.version,
        decision=Decision.NON_BILLABLE,
        rule="",
        reason="",
        currency=currency,
        work_date=expense.expense_date,
        billable_from=expense.expense_date,
        resource_id=expense.resource_id,
        category=expense.category,
        hours=Decimal(1),
    )

    def not_billed(kind: Decision, rule: str, reason: str) -> ChargeDecision:
        return replace(base, decision=kind, rule=rule, reason=reason)

    if expense.status == ApprovalStatus.UNAPPROVED:
        return not_billed(
            Decision.REJECTED,
            "approval-withdrawn",
            f"{what}: the approval was withdrawn, so it is not billed.",
        )
    if not expense.billable:
        return not_billed(
            Decision.NON_BILLABLE,
            "expense-marked-non-billable",
            f"{what} was approved as non-billable: cost only.",
        )
    if not policy.billable:
        return not_billed(
            Decision.NON_BILLABLE,
            "contract-expenses-not-billable",
            f"{what}: the contract does not re-bill expenses, so it is cost only.",
        )
    if expense.category in policy.non_billable_categories:
        return not_billed(
            Decision.NON_BILLABLE,
            "category-non-billable",
            f"{what}: the contract does not re-bill {expense.category} expenses, so it is cost only.",
        )
    threshold = policy.receipt_required_over
    if not expense.receipt_attached:
        in_threshold_currency = None
        if threshold is not None:
            in_threshold_currency = expense.amount.amount * fx_rate(
                engagement, expense.amount.currency, threshold.currency, expense.expense_date
            )
        if threshold is None or (
            in_threshold_currency is not None and in_threshold_currency > threshold.amount
        ):
            above = f" above {threshold}" if threshold is not None else ""
            return not_billed(
                Decision.REJECTED,
                "receipt-required",
                f"{what}: the contract requires a receipt for expenses{above} and none is attached; "
                "attach it and re-approve to bill it.",
            )
    rate = fx_rate(engagement, expense.amount.currency, currency, expense.expense_date)
    factor = (Decimal(100) + policy.markup_percent) / Decimal(100)
    billed = round_money(expense.amount.amount * rate * factor, currency)
    steps = []
    if rate != 1:
        steps.append(
            f"× {rate} {expense.amount.currency}→{currency} (rate of {expense.expense_date.isoformat()})"
        )
    if policy.markup_percent:
        steps.append(f"+ {policy.markup_percent} % markup")
    computed = (
        f"{expense.amount} {' '.join(steps)} = {billed} {currency}" if steps else f"{billed} {currency}"
    )
    billable_from, deferral = _schedule(engagement, expense.expense_date, expense.approved_at.date())
    when = (
        f"deferred: {deferral} (billable from {billable_from.isoformat()})"
        if deferral
        else "invoiceable with the next invoice for the engagement"
    )
    cap = policy.category_caps.get(expense.category)
    if cap is not None:
        if cap.currency != currency:
            raise BillingRuleError(
                f"engagement {engagement.id}: the {expense.category} expense cap is in {cap.currency}, "
                f"not the contract currency {currency}"
            )
        if billed > cap.amount:
            held = billed - cap.amount
            fate = (
                "held for approval"
                if engagement.cap_policy is CapPolicy.HOLD_FOR_APPROVAL
                else "written off, as the contract says"
            )
            return replace(
                base,
                decision=Decision.CAPPED,
                rule=f"expense-category-cap-{engagement.cap_policy.value.replace('_', '-')}",
                billable_from=billable_from,
                rate=cap.amount,
                billable_hours=Decimal(1),
                amount=cap.amount,
                held_amount=held,
                cap_policy=engagement.cap_policy.value,
                reason=f"{what}: {computed} is over the {expense.category} cap of {cap}: {cap} is {when}, "
                f"the {held} {currency} over are {fate}.",
            )
    return replace(
        base,
        decision=Decision.DEFERRED if deferral else Decision.INVOICEABLE,
        rule="expense-rebilled-deferred-monthly" if deferral else "expense-rebilled",
        billable_from=billable_from,
        rate=billed,
        billable_hours=Decimal(1),
        amount=billed,
        reason=f"{what}: billed as {computed}, {when}.",
    )
