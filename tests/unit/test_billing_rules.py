"""Table-driven billing rules: every billing type, every rate precedence rule, expenses, revenue.

Every expected amount is worked out by hand in the comment of its row.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from r2r_core.billing.decisions import Consumption, Decision, decide_expense, decide_time_entry
from r2r_core.billing.invoicing import Charge, MilestoneBilling, PriorBilling, billing_run
from r2r_core.billing.rates import resolve_rate
from r2r_core.billing.revenue import revenue_for_milestone, revenue_for_time
from r2r_core.errors import BillingRuleError
from r2r_core.model.entities import Engagement, Expense, Milestone, RevenueKind, TimeEntry
from r2r_core.model.money import Money


def card(card_id: str, rate: str, *, role: str = "Consultant", region: str = "EMEA", **extra: Any) -> dict:
    return {
        "id": card_id,
        "name": card_id,
        "currency": "EUR",
        "rates": [
            {"role": role, "region": region, "rate": rate, "effective_from": "2026-01-01", **extra},
        ],
    }


def engagement(**terms: Any) -> Engagement:
    values: dict[str, Any] = {
        "id": "eng-1",
        "client_id": "cl-1",
        "name": "Contract",
        "billing_type": "time_and_materials",
        "currency": "EUR",
        "rate_card": card("rc-project", "100.00"),
        "start_date": "2026-01-01",
        "region": "EMEA",
    }
    values.update(terms)
    return Engagement.model_validate(values)


def entry(**overrides: Any) -> TimeEntry:
    values: dict[str, Any] = {
        "id": "te-1",
        "engagement_id": "eng-1",
        "project_id": "prj-1",
        "resource_id": "res-1",
        "role": "Consultant",
        "region": "EMEA",
        "work_date": "2026-03-10",
        "hours": "8",
        "approved_at": "2026-03-31T09:00:00Z",
    }
    values.update(overrides)
    return TimeEntry.model_validate(values)


def expense(**overrides: Any) -> Expense:
    values: dict[str, Any] = {
        "id": "ex-1",
        "engagement_id": "eng-1",
        "project_id": "prj-1",
        "resource_id": "res-1",
        "expense_date": "2026-03-10",
        "category": "Travel",
        "amount": {"amount": "100.00", "currency": "EUR"},
        "receipt_attached": True,
        "approved_at": "2026-03-31T09:00:00Z",
    }
    values.update(overrides)
    return Expense.model_validate(values)


# --- rate precedence ----------------------------------------------------------------------------
OVERRIDE = [
    {
        "assignment_id": "asg-1",
        "rate": {"amount": "150.00", "currency": "EUR"},
        "effective_from": "2026-01-01",
    }
]


@pytest.mark.parametrize(
    ("terms", "assignment", "rate", "rule"),
    [
        # assignment override beats every card
        (
            {"assignment_rates": OVERRIDE, "client_rate_card": card("rc-client", "90.00")},
            "asg-1",
            "150.00",
            "assignment-override",
        ),
        # an override for another assignment does not apply: project card
        ({"assignment_rates": OVERRIDE}, "asg-2", "100.00", "project-rate-card"),
        # project card beats client and default cards
        (
            {
                "client_rate_card": card("rc-client", "90.00"),
                "default_rate_card": card("rc-default", "80.00"),
            },
            None,
            "100.00",
            "project-rate-card",
        ),
        # project card has no rate for the role: the client card's
        (
            {
                "rate_card": card("rc-project", "100.00", role="Architect"),
                "client_rate_card": card("rc-client", "90.00"),
                "default_rate_card": card("rc-default", "80.00"),
            },
            None,
            "90.00",
            "client-rate-card",
        ),
        # neither project nor client card: the default card's
        (
            {"rate_card": None, "default_rate_card": card("rc-default", "80.00")},
            None,
            "80.00",
            "default-rate-card",
        ),
        # project card rate not yet in force on the work date (from 2026-04-01): the client card's
        (
            {
                "rate_card": card("rc-project", "100.00")
                | {
                    "rates": [
                        {
                            "role": "Consultant",
                            "region": "EMEA",
                            "rate": "100.00",
                            "effective_from": "2026-04-01",
                        }
                    ]
                },
                "client_rate_card": card("rc-client", "90.00"),
            },
            None,
            "90.00",
            "client-rate-card",
        ),
        # the project card's USD rate does not serve a EUR contract; its EUR rate does
        (
            {
                "rate_card": card("rc-project", "100.00")
                | {
                    "rates": [
                        {
                            "role": "Consultant",
                            "region": "EMEA",
                            "rate": "120.00",
                            "currency": "USD",
                            "effective_from": "2026-01-01",
                        },
                        {
                            "role": "Consultant",
                            "region": "EMEA",
                            "rate": "100.00",
                            "effective_from": "2026-01-01",
                        },
                    ]
                }
            },
            None,
            "100.00",
            "project-rate-card",
        ),
    ],
)
def test_rate_precedence(terms: dict, assignment: str | None, rate: str, rule: str) -> None:
    found = resolve_rate(
        engagement(**terms), "Consultant", "EMEA", date(2026, 3, 10), assignment_id=assignment
    )
    assert (found.rate, found.rule) == (Decimal(rate), rule)


def test_rate_in_force_on_the_day_worked_across_a_rate_change() -> None:
    changing = card("rc-project", "100.00", effective_to="2026-03-31") | {
        "rates": [
            {
                "role": "Consultant",
                "region": "EMEA",
                "rate": "100.00",
                "effective_from": "2026-01-01",
                "effective_to": "2026-03-31",
            },
            {"role": "Consultant", "region": "EMEA", "rate": "110.00", "effective_from": "2026-04-01"},
        ]
    }
    contract = engagement(rate_card=changing)
    assert resolve_rate(contract, "Consultant", "EMEA", date(2026, 3, 31)).rate == Decimal("100.00")
    assert resolve_rate(contract, "Consultant", "EMEA", date(2026, 4, 1)).rate == Decimal("110.00")


def test_missing_rate_is_an_exception_naming_where_it_looked() -> None:
    with pytest.raises(
        BillingRuleError,
        match=r"no rate for role 'Tester' in region 'EMEA' in EUR on 2026-03-10 "
        r"\(looked in project rate card rc-project\)",
    ):
        decide_time_entry(entry(role="Tester"), engagement())


def test_overlapping_rates_are_refused_not_guessed() -> None:
    overlapping = card("rc-project", "100.00") | {
        "rates": [
            {"role": "Consultant", "region": "EMEA", "rate": "100.00", "effective_from": "2026-01-01"},
            {"role": "Consultant", "region": "EMEA", "rate": "105.00", "effective_from": "2026-03-01"},
        ]
    }
    with pytest.raises(BillingRuleError, match="effective dates overlap"):
        decide_time_entry(entry(), engagement(rate_card=overlapping))


# --- one decision per billing type -------------------------------------------------------------
CAP = {"amount": "1000.00", "currency": "EUR"}
E = Decimal


@pytest.mark.parametrize(
    ("terms", "entry_overrides", "consumed", "decision", "rule", "billable_hours", "amount", "held_hours"),
    [
        # T&M: 8 h × 100.00 = 800.00
        ({}, {}, Consumption(), Decision.INVOICEABLE, "time-and-materials-at-rate", "8", "800.00", "0"),
        # T&M, 7.25 h × 100.125 (override) = 725.90625 → 725.91 half-up
        (
            {
                "assignment_rates": [
                    {
                        "assignment_id": "a",
                        "rate": {"amount": "100.125", "currency": "EUR"},
                        "effective_from": "2026-01-01",
                    }
                ]
            },
            {"hours": "7.25", "assignment_id": "a"},
            Consumption(),
            Decision.INVOICEABLE,
            "time-and-materials-at-rate",
            "7.25",
            "725.91",
            "0",
        ),
        # fixed fee: time held for the milestone
        (
            {"billing_type": "fixed_fee"},
            {},
            Consumption(),
            Decision.HELD_FOR_MILESTONE,
            "fixed-fee-billed-by-milestone",
            "0",
            "0",
            "0",
        ),
        # mixed: time is T&M (milestones are billed as fixed amounts on their own)
        (
            {"billing_type": "mixed"},
            {},
            Consumption(),
            Decision.INVOICEABLE,
            "time-and-materials-at-rate",
            "8",
            "800.00",
            "0",
        ),
        # capped T&M, amount cap 1000, 200 used: 200 + 8 h × 100 = 1000 ≤ 1000 → all 8 h billable
        (
            {"billing_type": "capped_time_and_materials", "cap": CAP},
            {},
            Consumption(amount=E("200")),
            Decision.INVOICEABLE,
            "time-and-materials-at-rate",
            "8",
            "800.00",
            "0",
        ),
        # capped T&M, amount cap 1000, 400 used: room 600 → 6 h × 100 = 600.00 billed, 2 h held
        (
            {"billing_type": "capped_time_and_materials", "cap": CAP},
            {},
            Consumption(amount=E("400")),
            Decision.CAPPED,
            "capped-hold-for-approval",
            "6",
            "600.00",
            "2",
        ),
        # same with 10 % tolerance: hard cap 1100, room 700 → 7 h = 700.00, 1 h held
        (
            {"billing_type": "capped_time_and_materials", "cap": CAP, "cap_tolerance_percent": "10"},
            {},
            Consumption(amount=E("400")),
            Decision.CAPPED,
            "capped-hold-for-approval",
            "7",
            "700.00",
            "1",
        ),
        # write-off policy: the 2 h over are written off, not held
        (
            {"billing_type": "capped_time_and_materials", "cap": CAP, "cap_policy": "write_off"},
            {},
            Consumption(amount=E("400")),
            Decision.CAPPED,
            "capped-write-off",
            "6",
            "600.00",
            "2",
        ),
        # hours cap 100 h, 95.5 h used: room 4.5 h × 100 = 450.00, 3.5 h held
        (
            {"billing_type": "capped_time_and_materials", "cap_hours": "100"},
            {},
            Consumption(hours=E("95.5")),
            Decision.CAPPED,
            "capped-hold-for-approval",
            "4.5",
            "450.00",
            "3.5",
        ),
        # cap already used up: nothing billable, all 8 h held
        (
            {"billing_type": "capped_time_and_materials", "cap": CAP},
            {},
            Consumption(amount=E("1000")),
            Decision.CAPPED,
            "capped-hold-for-approval",
            "0",
            "0.00",
            "8",
        ),
        # PO budget (500.00, March) binds before the contract cap (1000): 300 used in the PO → 2 h = 200.00
        (
            {
                "billing_type": "capped_time_and_materials",
                "cap": CAP,
                "budgets": [
                    {
                        "id": "po-1",
                        "po_number": "4711",
                        "amount": {"amount": "500.00", "currency": "EUR"},
                        "effective_from": "2026-03-01",
                        "effective_to": "2026-03-31",
                    }
                ],
            },
            {},
            Consumption(amount=E("300"), budgets={"po-1": (E("300"), E("3"))}),
            Decision.CAPPED,
            "capped-hold-for-approval",
            "2",
            "200.00",
            "6",
        ),
        # retainer 2000.00 prepaid, 1000 drawn: 8 h × 100 = 800 fits the balance → prepaid, nothing invoiced
        (
            {"billing_type": "retainer", "retainer": {"prepaid": {"amount": "2000.00", "currency": "EUR"}}},
            {},
            Consumption(retainer_drawn=E("1000")),
            Decision.PREPAID,
            "retainer-drawdown",
            "0",
            "0",
            "0",
        ),
        # retainer with 1500 drawn: 5 h draw down the last 500.00, 3 h overage × 100 = 300.00 invoiced
        (
            {"billing_type": "retainer", "retainer": {"prepaid": {"amount": "2000.00", "currency": "EUR"}}},
            {},
            Consumption(retainer_drawn=E("1500")),
            Decision.INVOICEABLE,
            "retainer-overage-at-rate",
            "3",
            "300.00",
            "0",
        ),
        # monthly schedule: March work approved on 2026-03-20 waits for period end (billable from 04-01)
        (
            {"billing_schedule": "monthly"},
            {"approved_at": "2026-03-20T09:00:00Z"},
            Consumption(),
            Decision.DEFERRED,
            "time-and-materials-at-rate-deferred-monthly",
            "8",
            "800.00",
            "0",
        ),
        # monthly schedule, approved after period end: invoiceable now
        (
            {"billing_schedule": "monthly"},
            {"approved_at": "2026-04-02T09:00:00Z"},
            Consumption(),
            Decision.INVOICEABLE,
            "time-and-materials-at-rate",
            "8",
            "800.00",
            "0",
        ),
        # non-billable entry: cost only
        (
            {},
            {"billable": False},
            Consumption(),
            Decision.NON_BILLABLE,
            "entry-marked-non-billable",
            "0",
            "0",
            "0",
        ),
        # approval withdrawn: rejected with a reason
        ({}, {"status": "unapproved"}, Consumption(), Decision.REJECTED, "approval-withdrawn", "0", "0", "0"),
        # work before the contract starts: rejected
        (
            {"start_date": "2026-04-01"},
            {},
            Consumption(),
            Decision.REJECTED,
            "outside-contract-dates",
            "0",
            "0",
            "0",
        ),
    ],
)
def test_decision_per_billing_type(
    terms: dict,
    entry_overrides: dict,
    consumed: Consumption,
    decision: Decision,
    rule: str,
    billable_hours: str,
    amount: str,
    held_hours: str,
) -> None:
    made = decide_time_entry(entry(**entry_overrides), engagement(**terms), consumed)
    assert (made.decision, made.rule) == (decision, rule), made.reason
    assert made.billable_hours == Decimal(billable_hours)
    assert made.amount == Decimal(amount)
    assert made.held_hours == Decimal(held_hours)
    assert made.reason  # every decision says why, in words


def test_capped_reason_says_what_was_billed_and_what_was_held() -> None:
    made = decide_time_entry(
        entry(), engagement(billing_type="capped_time_and_materials", cap=CAP), Consumption(amount=E("400"))
    )
    assert "reach the contract cap" in made.reason
    assert "6.00 h = 600.00 EUR fit" in made.reason
    assert "the 2.00 h over (200.00 EUR) are held for approval" in made.reason


def test_deferred_reason_names_the_period() -> None:
    made = decide_time_entry(
        entry(approved_at="2026-03-20T09:00:00Z"), engagement(billing_schedule="monthly"), Consumption()
    )
    assert "waits for the period ending 2026-03-31" in made.reason


def test_budgets_must_cover_the_work_date() -> None:
    budgets = [{"id": "po-1", "amount": CAP, "effective_from": "2026-04-01"}]
    with pytest.raises(BillingRuleError, match="none covers 2026-03-10"):
        decide_time_entry(entry(), engagement(billing_type="capped_time_and_materials", budgets=budgets))


def test_contract_terms_are_checked_when_the_deal_arrives() -> None:
    with pytest.raises(ValueError, match="needs cap, cap_hours or budgets"):
        engagement(billing_type="capped_time_and_materials")
    with pytest.raises(ValueError, match="needs retainer terms"):
        engagement(billing_type="retainer")
    with pytest.raises(ValueError, match="exactly one of amount and percent_of_contract"):
        engagement(milestones=[{"id": "m", "name": "M"}])
    with pytest.raises(ValueError, match="percent of contract_value, which is not set"):
        engagement(milestones=[{"id": "m", "name": "M", "percent_of_contract": "10"}])


def test_milestone_by_percent_of_contract_value() -> None:
    contract = engagement(
        billing_type="fixed_fee",
        contract_value={"amount": "33333.33", "currency": "EUR"},
        milestones=[{"id": "m1", "name": "Design", "percent_of_contract": "12.5"}],
    )
    # 33333.33 × 12.5 % = 4166.66625 → 4166.67 half-up
    assert contract.milestone_amount("m1") == Money.of("4166.67", "EUR")


# --- expenses ---------------------------------------------------------------------------------
FX = [
    {
        "from_currency": "USD",
        "to_currency": "EUR",
        "rate": "0.9",
        "effective_from": "2026-03-01",
        "effective_to": "2026-03-31",
    }
]


@pytest.mark.parametrize(
    ("policy", "fx", "overrides", "decision", "rule", "amount", "held"),
    [
        # billable at cost: 100.00 EUR
        ({}, [], {}, Decision.INVOICEABLE, "expense-rebilled", "100.00", "0"),
        # 10 % markup: 100.00 × 1.10 = 110.00
        ({"markup_percent": "10"}, [], {}, Decision.INVOICEABLE, "expense-rebilled", "110.00", "0"),
        # USD 123.45 × 0.9 = 111.105 → 111.11 (half-up once, after conversion)
        (
            {},
            FX,
            {"amount": {"amount": "123.45", "currency": "USD"}},
            Decision.INVOICEABLE,
            "expense-rebilled",
            "111.11",
            "0",
        ),
        # USD 123.45 × 0.9 × 1.05 = 116.66025 → 116.66
        (
            {"markup_percent": "5"},
            FX,
            {"amount": {"amount": "123.45", "currency": "USD"}},
            Decision.INVOICEABLE,
            "expense-rebilled",
            "116.66",
            "0",
        ),
        # Travel cap 80.00 per expense: 100.00 → 80.00 billed, 20.00 held
        (
            {"category_caps": {"Travel": {"amount": "80.00", "currency": "EUR"}}},
            [],
            {},
            Decision.CAPPED,
            "expense-category-cap-hold-for-approval",
            "80.00",
            "20.00",
        ),
        # no receipt and receipts always required: rejected
        ({}, [], {"receipt_attached": False}, Decision.REJECTED, "receipt-required", "0", "0"),
        # no receipt, but only required over 150.00: billed
        (
            {"receipt_required_over": {"amount": "150.00", "currency": "EUR"}},
            [],
            {"receipt_attached": False},
            Decision.INVOICEABLE,
            "expense-rebilled",
            "100.00",
            "0",
        ),
        # category not re-billed: cost only
        (
            {"non_billable_categories": ["Travel"]},
            [],
            {},
            Decision.NON_BILLABLE,
            "category-non-billable",
            "0",
            "0",
        ),
        # expense marked non-billable: cost only
        ({}, [], {"billable": False}, Decision.NON_BILLABLE, "expense-marked-non-billable", "0", "0"),
    ],
)
def test_expense_decisions(
    policy: dict, fx: list, overrides: dict, decision: Decision, rule: str, amount: str, held: str
) -> None:
    made = decide_expense(expense(**overrides), engagement(expense_policy=policy, fx_rates=fx))
    assert (made.decision, made.rule) == (decision, rule), made.reason
    assert made.amount == Decimal(amount)
    assert made.held_amount == Decimal(held)


def test_missing_fx_rate_is_an_exception() -> None:
    with pytest.raises(BillingRuleError, match="no exchange rate GBP→EUR in force on 2026-03-10"):
        decide_expense(expense(amount={"amount": "10.00", "currency": "GBP"}), engagement(fx_rates=FX))


# --- billing runs -----------------------------------------------------------------------------
def time_charge(
    source_id: str,
    hours: str,
    *,
    rate: str = "100.00",
    resource: str = "res-1",
    role: str = "Consultant",
    billable_from: str = "2026-03-10",
    budget_id: str | None = None,
) -> Charge:
    return Charge(
        kind="time",
        source_id=source_id,
        version=1,
        billable_from=date.fromisoformat(billable_from),
        billable_hours=Decimal(hours),
        rate=Decimal(rate),
        amount=Decimal(0),
        resource_id=resource,
        role=role,
        region="EMEA",
        budget_id=budget_id,
    )


def run(contract: Engagement, charges: list[Charge], **kwargs: Any) -> Any:
    return billing_run(
        contract,
        invoice_id="inv",
        client_id="cl-1",
        project_id="prj-1",
        invoice_date=date(2026, 3, 31),
        charges=charges,
        **kwargs,
    )


def test_lines_grouped_by_resource_when_the_contract_says_so() -> None:
    charges = [
        time_charge("a", "1.25", resource="res-a"),
        time_charge("b", "2.5", resource="res-b"),
        time_charge("c", "0.75", resource="res-a"),
    ]
    invoice = run(engagement(line_grouping="resource"), charges).invoice
    # res-a: 2 h × 100 = 200.00; res-b: 2.5 h × 100 = 250.00; total 450.00
    assert [(x.description, x.amount) for x in invoice.lines] == [
        ("res-a — time and materials", Decimal("200.00")),
        ("res-b — time and materials", Decimal("250.00")),
    ]
    assert invoice.total.amount == Decimal("450.00")


def test_rounding_is_once_per_line_half_up() -> None:
    # One line of 0.33 + 0.33 + 0.33 + 0.15 = 1.14 h × 33.335 = 38.0019 → 38.00, rounded once.
    # Rounding each entry first would give 11.00 (0.33 × 33.335 = 11.00055) × 3 + 5.00 = 38.00 here as well;
    # the rule is the line's quantity × rate, so quantity × rate = amount holds on every line.
    charges = [time_charge(x, "0.33", rate="33.335") for x in "abc"] + [
        time_charge("d", "0.15", rate="33.335")
    ]
    invoice = run(engagement(line_grouping="role"), charges).invoice
    assert [(x.quantity, x.amount) for x in invoice.lines] == [(Decimal("1.14"), Decimal("38.00"))]


def test_deferred_charges_wait_for_their_period() -> None:
    result = run(engagement(), [time_charge("a", "1"), time_charge("b", "1", billable_from="2026-04-01")])
    assert result.waiting == ["b"]
    assert result.invoice.total.amount == Decimal("100.00")


def test_billing_run_caps_again_and_warns_at_80_and_100_percent() -> None:
    contract = engagement(billing_type="capped_time_and_materials", cap=CAP)
    # 700.00 invoiced before; 3 h × 100 = 300.00 would make 1000.00 (100 %) — fits exactly; 1 more h does not
    result = run(
        contract,
        [time_charge("a", "3"), time_charge("b", "1")],
        prior=PriorBilling(fees={"contract": E(700)}),
    )
    assert [(b.source_id, b.billable_hours, b.held_hours) for b in result.billed] == [
        ("a", Decimal("3"), Decimal("0")),
        ("b", Decimal("0"), Decimal("1")),
    ]
    assert result.invoice.total.amount == Decimal("300.00")
    assert [w.threshold_percent for w in result.warnings] == [80, 100]


def test_milestone_line_and_po_lines() -> None:
    contract = engagement(
        billing_type="mixed",
        budgets=[{"id": "b1", "po_number": "4711", "amount": CAP, "effective_from": "2026-01-01"}],
    )
    result = run(
        contract,
        [time_charge("a", "2", budget_id="b1")],
        milestone=MilestoneBilling("m1", "Design", Money.of("5000.00", "EUR")),
    )
    # 2 h × 100 = 200.00 + 5000.00 = 5200.00
    assert [(x.description, x.amount) for x in result.invoice.lines] == [
        ("PO 4711: Consultant (EMEA) — time and materials", Decimal("200.00")),
        ("Milestone: Design", Decimal("5000.00")),
    ]
    assert result.invoice.total.amount == Decimal("5200.00")


# --- revenue ----------------------------------------------------------------------------------
def test_time_and_materials_revenue_as_delivered() -> None:
    contract = engagement()
    made = decide_time_entry(entry(hours="7.5"), contract)
    event = revenue_for_time(
        made,
        contract,
        project_id="prj-1",
        recognised_for_entry=E(0),
        delivered_hours_before=E(0),
        recognised_percent_complete=E(0),
    )
    # 7.5 h × 100 = 750.00; a later change to 6 h recognises 600.00 − 750.00 = −150.00
    assert event is not None and event.amount == Money.of("750.00", "EUR")
    assert event.kind is RevenueKind.TIME_AND_MATERIALS_DELIVERED
    changed = decide_time_entry(entry(hours="6", version=2), contract)
    delta = revenue_for_time(
        changed,
        contract,
        project_id="prj-1",
        recognised_for_entry=E("750.00"),
        delivered_hours_before=E(0),
        recognised_percent_complete=E(0),
    )
    assert delta is not None and delta.amount == Money.of("-150.00", "EUR")


def test_fixed_fee_revenue_by_percent_complete() -> None:
    contract = engagement(
        billing_type="fixed_fee",
        revenue_method="percent_complete",
        estimated_hours="300",
        contract_value={"amount": "10000.00", "currency": "EUR"},
    )
    made = decide_time_entry(entry(hours="8"), contract)
    # 100 h before + 8 h = 108 of 300 h = 36 % × 10000.00 = 3600.00; 3333.33 recognised before → 266.67
    event = revenue_for_time(
        made,
        contract,
        project_id="prj-1",
        recognised_for_entry=E(0),
        delivered_hours_before=E(100),
        recognised_percent_complete=E("3333.33"),
    )
    assert event is not None and event.amount == Money.of("266.67", "EUR")
    assert event.kind is RevenueKind.PERCENT_COMPLETE


def test_fixed_fee_revenue_on_milestone_acceptance_only() -> None:
    contract = engagement(
        billing_type="fixed_fee",
        milestones=[{"id": "m1", "name": "Go-live", "amount": {"amount": "5000.00", "currency": "EUR"}}],
    )
    milestone = {
        "id": "m1",
        "engagement_id": "eng-1",
        "project_id": "prj-1",
        "name": "Go-live",
        "amount": {"amount": "5000.00", "currency": "EUR"},
        "completed_on": "2026-03-31",
    }
    completed = Milestone.model_validate(milestone | {"status": "completed"})
    accepted = Milestone.model_validate(milestone | {"status": "accepted"})
    assert revenue_for_milestone(contract, completed) is None
    event = revenue_for_milestone(contract, accepted)
    assert event is not None and event.amount == Money.of("5000.00", "EUR")
    assert event.kind is RevenueKind.MILESTONE_ACCEPTED
