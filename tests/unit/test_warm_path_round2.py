"""The second round of warm-path shortcuts gives exactly what the code before them gave.

The usual time decision (no retainer, no cap, no monthly schedule) is built by its own short path from the
day terms; a Decimal's text is taken from ``str`` where ``format`` gave it; work dates' text is remembered
per day; a timeBill body's item, memo and segments are remembered per mapping object; the body makes its
helpers' checks inline. Each is compared here with the plain answer, at the edges where it could differ.
"""

from __future__ import annotations

import gc
from dataclasses import asdict, fields, replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r2r_core.billing import decisions
from r2r_core.billing.decisions import ChargeDecision, Consumption, Decision, day_terms, decide_time_entry
from r2r_core.erp import records
from r2r_core.erp.mapping import ErpMapping, Segments
from r2r_core.flows import time_posting
from r2r_core.flows.time_posting import time_bill_request
from r2r_core.model.entities import Engagement, TimeEntry
from tests.unit.test_warm_caches import entry  # an approved entry of the engagements below

BOUNDED = settings(max_examples=200, deadline=None)
FIELD_NAMES = [f.name for f in fields(ChargeDecision)]


def engagement(currency: str = "EUR", rate: str = "100.00", **terms: Any) -> Engagement:
    doc: dict[str, Any] = {
        "id": "eng-1",
        "client_id": "cl-1",
        "name": "Contract",
        "billing_type": "time_and_materials",
        "currency": currency,
        "rate_card": {
            "id": "rc-1",
            "name": "Card",
            "currency": currency,
            "rates": [
                {"role": "Consultant", "region": "EMEA", "rate": rate, "effective_from": "2026-01-01"},
                {"role": "Architect", "region": "NA", "rate": "162.5", "effective_from": "2026-01-01"},
            ],
        },
        "start_date": "2026-01-01",
        "region": "EMEA",
    }
    doc.update(terms)
    return Engagement.model_validate(doc)


def general_path(
    made: TimeEntry, contract: Engagement, consumption: Consumption | None = None
) -> ChargeDecision:
    """The decision as the general path makes it (the day terms told it is not the usual case)."""
    original = decisions.day_terms

    def not_plain(*args: Any, **kwargs: Any) -> decisions.DayTerms:
        return replace(original(*args, **kwargs), plain=False)

    decisions.day_terms = not_plain  # type: ignore[assignment]
    try:
        return decide_time_entry(made, contract, consumption)
    finally:
        decisions.day_terms = original  # type: ignore[assignment]


hours_values = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(24), places=2) | st.sampled_from(
    [Decimal("7.5"), Decimal("7.50"), Decimal("8"), Decimal("1E+1"), Decimal("0.01"), Decimal("24.00")]
)


@BOUNDED
@given(
    hours=hours_values,
    currency=st.sampled_from(["EUR", "JPY", "KWD", "USD"]),
    rate=st.sampled_from(["100.00", "99.995", "1E+2", "0", "123.4567", "0.0001"]),
    day=st.integers(min_value=0, max_value=400),
)
def test_the_usual_decision_is_the_general_paths_field_for_field(
    hours: Decimal, currency: str, rate: str, day: int
) -> None:
    contract = engagement(currency, rate)
    made = entry(hours=hours, work_date=date(2026, 1, 1) + timedelta(days=day))
    assert day_terms(contract, "Consultant", "EMEA", made.work_date).plain
    usual = decide_time_entry(made, contract)
    general = general_path(made, contract)
    assert asdict(usual) == asdict(general) and usual == general
    assert str(usual.amount) == str(general.amount) and usual.reason == general.reason  # the same text
    assert sorted(vars(usual)) == sorted(FIELD_NAMES)  # every field, no other
    assert usual.decision is Decision.INVOICEABLE and usual.rule == "time-and-materials-at-rate"


@pytest.mark.parametrize(
    ("terms", "consumed"),
    [
        ({"billing_type": "retainer", "retainer": {"prepaid": {"amount": "500", "currency": "EUR"}}}, {}),
        (
            {"billing_type": "retainer", "retainer": {"prepaid": {"amount": "500", "currency": "EUR"}}},
            {"retainer_drawn": Decimal("500")},  # used up: overage at rate
        ),
        ({"billing_type": "capped_time_and_materials", "cap": {"amount": "700", "currency": "EUR"}}, {}),
        ({"cap_hours": "5"}, {}),
        ({"budgets": [{"id": "b-1", "hours": "100", "effective_from": "2026-01-01"}]}, {}),
        ({"billing_schedule": "monthly"}, {}),
    ],
)
def test_contracts_with_a_retainer_cap_budget_or_schedule_take_the_general_path(
    terms: dict[str, Any], consumed: dict[str, Any]
) -> None:
    contract = engagement(**terms)
    assert not day_terms(contract, "Consultant", "EMEA", date(2026, 3, 31)).plain
    made = entry(approved_at=datetime(2026, 3, 31, 18, tzinfo=UTC))
    assert decide_time_entry(made, contract, Consumption(**consumed)) == general_path(
        made, contract, Consumption(**consumed)
    )


def test_the_usual_path_is_not_taken_when_the_fields_do_not_add_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were a field added to ChargeDecision and not to the usual path, the general path decides."""
    monkeypatch.setattr(decisions, "_DECISION_FIELDS", decisions._DECISION_FIELDS | {"colour"})
    assert not day_terms(engagement(), "Consultant", "EMEA", date(2026, 3, 31)).plain


@BOUNDED
@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=None)
    | st.sampled_from(
        [Decimal("1E+2"), Decimal("-0"), Decimal("0E-7"), Decimal("1.000E-9"), Decimal("7.10")]
    ),
    st.booleans(),
)
def test_a_decimals_plain_text_is_format_f_and_its_str_is_format_empty(
    value: Decimal, capitals: bool
) -> None:
    with localcontext() as context:
        context.capitals = int(capitals)  # str writes "e" without capitals
        assert records._plain_text(value) == format(value, "f")
        assert f"{value!s}" == f"{value}"  # the reasons' text, as format("") wrote it


def test_a_days_text_is_its_isoformat_and_a_datetime_is_never_taken_for_a_day() -> None:
    day = date(2026, 11, 16)
    for _ in range(2):
        assert records._day_text(day) == "2026-11-16" == records._day_text(date(2026, 11, 16))
    # Equal instants with other offsets are equal datetimes, and their text is their own.
    utc = datetime(2026, 11, 16, 12, tzinfo=UTC)
    cet = datetime(2026, 11, 16, 13, tzinfo=timezone(timedelta(hours=1)))
    assert utc == cet
    assert records._day_text(utc) == utc.isoformat() and records._day_text(cet) == cet.isoformat()
    for n in range(records._DAY_TEXTS * 2):  # bounded
        assert records._day_text(day + timedelta(days=n)) == (day + timedelta(days=n)).isoformat()
    assert len(records._DAY_TEXT) <= records._DAY_TEXTS


def plain_body(
    made: TimeEntry, decision: ChargeDecision, mapping: ErpMapping, unit: str | None
) -> dict[str, Any]:
    """The timeBill body as time_bill_request built it before the refs were remembered."""
    billable = decision.billable
    return records.time_bill_body(
        job_id="4711",
        employee_external_id=records.external_id("resource", made.resource_id),
        tran_date=made.work_date,
        hours=made.hours,
        rate=decision.rate if billable else None,
        is_billable=billable,
        item_id=mapping.item_for("time", made.role) if billable else None,
        memo=f"{made.role} ({made.region}) — {decision.rule}",
        segments=mapping._segments(made.region, unit).as_fields(),
    )


def test_remembered_time_bill_refs_are_per_mapping_role_region_unit_rule_and_billable() -> None:
    one = ErpMapping.from_secret(
        {
            "mapping": {
                "service_items_by_role": {"Consultant": "31", "Architect": "32"},
                "items": {"time": "30"},
                "departments": {"EMEA": "4", "Cloud": "9"},
                "classes": {"Cloud": "7"},
            }
        }
    )
    other = ErpMapping.from_secret({"mapping": {"items": {"time": "40"}, "locations": {"EMEA": "2"}}})
    assert one.model_dump() != other.model_dump()
    contract = engagement()
    made = [
        entry(),
        entry(billable=False),
        entry(role="Architect", region="NA"),
        entry(status="unapproved"),
        entry(work_date=date(2025, 12, 31)),  # outside the contract: another rule
    ]
    for _ in range(2):
        for mapping in (one, other):
            for unit in ("Cloud", None):
                for each in made:
                    decision = decide_time_entry(each, contract)
                    body = time_bill_request(
                        each, decision, job_id="4711", business_unit=unit, account=mapping
                    )
                    assert body == plain_body(each, decision, mapping, unit)
    usual = decide_time_entry(made[0], contract)
    billable = time_bill_request(made[0], usual, job_id="1", business_unit="Cloud", account=one)
    assert (
        billable["item"] == {"id": "31"}
        and billable["memo"] == "Consultant (EMEA) — time-and-materials-at-rate"
    )
    cost_only = decide_time_entry(made[1], contract)
    not_billable = time_bill_request(made[1], cost_only, job_id="1", business_unit="Cloud", account=one)
    assert "item" not in not_billable and "rate" not in not_billable
    assert not_billable["memo"] == "Consultant (EMEA) — entry-marked-non-billable"
    # A copy with changes is another object: asked afresh.
    changed = one.model_copy(update={"service_items_by_role": {"Consultant": "99"}})
    body = time_bill_request(made[0], usual, job_id="1", business_unit="Cloud", account=changed)
    assert body["item"] == {"id": "99"}


def test_one_rule_billable_and_not_gets_its_own_refs() -> None:
    """Over a cap, the same rule is billable while some hours fit and not once nothing does."""
    mapping = ErpMapping.from_secret({"mapping": {"service_items_by_role": {"Consultant": "31"}}})
    contract = engagement(billing_type="capped_time_and_materials", cap={"amount": "1000", "currency": "EUR"})
    made = entry(hours=Decimal("8"))
    for consumed in ("900", "1000", "900", "1000"):
        decision = decide_time_entry(made, contract, Consumption(amount=Decimal(consumed)))
        assert decision.rule == "capped-hold-for-approval"
        body = time_bill_request(made, decision, job_id="4711", business_unit=None, account=mapping)
        assert body == plain_body(made, decision, mapping, None)
        assert ("item" in body) is decision.billable is (consumed == "900")


def test_the_time_bill_refs_table_is_bounded_and_goes_with_its_mapping() -> None:
    mapping = ErpMapping.from_secret({"mapping": {"departments": {"EMEA": "4"}}})
    contract = engagement()
    for n in range(time_posting._TIME_BILL_REFS.max_keys + 20):
        made = entry(region="EMEA")
        decision = replace(decide_time_entry(made, contract), rule=f"rule-{n}")
        time_bill_request(made, decision, job_id="1", business_unit=None, account=mapping)
    assert len(time_posting._TIME_BILL_REFS.table(mapping)) == time_posting._TIME_BILL_REFS.max_keys
    tables = time_posting._TIME_BILL_REFS._tables
    key = id(mapping)
    assert key in tables
    del mapping
    gc.collect()
    assert key not in tables


def test_segments_fields_from_validated_constructed_and_copied_segments() -> None:
    built = [
        Segments.model_validate({"department_id": "4", "location_id": "2"}),
        Segments.model_construct(class_id="7"),
        Segments(),
        Segments(department_id="4").model_copy(update={"class_id": "7"}),
    ]
    assert [segments.as_fields() for segments in built] == [
        {"department": {"id": "4"}, "location": {"id": "2"}},
        {"class": {"id": "7"}},
        {},
        {"department": {"id": "4"}, "class": {"id": "7"}},
    ]
    first, second = built[0].as_fields(), built[0].as_fields()
    assert first == second and first["department"] is not second["department"]  # fresh every time


def test_item_for_is_the_role_then_the_kind_then_the_default() -> None:
    mapping = ErpMapping.from_secret(
        {"mapping": {"service_items_by_role": {"Consultant": "31"}, "items": {"time": "30", "default": "1"}}}
    )
    assert mapping.item_for("time", "Consultant") == "31"
    assert mapping.item_for("time", "Designer") == "30"
    assert mapping.item_for("expense", "Consultant") == "1"
    assert mapping.item_for("time", None) == "30"
    assert ErpMapping().item_for("time", "Consultant") == "1"


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"hours": 1.5}, TypeError, "must be Decimal, got float"),
        ({"hours": True}, TypeError, "must be Decimal, got bool"),
        ({"hours": Decimal("NaN")}, ValueError, "not a finite number"),
        ({"hours": Decimal("Infinity")}, ValueError, "not a finite number"),
        ({"hours": Decimal(0)}, ValueError, "hours must be positive"),
        ({"hours": 0}, ValueError, "hours must be positive"),
        ({"employee_external_id": ""}, ValueError, "employee_external_id must not be empty"),
        ({"job_id": ""}, ValueError, "a reference needs an internal id"),
    ],
)
def test_a_time_bill_body_refuses_what_it_refused_before(
    changes: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {
        "job_id": "5",
        "employee_external_id": "e",
        "tran_date": date(2026, 1, 1),
        "hours": Decimal("1"),
        "rate": None,
        "is_billable": False,
        "item_id": None,
        "memo": None,
    }
    with pytest.raises(error, match=message):
        records.time_bill_body(**{**arguments, **changes})


def test_a_time_bill_body_takes_integer_hours_and_ids_as_before() -> None:
    body = records.time_bill_body(
        job_id=4711,  # type: ignore[arg-type]  # an int id is sent as its text, as _ref did
        employee_external_id="e",
        tran_date=date(2026, 1, 1),
        hours=8,  # type: ignore[arg-type]
        rate=Decimal("1E+2"),
        is_billable=True,
        item_id=31,  # type: ignore[arg-type]
        memo="m",
        segments={"department": {"id": "4"}},
    )
    assert body == {
        "customer": {"id": "4711"},
        "employee": {"externalId": "e"},
        "tranDate": "2026-01-01",
        "hours": "8",
        "isBillable": True,
        "rate": "100.00",
        "item": {"id": "31"},
        "memo": "m",
        "department": {"id": "4"},
    }
