"""The ingest validates a webhook body once, straight from its bytes, and stays exact.

``parse_delivery`` takes pydantic-core's one-pass JSON validation only when that is exact (no JSON
number with a fraction or exponent, which pydantic-core reads through a float); every other body, and
every body in error, goes the exact way, so decimals keep every digit and errors name field and record
as they always have.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from r2r_core.flows.ingest import Rejected, parse_delivery
from r2r_core.model.entities import TimeEntry


def body(hours: Any = "7.10", **changes: Any) -> dict[str, Any]:
    delivery: dict[str, Any] = {
        "type": "time_entry.approved",
        "timestamp": "2026-11-16T18:00:00Z",
        "data": {
            "id": "te-1",
            "version": 3,
            "engagement_id": "eng-1",
            "project_id": "prj-1",
            "resource_id": "res-1",
            "role": "Cloud Engineer",
            "region": "EMEA",
            "work_date": "2026-11-16",
            "hours": hours,
            "approved_at": "2026-11-16T18:00:00Z",
            "notes": 'numbers in text stay text: "type": "x", 1.5, [2e3]',
        },
    }
    delivery.update(changes)
    return delivery


def test_decimal_strings_keep_their_exact_digits() -> None:
    delivery = parse_delivery(json.dumps(body("7.10")).encode())
    assert isinstance(delivery.data, TimeEntry)
    assert str(delivery.data.hours) == "7.10"
    assert delivery.type == "time_entry.approved" and delivery.data.version == 3


@pytest.mark.parametrize("number", ["7.10", "7.1e0", "0.25", "23.99", "1E1"])
def test_json_numbers_with_a_fraction_are_read_exactly_not_through_a_float(number: str) -> None:
    raw = json.dumps(body("HOURS")).replace('"HOURS"', number).encode()
    assert parse_delivery(raw).data.hours == Decimal(number)
    assert str(parse_delivery(raw).data.hours) == str(Decimal(number))


def test_a_long_decimal_is_refused_with_the_field_named_not_rounded_through_a_float() -> None:
    raw = json.dumps(body("HOURS")).replace('"HOURS"', "7.1000000000000000001").encode()
    with pytest.raises(Rejected) as refused:
        parse_delivery(raw)
    assert refused.value.code == "invalid_data"
    assert refused.value.message == "data is not a valid time_entry.approved record"
    assert [d["field"] for d in refused.value.details] == ["data.hours"]


def test_a_bad_record_names_the_field_the_way_it_always_has() -> None:
    with pytest.raises(Rejected) as refused:
        parse_delivery(json.dumps(body("25")).encode())
    assert refused.value.status == 400 and refused.value.code == "invalid_data"
    assert refused.value.details == [
        {"field": "data.hours", "problem": "Input should be less than or equal to 24"}
    ]


def test_a_bad_body_names_the_body_field() -> None:
    with pytest.raises(Rejected) as refused:
        parse_delivery(json.dumps(body(timestamp="2026-11-16T18:00:00")).encode())
    assert refused.value.code == "invalid_payload"
    assert [d["field"] for d in refused.value.details] == ["timestamp"]


def test_the_top_level_type_decides_even_when_data_has_a_type_field_first() -> None:
    delivery = {
        "data": {**body()["data"], "type": "resource.upserted"},
        **{k: v for k, v in body().items() if k != "data"},
    }
    with pytest.raises(Rejected) as refused:
        parse_delivery(json.dumps(delivery).encode())
    assert refused.value.code == "invalid_data"  # extra field "type" in a time entry: named, not misread
    assert [d["field"] for d in refused.value.details] == ["data.type"]


def test_unknown_types_and_malformed_bodies_are_refused_as_before() -> None:
    with pytest.raises(Rejected) as unknown:
        parse_delivery(json.dumps(body(type="time_entry.invented")).encode())
    assert unknown.value.status == 422 and unknown.value.code == "unknown_event_type"
    with pytest.raises(Rejected) as malformed:
        parse_delivery(b'{"type": "time_entry.approved", ')
    assert malformed.value.code == "malformed_json"
