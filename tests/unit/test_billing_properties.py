"""Property-based invariants of the billing engine (hypothesis, bounded so the suite stays fast)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from r2r_core.billing.decisions import Consumption, Decision, decide_time_entry, hard_limit
from r2r_core.billing.invoicing import Charge, PriorBilling, Reversal, billing_run
from r2r_core.model.entities import Engagement, TimeEntry
from r2r_core.model.money import round_money

BOUNDED = settings(max_examples=150, deadline=None)
RATES = ["99.99", "100.125", "162.50", "33.335", "210.00"]
ROLES = ["Architect", "Engineer", "Analyst"]

hours_st = st.decimals(min_value=Decimal("0.25"), max_value=Decimal(12), places=2)
entry_st = st.tuples(hours_st, st.sampled_from(ROLES), st.integers(min_value=0, max_value=27))


def contract(cap: Decimal | None, cap_hours: Decimal | None, tolerance: Decimal, grouping: str) -> Engagement:
    rates = [
        {"role": role, "region": "EMEA", "rate": rate, "effective_from": "2026-01-01"}
        for role, rate in zip(ROLES, RATES, strict=False)
    ]
    return Engagement.model_validate(
        {
            "id": "eng-p",
            "client_id": "cl",
            "name": "Property",
            "billing_type": "capped_time_and_materials" if cap or cap_hours else "time_and_materials",
            "currency": "USD",
            "rate_card": {"id": "rc", "name": "rc", "currency": "USD", "rates": rates},
            "cap": {"amount": str(cap), "currency": "USD"} if cap else None,
            "cap_hours": str(cap_hours) if cap_hours else None,
            "cap_tolerance_percent": str(tolerance),
            "line_grouping": grouping,
            "start_date": "2026-01-01",
            "region": "EMEA",
        }
    )


def time_entry(index: int, hours: Decimal, role: str, day: int, version: int = 1) -> TimeEntry:
    return TimeEntry(
        id=f"te-{index}",
        version=version,
        engagement_id="eng-p",
        project_id="prj",
        resource_id=f"res-{index % 3}",
        role=role,
        region="EMEA",
        work_date=date(2026, 2, 1) + timedelta(days=day),
        hours=hours,
        approved_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def as_charge(decision: object) -> Charge:
    d = decision  # a ChargeDecision
    return Charge(
        kind="time",
        source_id=d.source_id,  # type: ignore[attr-defined]
        version=d.version,  # type: ignore[attr-defined]
        billable_from=d.billable_from,  # type: ignore[attr-defined]
        billable_hours=d.billable_hours,  # type: ignore[attr-defined]
        rate=d.rate,  # type: ignore[attr-defined]
        amount=d.amount,  # type: ignore[attr-defined]
        resource_id=d.resource_id,  # type: ignore[attr-defined]
        role=d.role,  # type: ignore[attr-defined]
        region=d.region,  # type: ignore[attr-defined]
        work_date=d.work_date,  # type: ignore[attr-defined]
    )


@BOUNDED
@given(
    entries=st.lists(entry_st, min_size=1, max_size=25),
    cap=st.one_of(st.none(), st.decimals(min_value=Decimal(100), max_value=Decimal(20000), places=2)),
    cap_hours=st.one_of(st.none(), st.decimals(min_value=Decimal(1), max_value=Decimal(150), places=2)),
    tolerance=st.sampled_from([Decimal(0), Decimal(5), Decimal("12.5")]),
    grouping=st.sampled_from(["role_and_region", "role", "resource"]),
    runs=st.integers(min_value=1, max_value=4),
    stale=st.booleans(),
)
def test_caps_hold_and_every_billable_hour_is_billed_once_or_held(
    entries: list,
    cap: Decimal | None,
    cap_hours: Decimal | None,
    tolerance: Decimal,
    grouping: str,
    runs: int,
    stale: bool,
) -> None:
    engagement = contract(cap, cap_hours, tolerance, grouping)
    consumption = Consumption()
    decisions = []
    for index, (hours, role, day) in enumerate(entries):
        # stale=True decides every entry against nothing consumed (as if posted concurrently): the
        # billing run must still keep the invoices under the caps.
        decision = decide_time_entry(
            time_entry(index, hours, role, day), engagement, Consumption() if stale else consumption
        )
        consumption = consumption.plus(decision)
        decisions.append(decision)

    unbilled = {d.source_id: as_charge(d) for d in decisions if d.billable}
    billed_hours: dict[str, Decimal] = {}
    run_held: dict[str, Decimal] = {}
    prior_fees, prior_hours = Decimal(0), Decimal(0)
    batches = [list(unbilled.values())[i::runs] for i in range(runs)]
    for number, batch in enumerate(batches):
        result = billing_run(
            engagement,
            invoice_id=f"inv-{number}",
            client_id="cl",
            project_id="prj",
            invoice_date=date(2026, 3, 31),
            charges=batch,
            prior=PriorBilling(fees={"contract": prior_fees}, hours={"contract": prior_hours}),
        )
        for billed in result.billed:
            assert billed.source_id not in billed_hours, "billed twice"
            billed_hours[billed.source_id] = billed.billable_hours
            run_held[billed.source_id] = billed.held_hours
        if result.invoice is not None:
            lines = result.invoice.lines
            assert result.invoice.total.amount == sum((line.amount for line in lines), Decimal(0))
            for line in lines:
                assert line.amount == round_money(line.quantity * line.rate, "USD")
            prior_fees += result.invoice.total.amount
            prior_hours += sum((line.quantity for line in lines), Decimal(0))
        # an invoice never takes the contract past its hard cap (cap + tolerance)
        if cap is not None:
            assert prior_fees <= hard_limit(cap, tolerance)
        if cap_hours is not None:
            assert prior_hours <= hard_limit(cap_hours, tolerance)

    for decision in decisions:
        # every approved billable hour: billed exactly once, or held with a reason
        billed = billed_hours.get(decision.source_id, Decimal(0))
        held = decision.held_hours + run_held.get(decision.source_id, Decimal(0))
        assert billed + held == decision.hours, decision
        if held:
            assert decision.decision is Decision.CAPPED or run_held[decision.source_id] > 0
            assert decision.reason


@BOUNDED
@given(
    entries=st.lists(entry_st, min_size=1, max_size=15),
    grouping=st.sampled_from(["role_and_region", "resource"]),
)
def test_rerating_and_rerunning_are_idempotent(entries: list, grouping: str) -> None:
    engagement = contract(Decimal(5000), None, Decimal(0), grouping)
    first, second = [], []
    consumption_a = consumption_b = Consumption()
    for index, (hours, role, day) in enumerate(entries):
        a = decide_time_entry(time_entry(index, hours, role, day), engagement, consumption_a)
        b = decide_time_entry(time_entry(index, hours, role, day), engagement, consumption_b)
        assert a == b
        first.append(a)
        second.append(b)
        consumption_a, consumption_b = consumption_a.plus(a), consumption_b.plus(b)
    charges = [as_charge(d) for d in first if d.billable]
    one = billing_run(
        engagement,
        invoice_id="i",
        client_id="c",
        project_id="p",
        invoice_date=date(2026, 3, 31),
        charges=charges,
    )
    two = billing_run(
        engagement,
        invoice_id="i",
        client_id="c",
        project_id="p",
        invoice_date=date(2026, 3, 31),
        charges=list(reversed(charges)),
    )
    assert one == two


@BOUNDED
@given(
    original=hours_st,
    corrected=st.one_of(st.none(), hours_st),
    role=st.sampled_from(ROLES),
    others=st.lists(st.tuples(hours_st, st.sampled_from(ROLES), st.integers(0, 27)), max_size=5),
)
def test_adjustments_net_to_the_corrected_amount(
    original: Decimal, corrected: Decimal | None, role: str, others: list
) -> None:
    engagement = contract(None, None, Decimal(0), "role_and_region")
    # other work on the second invoice is in other roles, so the entry's lines are its own
    others = [(h, r, d) for h, r, d in others if r != role]
    first = decide_time_entry(time_entry(0, original, role, 3), engagement)
    other_charges = [
        as_charge(decide_time_entry(time_entry(i + 1, h, r, d), engagement))
        for i, (h, r, d) in enumerate(others)
    ]
    invoice_one = billing_run(
        engagement,
        invoice_id="i1",
        client_id="c",
        project_id="p",
        invoice_date=date(2026, 3, 31),
        charges=[as_charge(first)],
    ).invoice
    assert invoice_one is not None
    billed_first = invoice_one.total.amount

    # the entry changes (or loses its approval) after it was invoiced
    if corrected is None:
        entry = TimeEntry.model_validate(
            time_entry(0, original, role, 3, version=2).model_dump() | {"status": "unapproved"}
        )
    else:
        entry = time_entry(0, corrected, role, 3, version=2)
    changed = decide_time_entry(entry, engagement)
    result = billing_run(
        engagement,
        invoice_id="i2",
        client_id="c",
        project_id="p",
        invoice_date=date(2026, 3, 31),
        charges=([as_charge(changed)] if changed.billable else []) + other_charges,
        reversals=[Reversal(as_charge(first), "i1", "changed")],
    )
    assert result.invoice is not None
    for_entry = sum((line.amount for line in result.invoice.lines if line.source_ids == ["te-0"]), Decimal(0))
    expected = round_money(corrected * first.rate, "USD") if corrected is not None else Decimal(0)
    # what was billed first + the credit + the re-bill = the corrected amount, exactly
    assert billed_first + for_entry == expected
