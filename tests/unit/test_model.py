import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from r2r_core.model.entities import ClosedWonDeal, Invoice, TimeEntry
from r2r_core.model.events import EVENT_TYPES, UnknownEventType, event_type

SAMPLES = Path(__file__).resolve().parents[2] / "events" / "samples"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())["data"]


def test_every_event_type_has_a_registered_model_and_version() -> None:
    assert {"opportunity.closed_won", "time_entry.approved", "milestone.completed", "invoice.created"} <= set(
        EVENT_TYPES
    )
    for kind in EVENT_TYPES.values():
        assert kind.schema_version == "1.0"


def test_unknown_event_type_lists_the_known_ones() -> None:
    with pytest.raises(UnknownEventType, match=r"time_entry\.approved"):
        event_type("timesheet.submitted")


def test_time_entry_errors_name_the_field() -> None:
    data = sample("time_entry.approved") | {"hours": "25"}
    with pytest.raises(ValidationError) as error:
        TimeEntry.model_validate(data)
    assert [e["loc"] for e in error.value.errors()] == [("hours",)]


def test_approval_time_must_carry_a_time_zone() -> None:
    data = sample("time_entry.approved") | {"approved_at": "2026-11-21T09:30:00"}
    with pytest.raises(ValidationError, match="approved_at"):
        TimeEntry.model_validate(data)


def test_amounts_are_decimal_and_floats_never_appear_in_json() -> None:
    entry = TimeEntry.model_validate(sample("time_entry.approved"))
    assert json.loads(entry.model_dump_json())["hours"] == "7.25"


def test_closed_won_deal_rejects_inconsistent_ids() -> None:
    data = sample("opportunity.closed_won")
    data["project"] = data["project"] | {"engagement_id": "another-engagement"}
    with pytest.raises(ValidationError, match=r"project\.engagement_id does not match"):
        ClosedWonDeal.model_validate(data)


def test_engagement_rate_card_must_be_in_the_contract_currency() -> None:
    data = sample("opportunity.closed_won")
    data["engagement"]["rate_card"]["currency"] = "EUR"
    with pytest.raises(ValidationError, match="differs from currency USD"):
        ClosedWonDeal.model_validate(data)


def test_invoice_total_must_equal_the_sum_of_its_lines() -> None:
    data = sample("invoice.created")
    data["total"] = {"amount": "30800.01", "currency": "USD"}
    with pytest.raises(ValidationError, match="not the sum of the lines"):
        Invoice.model_validate(data)
