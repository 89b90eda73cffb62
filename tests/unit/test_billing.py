"""Billing decisions and invoice drafting, amounts worked out by hand in the comments."""

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from r2r_core.billing.decisions import Decision, decide_time_entry
from r2r_core.billing.invoicing import Charge, MilestoneBilling, billing_run
from r2r_core.billing.rates import rate_in_force
from r2r_core.errors import BillingRuleError
from r2r_core.model.entities import BillingType, ClosedWonDeal, TimeEntry
from r2r_core.model.money import Money

SCENARIO = Path(__file__).resolve().parents[2] / "events" / "scenarios" / "sold-to-billed"


@pytest.fixture
def deal() -> ClosedWonDeal:
    body = json.loads((SCENARIO / "01-opportunity-closed-won.json").read_text())["body"]
    return ClosedWonDeal.model_validate(body["data"])


def entry(**overrides: object) -> TimeEntry:
    values: dict[str, object] = {
        "id": "te-1",
        "engagement_id": "eng-acme-cloud-2026",
        "project_id": "prj-acme-cloud-2026",
        "resource_id": "res-maria-lopez",
        "role": "Cloud Engineer",
        "region": "NA",
        "work_date": "2026-11-16",
        "hours": "7.25",
        "approved_at": "2026-11-21T09:30:00Z",
    }
    values.update(overrides)
    return TimeEntry.model_validate(values)


def test_rate_in_force_is_the_rate_card_rate_for_role_and_region(deal: ClosedWonDeal) -> None:
    assert rate_in_force(deal.engagement, "Cloud Engineer", "NA", date(2026, 11, 16)) == Decimal("162.50")
    assert rate_in_force(deal.engagement, "Cloud Engineer", "EMEA", date(2026, 11, 16)) == Decimal("145.00")


def test_missing_rate_is_an_error_never_zero(deal: ClosedWonDeal) -> None:
    with pytest.raises(BillingRuleError, match="no rate for role 'Data Scientist' in region 'APAC'"):
        rate_in_force(deal.engagement, "Data Scientist", "APAC", date(2026, 11, 16))


def test_rate_outside_its_effective_dates_is_not_used(deal: ClosedWonDeal) -> None:
    # The 2026 card ends on 2026-12-31: work on 2027-01-04 has no rate in force.
    with pytest.raises(BillingRuleError, match="2027-01-04"):
        rate_in_force(deal.engagement, "Cloud Engineer", "NA", date(2027, 1, 4))


def test_billable_entry_is_invoiceable_at_rate_rounded_half_up(deal: ClosedWonDeal) -> None:
    decision = decide_time_entry(entry(), deal.engagement)
    # 7.25 h × 162.50 = 1178.125 → half-up to cents = 1178.13
    assert decision.decision is Decision.INVOICEABLE
    assert decision.amount == Decimal("1178.13")
    assert decision.rate == Decimal("162.50")
    assert "7.25 h × 162.50 USD" in decision.reason


def test_non_billable_entry_is_cost_only_with_a_reason(deal: ClosedWonDeal) -> None:
    decision = decide_time_entry(entry(billable=False, hours="2"), deal.engagement)
    assert decision.decision is Decision.NON_BILLABLE
    assert decision.amount == Decimal(0)
    assert "non-billable" in decision.reason


def test_fixed_fee_time_is_held_for_milestone(deal: ClosedWonDeal) -> None:
    fixed = deal.engagement.model_copy(update={"billing_type": BillingType.FIXED_FEE})
    decision = decide_time_entry(entry(), fixed)
    assert decision.decision is Decision.HELD_FOR_MILESTONE
    assert decision.amount == Decimal(0)


def test_invoice_draft_has_a_line_per_role_and_region_plus_the_milestone(deal: ClosedWonDeal) -> None:
    def charge(source_id: str, role: str, region: str, hours: str, rate: str) -> Charge:
        return Charge(
            kind="time",
            source_id=source_id,
            version=1,
            billable_from=date(2026, 11, 16),
            billable_hours=Decimal(hours),
            rate=Decimal(rate),
            amount=Decimal(0),
            role=role,
            region=region,
        )

    charges = [
        charge("a1", "Solution Architect", "EMEA", "8", "210"),
        charge("a2", "Solution Architect", "EMEA", "7.5", "210"),
        charge("m1", "Cloud Engineer", "NA", "7.25", "162.50"),
        charge("m2", "Cloud Engineer", "NA", "6.5", "162.50"),
    ]
    run = billing_run(
        deal.engagement,
        invoice_id="inv-1",
        client_id="c",
        project_id="p",
        invoice_date=date(2026, 11, 23),
        charges=charges,
        milestone=MilestoneBilling("ms-1", "Sign-off", Money.of("1000.00", "USD")),
    )
    invoice = run.invoice
    assert invoice is not None
    amounts = [(line.description, line.quantity, line.rate, line.amount) for line in invoice.lines]
    assert amounts == [
        # 13.75 h × 162.50 = 2234.375 → 2234.38 (rounded once, per line)
        ("Cloud Engineer (NA) — time and materials", Decimal("13.75"), Decimal("162.50"), Decimal("2234.38")),
        # 15.5 h × 210 = 3255.00
        (
            "Solution Architect (EMEA) — time and materials",
            Decimal("15.5"),
            Decimal("210"),
            Decimal("3255.00"),
        ),
        ("Milestone: Sign-off", Decimal(1), Decimal("1000.00"), Decimal("1000.00")),
    ]
    # 2234.38 + 3255.00 + 1000.00
    assert invoice.total.amount == Decimal("6489.38")
    assert invoice.lines[0].source_ids == ["m1", "m2"]
