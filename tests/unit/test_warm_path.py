"""The warm path's shortcuts give exactly what the plain code gives: decisions and ERP request bytes."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from r2r_core.billing.decisions import ChargeDecision, Decision, _charge_decision, decide_time_entry
from r2r_core.erp.client import _ENCODER, _dumps
from r2r_core.model.entities import ClosedWonDeal, TimeEntry

ROOT = Path(__file__).resolve().parents[2]


def test_a_decision_built_on_the_warm_path_is_the_dataclass_built_plainly() -> None:
    deal = ClosedWonDeal.model_validate(
        json.loads((ROOT / "events" / "samples" / "opportunity.closed_won.json").read_text())["data"]
    )
    entry = TimeEntry.model_validate(
        json.loads((ROOT / "events" / "samples" / "time_entry.approved.json").read_text())["data"]
    )
    decision = decide_time_entry(entry, deal.engagement)
    plain = ChargeDecision(**asdict(decision))
    assert decision == plain and hash(decision) == hash(plain) and repr(decision) == repr(plain)
    assert replace(decision, rule="other").rule == "other"
    with pytest.raises(AttributeError):
        decision.rule = "changed"  # type: ignore[misc]  # still frozen


def test_the_warm_path_constructor_refuses_unknown_and_missing_fields_like_init() -> None:
    base = {
        "kind": "time",
        "source_id": "te-1",
        "version": 1,
        "currency": "USD",
        "work_date": date(2026, 11, 16),
        "billable_from": date(2026, 11, 16),
        "resource_id": "res-1",
    }
    made = _charge_decision(base, {"decision": Decision.NON_BILLABLE, "rule": "r", "reason": "why"})
    assert made == ChargeDecision(**base, decision=Decision.NON_BILLABLE, rule="r", reason="why")
    assert made.hours == Decimal(0) and made.budget_id is None
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        _charge_decision(base, {"decision": Decision.NON_BILLABLE, "rule": "r", "reason": "", "colour": 1})
    with pytest.raises(TypeError, match="reason"):
        _charge_decision(base, {"decision": Decision.NON_BILLABLE, "rule": "r"})


@pytest.mark.parametrize(
    "body",
    [
        {"hours": Decimal("7.10"), "tranDate": date(2026, 11, 16), "memo": "Cloud Engineer (NA) — rate"},
        {"nested": [{"a": None, "b": True, "c": 1}], "text": 'quotes " and \\ and \u2028'},
        {},
    ],
)
def test_erp_request_bytes_are_those_of_the_json_encoder(body: dict[str, object]) -> None:
    assert _dumps(body) == _ENCODER.encode(body).encode("utf-8")


def test_erp_request_bytes_refuse_what_the_encoder_refuses() -> None:
    with pytest.raises(ValueError):
        _dumps({"rate": float("nan")})
    with pytest.raises(ValueError, match="non-finite"):
        _dumps({"rate": Decimal("Infinity")})
    with pytest.raises(TypeError, match="cannot serialise"):
        _dumps({"when": object()})


def test_the_c_encoder_is_dropped_where_cpython_builds_it_differently(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``c_make_encoder`` is private: another Python's signature or bytes must not reach NetSuite."""
    import json.encoder

    from r2r_core.erp import client

    assert client._ENCODER.encode(client._SAMPLE_BODY) == client._SAMPLE_JSON  # the bytes it must give
    assert client._c_encoder() is not None  # this interpreter: the same bytes as the plain encoder

    def other_signature(*args: object) -> object:
        raise TypeError(f"make_encoder() takes 10 arguments ({len(args)} given)")

    monkeypatch.setattr(json.encoder, "c_make_encoder", other_signature)
    assert client._c_encoder() is None

    def other_bytes(*_args: object) -> object:
        return lambda body, _level: iter(['{"a": "different"}'])

    monkeypatch.setattr(json.encoder, "c_make_encoder", other_bytes)
    assert client._c_encoder() is None
    monkeypatch.delattr(json.encoder, "c_make_encoder")
    assert client._c_encoder() is None
