"""The warm path's caches give exactly what the plain code gives.

Rates, caps and reasons are remembered per engagement object (``day_terms``), segments per ``ErpMapping``
object, external ids and the fast path's validator per name; the rate string, the timeBill body and the
fraction check were rewritten. Each is checked here against the plain answer, at the edges where a cache
could be wrong: a rate changing on a date, two engagements (and two mappings) that look alike, an
assignment with and without an override, a copy with changes, errors, and the bounds.
"""

from __future__ import annotations

import gc
import json
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r2r_core.billing import decisions
from r2r_core.billing.decisions import Consumption, applicable_caps, day_terms, decide_time_entry
from r2r_core.billing.rates import resolve_rate
from r2r_core.erp import records
from r2r_core.erp.client import _dumps
from r2r_core.erp.mapping import ErpMapping
from r2r_core.errors import BillingRuleError
from r2r_core.flows import ingest
from r2r_core.flows.time_posting import time_bill_request
from r2r_core.memo import ObjectMemo
from r2r_core.model.entities import Engagement, TimeEntry

BOUNDED = settings(max_examples=200, deadline=None)


def card(rates: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": "rc-1", "name": "Card", "currency": "EUR", "rates": rates}


RATES = [
    {
        "role": "Consultant",
        "region": "EMEA",
        "rate": "100.00",
        "effective_from": "2026-01-01",
        "effective_to": "2026-03-31",
    },
    {"role": "Consultant", "region": "EMEA", "rate": "110.00", "effective_from": "2026-04-01"},
    {"role": "Architect", "region": "NA", "rate": "162.5", "effective_from": "2026-01-01"},
]


def engagement(**terms: Any) -> Engagement:
    doc: dict[str, Any] = {
        "id": "eng-1",
        "client_id": "cl-1",
        "name": "Contract",
        "billing_type": "time_and_materials",
        "currency": "EUR",
        "rate_card": card(RATES),
        "start_date": "2026-01-01",
        "region": "EMEA",
    }
    doc.update(terms)
    return Engagement.model_validate(doc)


def entry(**fields: Any) -> TimeEntry:
    doc: dict[str, Any] = {
        "id": "te-1",
        "version": 1,
        "engagement_id": "eng-1",
        "project_id": "prj-1",
        "resource_id": "res-1",
        "assignment_id": "asg-1",
        "role": "Consultant",
        "region": "EMEA",
        "work_date": date(2026, 3, 31),
        "hours": Decimal("7.50"),
        "approved_at": datetime(2026, 4, 2, 9, tzinfo=UTC),
    }
    doc.update(fields)
    return TimeEntry.model_validate(doc)


SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "time and materials": ({}, {}, {}),
    "rate changed on the next day": ({}, {"work_date": date(2026, 4, 1)}, {}),
    "deferred monthly": (
        {"billing_schedule": "monthly"},
        {"approved_at": datetime(2026, 3, 20, tzinfo=UTC), "work_date": date(2026, 3, 10)},
        {},
    ),
    "capped": (
        {
            "billing_type": "capped_time_and_materials",
            "cap": {"amount": "1000", "currency": "EUR"},
            "cap_tolerance_percent": "10",
        },
        {},
        {"amount": Decimal("700")},
    ),
    "budget capped, written off": (
        {
            "cap_policy": "write_off",
            "budgets": [{"id": "b-1", "po_number": "PO 7", "hours": "10", "effective_from": "2026-01-01"}],
        },
        {},
        {"budgets": {"b-1": (Decimal("900"), Decimal("9"))}},
    ),
    "retainer drawdown": (
        {"billing_type": "retainer", "retainer": {"prepaid": {"amount": "5000", "currency": "EUR"}}},
        {},
        {},
    ),
    "retainer overage": (
        {"billing_type": "retainer", "retainer": {"prepaid": {"amount": "5000", "currency": "EUR"}}},
        {},
        {"retainer_drawn": Decimal("4800")},
    ),
    "assignment override": (
        {
            "assignment_rates": [
                {
                    "assignment_id": "asg-1",
                    "rate": {"amount": "90.00", "currency": "EUR"},
                    "effective_from": "2026-03-01",
                }
            ]
        },
        {},
        {},
    ),
    "non-billable": ({}, {"billable": False}, {}),
    "withdrawn": ({}, {"status": "unapproved"}, {}),
    "outside dates": ({"end_date": "2026-03-30"}, {}, {}),
    "fixed fee": ({"billing_type": "fixed_fee"}, {}, {}),
}

# Rule and reason of each scenario as the plain code (before the caches, commit 0f18993) wrote them.
REASONS = {
    "time and materials": (
        "time-and-materials-at-rate",
        "7.50 h × 100.00 EUR (Consultant, EMEA, 100.00 EUR/h from project rate card rc-1 (in force "
        "from 2026-01-01) on 2026-03-31) = 750.00 EUR, invoiceable with the next invoice for the "
        "engagement.",
    ),
    "rate changed on the next day": (
        "time-and-materials-at-rate",
        "7.50 h × 110.00 EUR (Consultant, EMEA, 110.00 EUR/h from project rate card rc-1 (in force "
        "from 2026-04-01) on 2026-04-01) = 825.00 EUR, invoiceable with the next invoice for the "
        "engagement.",
    ),
    "deferred monthly": (
        "time-and-materials-at-rate-deferred-monthly",
        "7.50 h × 100.00 EUR (Consultant, EMEA, 100.00 EUR/h from project rate card rc-1 (in force "
        "from 2026-01-01) on 2026-03-10) = 750.00 EUR, deferred: billed monthly in arrears: waits "
        "for the period ending 2026-03-31 (billable from 2026-04-01).",
    ),
    "capped": (
        "capped-hold-for-approval",
        "7.50 h of Consultant (EMEA) on 2026-03-31 at 100.00 EUR/h from project rate card rc-1 (in "
        "force from 2026-01-01) reach the contract cap (cap plus 10 % tolerance): 4.00 h = 400.00 "
        "EUR fit and are invoiceable with the next invoice for the engagement; the 3.50 h over "
        "(350.00 EUR) are held for approval (a change order or a raised cap releases it).",
    ),
    "budget capped, written off": (
        "capped-write-off",
        "7.50 h of Consultant (EMEA) on 2026-03-31 at 100.00 EUR/h from project rate card rc-1 (in "
        "force from 2026-01-01) reach PO PO 7 (budget b-1) (cap plus 0 % tolerance): 1.00 h = "
        "100.00 EUR fit and are invoiceable with the next invoice for the engagement; the 6.50 h "
        "over (650.00 EUR) are written off, as the contract says.",
    ),
    "retainer drawdown": (
        "retainer-drawdown",
        "7.50 h of Consultant (EMEA) on 2026-03-31 at 100.00 EUR/h from project rate card rc-1 (in "
        "force from 2026-01-01) = 750.00 EUR, drawn down from the prepaid retainer (balance "
        "before: 5000.00 EUR); not invoiced again.",
    ),
    "retainer overage": (
        "retainer-overage-at-rate",
        "5.50 h × 100.00 EUR (Consultant, EMEA, 100.00 EUR/h from project rate card rc-1 (in force "
        "from 2026-01-01) on 2026-03-31) = 550.00 EUR, invoiceable with the next invoice for the "
        "engagement. 2.00 h were drawn down from the prepaid retainer, which is now used up; the "
        "other 5.50 h are overage billed at rate.",
    ),
    "assignment override": (
        "time-and-materials-at-rate",
        "7.50 h × 90.00 EUR (Consultant, EMEA, 90.00 EUR/h from the override agreed for assignment "
        "asg-1 (in force from 2026-03-01) on 2026-03-31) = 675.00 EUR, invoiceable with the next "
        "invoice for the engagement.",
    ),
    "non-billable": (
        "entry-marked-non-billable",
        "7.50 h of Consultant (EMEA) on 2026-03-31 were approved as non-billable: recorded as cost only.",
    ),
    "withdrawn": (
        "approval-withdrawn",
        "7.50 h of Consultant (EMEA) on 2026-03-31: the approval was withdrawn in the PSA, so they "
        "are not billed (anything already invoiced is credited).",
    ),
    "outside dates": (
        "outside-contract-dates",
        "7.50 h of Consultant (EMEA) on 2026-03-31: the work date is outside the contract period "
        "(2026-01-01 to 2026-03-30), so it cannot be billed under this contract.",
    ),
    "fixed fee": (
        "fixed-fee-billed-by-milestone",
        "7.50 h of Consultant (EMEA) on 2026-03-31: engagement eng-1 is fixed fee, so time is "
        "billed through its milestones, not by the hour.",
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_reason_is_word_for_word_what_the_plain_code_wrote(name: str) -> None:
    terms, fields, consumed = SCENARIOS[name]
    contract = engagement(**terms)
    for _ in range(2):  # cold, then from the engagement's remembered terms
        made = decide_time_entry(entry(**fields), contract, Consumption(**consumed))
        assert (made.rule, made.reason) == REASONS[name]


def fresh(contract: Engagement) -> Engagement:
    """An equal engagement that is another object: nothing remembered for it yet (the plain answer)."""
    copy = Engagement.model_validate(contract.model_dump())
    assert copy == contract and copy is not contract
    return copy


def test_remembered_decisions_equal_fresh_ones_across_a_rate_change_and_assignments() -> None:
    override = {
        "assignment_id": "asg-override",
        "rate": {"amount": "90.00", "currency": "EUR"},
        "effective_from": "2026-03-20",
        "effective_to": "2026-04-05",
    }
    contract = engagement(
        billing_type="capped_time_and_materials",
        cap={"amount": "20000", "currency": "EUR"},
        assignment_rates=[override],
        budgets=[
            {"id": "b-1", "hours": "150", "effective_from": "2026-01-01", "effective_to": "2026-03-31"},
            {"id": "b-2", "amount": {"amount": "9000", "currency": "EUR"}, "effective_from": "2026-04-01"},
        ],
    )
    warm, cold = Consumption(), Consumption()
    first = date(2026, 3, 15)
    for n in range(120):
        made = entry(
            id=f"te-{n}",
            work_date=first + timedelta(days=n % 30),  # 03-15 .. 04-13: across the rate change on 04-01
            role=("Consultant", "Architect")[n % 2],
            region=("EMEA", "NA")[n % 2],
            assignment_id=("asg-override", f"asg-{n}", None)[n % 3],
            hours=Decimal(25 + n * 7 % 600) / 100,
        )
        remembered = decide_time_entry(made, contract, warm)
        plain = decide_time_entry(made, fresh(contract), cold)
        assert asdict(remembered) == asdict(plain)
        warm, cold = warm.plus(remembered), cold.plus(plain)
    assert warm == cold


def test_day_terms_are_resolve_rate_and_applicable_caps_on_the_day() -> None:
    contract = engagement(
        assignment_rates=[
            {
                "assignment_id": "asg-1",
                "rate": {"amount": "90.00", "currency": "EUR"},
                "effective_from": "2026-04-01",
            }
        ],
        budgets=[{"id": "b-1", "hours": "10", "effective_from": "2026-01-01"}],
    )
    for day in (date(2026, 3, 31), date(2026, 4, 1), date(2026, 3, 31)):
        for assignment in ("asg-1", "asg-2", None):
            terms = day_terms(contract, "Consultant", "EMEA", day, assignment_id=assignment)
            plain = resolve_rate(contract, "Consultant", "EMEA", day, assignment_id=assignment)
            assert terms.rate == plain and terms.described == plain.describe()
            assert (list(terms.caps), terms.budget_id) == applicable_caps(contract, day)
    assert day_terms(
        contract, "Consultant", "EMEA", date(2026, 3, 31), assignment_id="asg-1"
    ).rate.rate == Decimal("100.00")  # the override starts the next day
    assert day_terms(
        contract, "Consultant", "EMEA", date(2026, 4, 1), assignment_id="asg-1"
    ).rate.rate == Decimal("90.00")
    assert day_terms(
        contract, "Consultant", "EMEA", date(2026, 4, 1), assignment_id="asg-2"
    ).rate.rate == Decimal("110.00")


def test_two_engagements_alike_but_for_their_rates_never_share_an_answer() -> None:
    cheap = engagement()
    dear = engagement(rate_card=card([{**RATES[0], "rate": "200.00"}, *RATES[1:]]))
    assert (cheap.id, cheap.version) == (dear.id, dear.version)  # same business id and version
    for contract, rate in ((cheap, "100.00"), (dear, "200.00"), (cheap, "100.00"), (dear, "200.00")):
        assert decide_time_entry(entry(), contract).rate == Decimal(rate)
    # A copy with changes is another object: it is asked afresh.
    raised = cheap.model_copy(update={"rate_card": dear.rate_card})
    assert decide_time_entry(entry(), raised).rate == Decimal("200.00")
    assert decide_time_entry(entry(), cheap).rate == Decimal("100.00")


def test_errors_are_not_remembered_and_say_the_same_every_time() -> None:
    contract = engagement()
    for _ in range(2):
        with pytest.raises(BillingRuleError, match="no rate for role 'Designer' in region 'EMEA'"):
            decide_time_entry(entry(role="Designer"), contract)
    overlapping = engagement(
        budgets=[
            {"id": "b-1", "hours": "10", "effective_from": "2026-01-01"},
            {"id": "b-2", "hours": "10", "effective_from": "2026-03-01"},
        ]
    )
    for _ in range(2):
        with pytest.raises(BillingRuleError, match="budgets b-1, b-2 all cover 2026-03-31"):
            decide_time_entry(entry(), overlapping)


def test_assignments_without_an_override_share_one_remembered_answer_and_the_table_is_bounded() -> None:
    contract = engagement()
    for n in range(300):
        decide_time_entry(entry(id=f"te-{n}", assignment_id=f"asg-{n}"), contract)
    assert len(decisions._DAY_TERMS.table(contract)) == 1  # not one per assignment
    for n in range(decisions._DAY_TERMS.max_keys + 50):
        decide_time_entry(entry(work_date=date(2026, 1, 1) + timedelta(days=n % 3000)), contract)
    assert len(decisions._DAY_TERMS.table(contract)) <= decisions._DAY_TERMS.max_keys


class Thing:
    """A weak-referenceable object (as pydantic models are)."""


def test_object_memo_tables_belong_to_one_live_object_and_are_bounded() -> None:
    memo = ObjectMemo(max_objects=2, max_keys=3)
    a, b = Thing(), Thing()
    memo.put(memo.table(a), "k", "a's answer")
    assert memo.table(b) == {} and memo.table(a) == {"k": "a's answer"}
    for n in range(5):
        memo.put(memo.table(a), n, n)
    assert list(memo.table(a)) == [2, 3, 4]  # the oldest went first
    c = Thing()
    memo.table(c)
    assert len(memo) == 2  # a's table was the oldest: dropped
    assert memo.table(a) == {}
    del b, c
    gc.collect()
    assert len(memo) == 1  # tables go with their objects
    with pytest.raises(ValueError):
        ObjectMemo(max_objects=0, max_keys=1)


def test_segments_are_remembered_per_mapping_region_and_business_unit() -> None:
    one = ErpMapping.from_secret(
        {"mapping": {"departments": {"EMEA": "4", "Cloud": "9"}, "classes": {"Cloud": "7"}}}
    )
    other = ErpMapping.from_secret({"mapping": {"departments": {"EMEA": "5"}, "locations": {"EMEA": "2"}}})
    for _ in range(2):
        for mapping in (one, other):
            for region in ("EMEA", "NA", None):
                for unit in ("Cloud", None):
                    remembered = mapping.segments(region, unit)
                    assert remembered == mapping._segments(region, unit)
                    assert remembered is mapping.segments(region, unit)
    assert one.segments("EMEA", "Cloud").as_fields() == {"department": {"id": "4"}, "class": {"id": "7"}}
    assert other.segments("EMEA", "Cloud").as_fields() == {"department": {"id": "5"}, "location": {"id": "2"}}
    assert one.segments("NA", "Cloud").as_fields() == {"department": {"id": "9"}, "class": {"id": "7"}}


def test_a_time_bill_body_from_segments_is_the_one_from_their_fields() -> None:
    mapping = ErpMapping.from_secret(
        {
            "mapping": {
                "departments": {"EMEA": "4"},
                "classes": {"Cloud": "7"},
                "service_items_by_role": {"Consultant": "31"},
            }
        }
    )
    made = entry()
    decision = decide_time_entry(made, engagement())
    body = time_bill_request(made, decision, job_id="4711", business_unit="Cloud", account=mapping)
    fields = mapping.segments("EMEA", "Cloud").as_fields()
    plain = records.time_bill_body(
        job_id="4711",
        employee_external_id=records.external_id("resource", made.resource_id),
        tran_date=made.work_date,
        hours=made.hours,
        rate=decision.rate,
        is_billable=True,
        item_id="31",
        memo="Consultant (EMEA) — time-and-materials-at-rate",
        segments=fields,
    )
    assert body == plain and _dumps(body) == _dumps(plain)
    assert list(body) == [
        "customer",
        "employee",
        "tranDate",
        "hours",
        "isBillable",
        "rate",
        "item",
        "memo",
        "department",
        "class",
    ]
    body["department"]["id"] = "changed"  # the body's references are its own
    assert mapping.segments("EMEA", "Cloud").as_fields()["department"] == {"id": "4"}
    with pytest.raises(ValueError, match="unknown segments: colour"):
        records.time_bill_body(
            job_id="1",
            employee_external_id="e",
            tran_date=date(2026, 1, 1),
            hours=Decimal(1),
            rate=None,
            is_billable=False,
            item_id=None,
            memo=None,
            segments={"colour": {"id": "1"}},
        )


def plain_rate_string(value: Decimal, places: int) -> str:
    """The rate string as it was written before (by the Decimal's exponent)."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -places:
        value = value.quantize(Decimal(1).scaleb(-places))
    return format(value, "f")


@BOUNDED
@given(
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**9), max_value=10**9, places=None)
    | st.sampled_from([Decimal("1E+2"), Decimal("0E-5"), Decimal("-0"), Decimal("162.5"), Decimal("7.125")]),
    st.integers(min_value=0, max_value=4),
)
def test_the_rate_string_is_the_one_read_from_the_exponent(value: Decimal, places: int) -> None:
    assert records._rate_string(value, places) == plain_rate_string(value, places)


def test_a_remembered_rate_string_is_per_decimal_object_and_places() -> None:
    rate = Decimal("162.5")
    assert [records._rate_string(rate, places) for places in (2, 0, 3, 2)] == [
        "162.50",
        "162.5",
        "162.500",
        "162.50",
    ]
    for equal in (Decimal("145.0"), Decimal("145.00"), Decimal("145.000"), Decimal("1.45E+2")):
        assert records._rate_string(equal, 2) == plain_rate_string(equal, 2)
        assert records._rate_string(equal, 2) == plain_rate_string(equal, 2)  # remembered: the same
    for n in range(records._RATE_TEXTS * 2):  # bounded
        records._rate_string(Decimal(n) / 8, 2)
    assert len(records._RATE_TEXT) <= records._RATE_TEXTS


def test_remembered_external_ids_are_the_computed_ones() -> None:
    for canonical in ("res-1", "res 1/ü", "x" * 300, "res-1"):
        assert records.external_id("resource", canonical) == records.external_id.__wrapped__(
            "resource", canonical
        )
    with pytest.raises(ValueError):
        records.external_id("resource", "")


json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(alphabet='0123456789.eE-+ ,:[]{}abcxyz"\\\t', max_size=12)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def has_fraction(value: Any) -> bool:
    if isinstance(value, Decimal):
        return True
    if isinstance(value, dict):
        return any(has_fraction(v) for v in value.values())
    if isinstance(value, list):
        return any(has_fraction(v) for v in value)
    return False


@BOUNDED
@given(json_value, st.sampled_from([None, 0, 2]), st.sampled_from([(", ", ": "), (",", ":")]))
def test_every_number_with_a_fraction_or_exponent_is_found(
    value: Any, indent: int | None, seps: tuple[str, str]
) -> None:
    """No false negatives: a body whose exact reading has a Decimal never takes the float-reading path."""
    body = json.dumps({"type": "x", "data": value}, indent=indent, separators=seps, default=str).encode()
    if has_fraction(json.loads(body, parse_float=Decimal)):
        assert ingest._has_fractional_number(body)


def test_decimal_strings_and_integers_keep_the_fast_path() -> None:
    body = json.dumps(
        {
            "type": "time_entry.approved",
            "data": {"hours": "7.10", "version": 3, "when": "2026-11-16T18:00:00Z", "n": [-1, 2]},
        }
    ).encode()
    assert not ingest._has_fractional_number(body)
    for number in ("7.10", "-0.5", "1e3", "-2E-1", "[1.5]"):
        assert ingest._has_fractional_number(body.replace(b"3", number.encode()))
