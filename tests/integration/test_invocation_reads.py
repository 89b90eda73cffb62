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
