"""Billing decisions for approved time, and the rate in force for a piece of work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from r2r_core.errors import BillingRuleError
from r2r_core.model.entities import BillingType, Engagement, TimeEntry
from r2r_core.model.money import round_money


class Decision(StrEnum):
    INVOICEABLE = "invoiceable"
    NON_BILLABLE = "non_billable"
    HELD_FOR_MILESTONE = "held_for_milestone"


@dataclass(frozen=True)
class ChargeDecision:
    """What r2r decided for one approved time entry, and why."""

    time_entry_id: str
    version: int
    decision: Decision
    rule: str
    reason: str
    role: str
    region: str
    hours: Decimal
    rate: Decimal
    amount: Decimal
    currency: str

    @property
    def billable(self) -> bool:
        return self.decision is Decision.INVOICEABLE


def rate_in_force(engagement: Engagement, role: str, region: str, on: date) -> Decimal:
    """The engagement rate card's rate for role × region on the day the work was performed.

    A missing rate is an error, never zero.
    """
    card = engagement.rate_card
    if card is None:
        raise BillingRuleError(f"engagement {engagement.id} has no rate card")
    for rate in card.rates:
        if rate.role == role and rate.region == region and rate.in_force_on(on):
            return rate.rate
    raise BillingRuleError(
        f"rate card {card.id} has no rate for role {role!r} in region {region!r} on {on.isoformat()}"
    )


def decide_time_entry(entry: TimeEntry, engagement: Engagement) -> ChargeDecision:
    currency = engagement.currency

    def decision(kind: Decision, rule: str, reason: str, rate: Decimal) -> ChargeDecision:
        amount = round_money(entry.hours * rate, currency) if kind is Decision.INVOICEABLE else Decimal(0)
        return ChargeDecision(
            time_entry_id=entry.id,
            version=entry.version,
            decision=kind,
            rule=rule,
            reason=reason,
            role=entry.role,
            region=entry.region,
            hours=entry.hours,
            rate=rate,
            amount=amount,
            currency=currency,
        )

    if not entry.billable:
        return decision(
            Decision.NON_BILLABLE,
            "entry-marked-non-billable",
            f"{entry.hours} h on {entry.work_date} were approved as non-billable: recorded as cost only.",
            Decimal(0),
        )
    if engagement.billing_type is BillingType.FIXED_FEE:
        return decision(
            Decision.HELD_FOR_MILESTONE,
            "fixed-fee-billed-by-milestone",
            f"Engagement {engagement.id} is fixed fee: time is billed through milestones, not by the hour.",
            Decimal(0),
        )
    rate = rate_in_force(engagement, entry.role, entry.region, entry.work_date)
    amount = round_money(entry.hours * rate, currency)
    return decision(
        Decision.INVOICEABLE,
        "time-and-materials-at-rate-card",
        f"{entry.hours} h × {rate} {currency} ({entry.role}, {entry.region}, rate in force on "
        f"{entry.work_date}) = {amount} {currency}, invoiceable with the next invoice for the engagement.",
        rate,
    )
