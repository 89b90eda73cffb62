"""The bill rate in force for a piece of work, by precedence.

Precedence, first match wins: (1) the assignment's override, (2) the project rate card
(``engagement.rate_card``), (3) the client's rate card, (4) the firm's default card. Within a card
the rate must match role × region × the contract currency and be in force on the day the work was
performed. Two rates of one card in force for the same key on the same day are ambiguous and refused.
A missing rate is an error, never zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from r2r_core.errors import BillingRuleError
from r2r_core.model.entities import Engagement, RateCard


@dataclass(frozen=True)
class RateInForce:
    rate: Decimal
    currency: str
    rule: str  # assignment-override | project-rate-card | client-rate-card | default-rate-card
    source: str  # the assignment or rate card id
    effective_from: date

    def describe(self) -> str:
        where = _WHERE[self.rule].format(self.source)
        return f"{self.rate} {self.currency}/h from {where} (in force from {self.effective_from})"


_WHERE = {
    "assignment-override": "the override agreed for assignment {}",
    "project-rate-card": "project rate card {}",
    "client-rate-card": "client rate card {}",
    "default-rate-card": "default rate card {}",
}


def _from_card(
    card: RateCard, role: str, region: str, currency: str, on: date
) -> tuple[Decimal, date] | None:
    found = [
        r
        for r in card.rates
        if r.role == role
        and r.region == region
        and (r.currency or card.currency) == currency  # card.currency_of(r), inline: asked per rate
        and r.in_force_on(on)
    ]
    if len(found) > 1:
        raise BillingRuleError(
            f"rate card {card.id} has {len(found)} rates for role {role!r} in region {region!r} in "
            f"{currency} in force on {on.isoformat()}: effective dates overlap"
        )
    return (found[0].rate, found[0].effective_from) if found else None


def resolve_rate(
    engagement: Engagement, role: str, region: str, on: date, *, assignment_id: str | None = None
) -> RateInForce:
    """The rate in force, with the precedence rule that chose it."""
    currency = engagement.currency
    if assignment_id is not None:
        overrides = [
            o for o in engagement.assignment_rates if o.assignment_id == assignment_id and o.in_force_on(on)
        ]
        if len(overrides) > 1:
            raise BillingRuleError(
                f"assignment {assignment_id} has {len(overrides)} rate overrides in force on {on.isoformat()}"
            )
        if overrides:
            return RateInForce(
                overrides[0].rate.amount,
                currency,
                "assignment-override",
                assignment_id,
                overrides[0].effective_from,
            )
    cards = (
        ("project-rate-card", engagement.rate_card),
        ("client-rate-card", engagement.client_rate_card),
        ("default-rate-card", engagement.default_rate_card),
    )
    for rule, card in cards:
        if card is None:
            continue
        found = _from_card(card, role, region, currency, on)
        if found is not None:
            return RateInForce(found[0], currency, rule, card.id, found[1])
    looked = [f"{rule.replace('-', ' ')} {card.id}" for rule, card in cards if card is not None]
    where = ", ".join(looked) or "no rate card at all"
    raise BillingRuleError(
        f"engagement {engagement.id}: no rate for role {role!r} in region {region!r} in {currency} "
        f"on {on.isoformat()} (looked in {where})"
    )


def rate_in_force(engagement: Engagement, role: str, region: str, on: date) -> Decimal:
    """The rate card rate for role × region on a day (no assignment override)."""
    return resolve_rate(engagement, role, region, on).rate
