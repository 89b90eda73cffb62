"""Revenue events: T&M recognised as delivered; fixed fee on milestone acceptance or by percent complete.

* Hourly work (T&M, capped T&M, retainer, the T&M of a mixed contract) is recognised when decided:
  the billable amount plus any retainer drawdown. A changed entry recognises the difference (which may
  be negative), so what is recognised for an entry always equals its latest decision.
* Fixed fee with ``revenue_method = percent_complete``: recognised to date =
  round_half_up(contract value × min(1, hours delivered / estimated hours)); each entry recognises the
  step from what was recognised before.
* Fixed fee (and the milestones of a mixed contract) with ``milestone_acceptance``: the milestone amount
  when the milestone is accepted.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from r2r_core.billing.decisions import ZERO, ChargeDecision, Decision
from r2r_core.model.entities import (
    BillingType,
    Engagement,
    Milestone,
    MilestoneStatus,
    RevenueEvent,
    RevenueKind,
    RevenueMethod,
)
from r2r_core.model.money import Money, round_money

_DELIVERED = {Decision.INVOICEABLE, Decision.DEFERRED, Decision.CAPPED, Decision.PREPAID}


def delivered_value(decision: ChargeDecision) -> Decimal:
    """What an hourly decision recognises: billable amount plus retainer drawdown (rounded once)."""
    if decision.kind != "time" or decision.decision not in _DELIVERED:
        return ZERO
    return round_money((decision.billable_hours + decision.prepaid_hours) * decision.rate, decision.currency)


def time_revenue_id(kind: str, source_id: str, version: int) -> str:
    """The id of the revenue event a version of a time decision causes (one per version)."""
    return f"rev-{kind}-{source_id}-v{version}"


def time_revenue_kind(engagement: Engagement) -> RevenueKind:
    """What kind of revenue time recognises on ``engagement``."""
    if engagement.billing_type is BillingType.FIXED_FEE:
        return RevenueKind.PERCENT_COMPLETE
    return RevenueKind.TIME_AND_MATERIALS_DELIVERED


def revenue_for_time(
    decision: ChargeDecision,
    engagement: Engagement,
    *,
    project_id: str,
    recognised_for_entry: Decimal,
    delivered_hours_before: Decimal,
    recognised_percent_complete: Decimal,
    hours_before_for_entry: Decimal = ZERO,
) -> RevenueEvent | None:
    """The revenue event one time decision causes (None when nothing changes)."""
    currency = engagement.currency
    if engagement.billing_type is BillingType.FIXED_FEE:
        if engagement.revenue_method is not RevenueMethod.PERCENT_COMPLETE:
            return None
        assert engagement.contract_value is not None and engagement.estimated_hours
        counted = decision.hours if decision.decision is Decision.HELD_FOR_MILESTONE else ZERO
        delivered = delivered_hours_before - hours_before_for_entry + counted
        share = min(Decimal(1), delivered / engagement.estimated_hours)
        to_date = round_money(engagement.contract_value.amount * share, currency)
        amount = to_date - recognised_percent_complete
        kind = RevenueKind.PERCENT_COMPLETE
    else:
        amount = delivered_value(decision) - recognised_for_entry
        kind = RevenueKind.TIME_AND_MATERIALS_DELIVERED
    if amount == 0:
        return None
    return RevenueEvent(
        id=time_revenue_id(decision.kind, decision.source_id, decision.version),
        engagement_id=engagement.id,
        project_id=project_id,
        kind=kind,
        amount=Money(amount=amount, currency=currency),
        recognized_on=decision.work_date,
        source_ids=[decision.source_id],
    )


def revenue_for_milestone(engagement: Engagement, milestone: Milestone) -> RevenueEvent | None:
    """The milestone's contract amount on acceptance, unless the contract recognises by percent complete."""
    if milestone.status is not MilestoneStatus.ACCEPTED:
        return None
    if engagement.revenue_method is RevenueMethod.PERCENT_COMPLETE:
        return None
    amount = engagement.milestone_amount(milestone.id)
    return RevenueEvent(
        id=f"rev-milestone-{milestone.id}",
        engagement_id=engagement.id,
        project_id=milestone.project_id,
        kind=RevenueKind.MILESTONE_ACCEPTED,
        amount=amount,
        recognized_on=milestone.completed_on,
        source_ids=[milestone.id],
    )


def recognised_on_or_before(day: date, events: list[RevenueEvent]) -> Decimal:
    return sum((e.amount.amount for e in events if e.recognized_on <= day), ZERO)
