"""One invocation's reads: kept for the batch, except where what is recorded depends on every charge.

A batch keeps an engagement's charges it queried once and keeps them current with its own writes. A charge
another invocation records meanwhile is not in that copy: harmless for time and materials (an entry is
billed at its own rate; caps are checked again by the invoice run), not for a retainer's drawdown or
fixed-fee revenue by percent complete, where the flow asks for the charges fresh at every record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from r2r_core.flows.invocation_reads import InvocationReads
from r2r_core.flows.time_posting import depends_on_other_charges
from r2r_core.model.entities import BillingType, ClosedWonDeal, RevenueMethod
from r2r_core.state import StateStore
from tests.conftest import create_state_and_audit_tables

SCENARIO = Path(__file__).resolve().parents[2] / "events" / "scenarios" / "sold-to-billed"


@pytest.fixture
def store() -> Iterator[StateStore]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_and_audit_tables(ddb)
        yield StateStore("state", ddb)


def _charge(store: StateStore, entry_id: str) -> None:
    store.put_versioned(
        {"pk": "ENG#eng-1", "sk": f"CHARGE#{entry_id}", "version": 1, "decision": "invoiceable", "hours": 8}
    )


def test_a_batch_reads_the_charges_once_and_again_only_when_asked_fresh(store: StateStore) -> None:
    _charge(store, "te-1")
    reads = InvocationReads()
    first = reads.charges(store, "eng-1", "CHARGE#", ("decision", "hours"))
    assert set(first) == {"CHARGE#te-1"}
    _charge(store, "te-2")  # recorded by another invocation meanwhile
    assert set(reads.charges(store, "eng-1", "CHARGE#", ("decision", "hours"))) == {"CHARGE#te-1"}
    assert set(reads.charges(store, "eng-1", "CHARGE#", ("decision", "hours"), fresh=True)) == {
        "CHARGE#te-1",
        "CHARGE#te-2",
    }
    # What the batch records itself is in its copy without another query.
    reads.remember("eng-1", "CHARGE#", "CHARGE#te-3", {"pk": "ENG#eng-1", "sk": "CHARGE#te-3", "hours": 4})
    assert reads.charges(store, "eng-1", "CHARGE#", ("decision", "hours"))["CHARGE#te-3"]["hours"] == 4


def _engagement(**changes: Any) -> Any:
    body = json.loads((SCENARIO / "01-opportunity-closed-won.json").read_text())["body"]
    deal = ClosedWonDeal.model_validate(body["data"])
    return deal.engagement.model_copy(update=changes)


def test_retainers_and_fixed_fees_read_fresh_time_and_materials_keeps_the_batchs_copy() -> None:
    plain = _engagement(
        billing_type=BillingType.TIME_AND_MATERIALS, cap=None, cap_hours=None, budgets=[], retainer=None
    )
    assert not depends_on_other_charges(plain)
    # Caps are enforced again by the invoice run on the rounded lines: the batch's copy is enough.
    assert not depends_on_other_charges(plain.model_copy(update={"cap_hours": 100}))
    assert not depends_on_other_charges(
        plain.model_copy(update={"billing_type": BillingType.CAPPED_TIME_AND_MATERIALS})
    )
    assert not depends_on_other_charges(plain.model_copy(update={"billing_type": BillingType.MIXED}))
    # Prepaid drawdown and revenue to date are recorded at posting: they must see every charge.
    assert depends_on_other_charges(plain.model_copy(update={"billing_type": BillingType.RETAINER}))
    fixed_fee = plain.model_copy(update={"billing_type": BillingType.FIXED_FEE})
    assert depends_on_other_charges(
        fixed_fee.model_copy(update={"revenue_method": RevenueMethod.PERCENT_COMPLETE})
    )
    assert not depends_on_other_charges(
        fixed_fee.model_copy(update={"revenue_method": RevenueMethod.MILESTONE_ACCEPTANCE})
    )


def test_get_many_reads_present_and_absent_keys_100_per_call(store: StateStore) -> None:
    calls: list[int] = []
    store.client.meta.events.register(
        "before-parameter-build.dynamodb.BatchGetItem",
        lambda params, **_: calls.append(len(params["RequestItems"]["state"]["Keys"])),
    )
    for n in range(0, 150, 3):
        store.put({"pk": f"RES#r{n}", "sk": "HRIS", "status": "active", "version": 1})
    keys = [(f"RES#r{n}", "HRIS") for n in range(150)]

    found = store.get_many([*keys, keys[0]])  # a key twice is asked once

    assert calls == [100, 50]
    assert set(found) == set(keys)  # every key read: its item, or None when absent
    assert {key for key, item in found.items() if item is not None} == set(keys[::3])
    assert found[("RES#r3", "HRIS")] == store.get("RES#r3", "HRIS")


class _Unprocessing:
    """A DynamoDB client whose BatchGetItem leaves chosen keys unprocessed ``times`` times."""

    def __init__(self, items: dict[str, dict[str, Any]], stuck: set[str], times: int) -> None:
        self.items, self.stuck, self.times, self.calls = items, stuck, times, 0

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # boto3's parameter name
        self.calls += 1
        [(table, request)] = RequestItems.items()
        keys = [key["pk"]["S"] for key in request["Keys"]]
        left = [k for k in keys if k in self.stuck] if self.calls <= self.times else []
        answer = [self.items[k] for k in keys if k in self.items and k not in left]
        unprocessed = {table: {**request, "Keys": [{"pk": {"S": k}, "sk": {"S": "HRIS"}} for k in left]}}
        return {"Responses": {table: answer}, "UnprocessedKeys": unprocessed if left else {}}


def test_get_many_asks_again_for_unprocessed_keys_and_leaves_out_what_stays_unprocessed() -> None:
    items = {k: {"pk": {"S": k}, "sk": {"S": "HRIS"}, "status": {"S": "active"}} for k in ("RES#a", "RES#b")}
    keys = [("RES#a", "HRIS"), ("RES#b", "HRIS"), ("RES#c", "HRIS")]

    once = _Unprocessing(items, stuck={"RES#b", "RES#c"}, times=1)
    found = StateStore("state", once).get_many(keys)
    assert once.calls == 2 and set(found) == set(keys) and found[("RES#c", "HRIS")] is None
    assert found[("RES#b", "HRIS")] == {"pk": "RES#b", "sk": "HRIS", "status": "active"}

    always = _Unprocessing(items, stuck={"RES#b"}, times=99)
    found = StateStore("state", always).get_many(keys)
    assert always.calls == 3  # state.BATCH_GET_ATTEMPTS
    assert set(found) == {("RES#a", "HRIS"), ("RES#c", "HRIS")}  # RES#b not read: not answered


def test_expected_items_are_read_together_at_the_first_ask_and_absent_ones_remembered(
    store: StateStore,
) -> None:
    store.put({"pk": "RES#a", "sk": "HRIS", "status": "active", "version": 1})
    store.put({"pk": "RES#b", "sk": "HRIS", "status": "terminated", "version": 2})
    asked: list[str] = []
    store.client.meta.events.register(
        "before-parameter-build.dynamodb", lambda params, model, **_: asked.append(model.name)
    )
    reads = InvocationReads()
    reads.expect([("RES#a", "HRIS"), ("RES#b", "HRIS"), ("RES#none", "HRIS")])
    assert asked == []  # nothing read before it is needed

    assert reads.item(store, "RES#b", "HRIS") == store.get("RES#b", "HRIS")
    asked.clear()
    assert reads.item(store, "RES#a", "HRIS")["status"] == "active"
    assert reads.item(store, "RES#none", "HRIS") is None
    assert asked == []  # read with the first
    assert reads.item(store, "RES#other", "HRIS") is None  # not expected: read on its own
    assert asked == ["GetItem"]
