"""The system-of-record configuration: complete for every event field, and what it decides."""

from __future__ import annotations

from typing import Any

import pytest

from r2r_core import ownership
from r2r_core.model.events import EVENT_TYPES
from r2r_core.ownership import CRM, ERP, HRIS, PSA, Seed, check, field_objects, owner_of, system_of


def test_every_field_of_every_event_type_has_an_owner() -> None:
    assert set(ownership.EVENT_OBJECTS) == set(EVENT_TYPES)
    for name, kind in EVENT_TYPES.items():
        objects = field_objects(name, tuple(kind.data_model.model_fields))
        for target in objects.values():
            obj = target.canonical_object if isinstance(target, Seed) else target
            assert obj in ownership.OWNER, f"{name}: {obj} is not in SYSTEM_OF_RECORD"


@pytest.mark.parametrize(
    ("obj", "system"),
    [
        ("client", ERP),
        ("financial_posting", ERP),
        ("invoice_status", ERP),
        ("assignment", PSA),
        ("time_entry", PSA),
        ("project", PSA),
        ("milestone", PSA),
        ("expense", PSA),
        ("resource", HRIS),
        ("cost_rate", HRIS),
        ("opportunity", CRM),
        ("engagement", CRM),
    ],
)
def test_the_reviewed_owners(obj: str, system: ownership.System) -> None:
    assert owner_of(obj) == system.value


def test_field_level_owners_of_one_event() -> None:
    objects = field_objects(
        "opportunity.closed_won", ("id", "name", "amount", "engagement", "client", "project")
    )
    assert objects["name"] == "opportunity" and objects["engagement"] == "engagement"
    assert objects["client"] == Seed("client", CRM) and "id" not in objects
    assert field_objects("resource.upserted", ("name", "cost_rate", "status")) == {
        "name": "resource",
        "cost_rate": "cost_rate",
        "status": "resource",
    }
    assert field_objects("invoice.created", ("total", "status"))["status"] == "invoice_status"


def test_source_names() -> None:
    assert system_of("salesforce") is CRM and system_of("certinia") is PSA and system_of("workday") is HRIS
    assert system_of("crm-emea") is CRM and system_of("psa_kantata") is PSA
    assert system_of("generic") is None
    assert system_of("r2r") is ownership.R2R and system_of("r2r", external=True) is None


def data(**fields: Any) -> dict[str, Any]:
    return {"id": "x-1", "version": 3, **fields}


def test_owner_update_is_accepted() -> None:
    assert check("time_entry.approved", "psa", data(hours="7.5", role="Dev")).accepted
    assert check(
        "resource.terminated", "workday", data(name="A", status="terminated", cost_rate=None)
    ).accepted
    assert check("invoice.status_changed", "erp", data(status="paid")).accepted
    deal = data(name="Deal", amount={}, engagement={}, client={}, project={})
    assert check("opportunity.closed_won", "salesforce", deal).accepted  # client/project: CRM seeds


def test_non_owner_update_names_each_field_and_its_owner() -> None:
    verdict = check("resource.upserted", "crm", data(name="Ada", cost_rate={"amount": "80"}, email=None))
    assert not verdict.accepted
    assert dict(verdict.not_owned) == {"name": "HRIS", "cost_rate": "HRIS"}  # email sent as None: not sent
    assert "crm (CRM) does not own resource.upserted fields" in verdict.reason
    assert check("invoice.status_changed", "crm", data(status="paid")).not_owned == (("status", "ERP"),)


def test_seeds_only_from_the_seeding_system_and_r2r_events_never_from_outside() -> None:
    verdict = check("opportunity.closed_won", "psa", data(name="Deal", client={}, project={}))
    assert ("client", "ERP (seeded by CRM)") in verdict.not_owned
    assert not check("revenue.recognized", "r2r", data(amount={}), external=True).accepted
    assert check("revenue.recognized", "r2r", data(amount={})).accepted
    assert not check("time_entry.approved", "generic", data(hours="1")).accepted
    assert not check("some.new_type", "psa", data(x=1)).accepted


def test_a_mixed_update_is_ignored_as_a_whole() -> None:
    # A PSA may not deliver the deal's commercial fields even with its own project inside it.
    verdict = check("opportunity.closed_won", "certinia", data(name="Deal", amount={}, project={}))
    assert not verdict.accepted
    assert {name for name, _ in verdict.not_owned} == {"name", "amount", "project"}


def test_integration_user_ids_from_context_are_checked() -> None:
    from infra.constructs.settings import _as_user_ids

    assert _as_user_ids(" 005000000000001AAA, 005000000000002 ") == "005000000000001AAA,005000000000002"
    assert _as_user_ids(["005000000000001AAA"]) == "005000000000001AAA" and _as_user_ids("") == ""
    with pytest.raises(ValueError, match="not a Salesforce user id"):
        _as_user_ids("0015g00000Gl0bXAAS")  # an account id, not a user
