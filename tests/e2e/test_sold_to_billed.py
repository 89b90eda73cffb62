"""Acceptance: the sold-to-billed scenario on the embedded local stack, amounts worked out by hand.

Rate card (USD): Solution Architect EMEA 210.00; Cloud Engineer EMEA 145.00; Cloud Engineer NA 162.50.
Week of 16–20 Nov 2026:
  Priya Sharma   Solution Architect EMEA  8 + 7.5 + 8 + 6 + 4    = 33.5 h  × 210.00 = 7035.00
  Tom Becker     Cloud Engineer     EMEA  8 + 8 + 8 + 8 + 8      = 40 h    × 145.00 = 5800.00
  Maria Lopez    Cloud Engineer     NA    7.25 + 8 + 8 + 8 + 6.5 = 37.75 h × 162.50 = 6134.375 → 6134.38
  Tom Becker     2 h internal training, non-billable: a timeBill at cost, never invoiced
  Milestone "Discovery and migration plan signed off": 25000.00
Invoice total: 5800.00 + 6134.38 + 7035.00 + 25000.00 = 43969.38
One delivery (Maria, 18 Nov) arrives twice with the same webhook-id: it changes nothing.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infra.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "sold-to-billed"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    erp_db = tmp_path_factory.mktemp("erp") / "erp.sqlite"
    with LocalStack.start(ROOT, erp_db=erp_db) as stack:
        return stack.run_scenario(SCENARIO)


def test_every_delivery_is_accepted_and_the_stack_drains(report: dict[str, Any]) -> None:
    assert report["ok"], report.get("drain_error")
    assert [d["status"] for d in report["deliveries"]] == [202] * 19


def test_the_duplicate_delivery_gets_the_original_event_id(report: dict[str, Any]) -> None:
    by_file = {d["file"]: d["response"] for d in report["deliveries"]}
    original = by_file["14-time-maria-lopez-2026-11-18.json"]
    duplicate = by_file["18-duplicate-delivery-maria-lopez-2026-11-18.json"]
    assert duplicate["event_id"] == original["event_id"]
    assert (original["duplicate"], duplicate["duplicate"]) == (False, True)


def test_erp_holds_one_customer_one_project_and_one_time_bill_per_entry(report: dict[str, Any]) -> None:
    records = report["erp"]["records"]
    assert len(records["customer"]) == 1
    assert records["customer"][0]["companyName"] == "Acme Logistics plc"
    assert len(records["job"]) == 1
    assert records["job"][0]["parent"]["id"] == records["customer"][0]["id"]
    time_bills = records["timeBill"]
    assert len(time_bills) == 16  # 15 billable days + 1 non-billable entry; the duplicate added none
    assert len({t["externalId"] for t in time_bills}) == 16
    billable = [t for t in time_bills if t["isBillable"]]
    hours = Counter()
    for bill in billable:
        hours[bill["employee"]["externalId"]] += Decimal(str(bill["hours"]))
    assert hours == {
        "r2r-resource-res-priya-sharma": Decimal("33.5"),
        "r2r-resource-res-tom-becker": Decimal("40"),
        "r2r-resource-res-maria-lopez": Decimal("37.75"),
    }
    [non_billable] = [t for t in time_bills if not t["isBillable"]]
    assert Decimal(str(non_billable["hours"])) == Decimal(2)


def test_one_invoice_with_lines_and_total_worked_out_by_hand(report: dict[str, Any]) -> None:
    [invoice] = report["invoices"]
    lines = [
        (line["description"], Decimal(line["quantity"]), Decimal(line["rate"]), Decimal(line["amount"]))
        for line in invoice["lines"]
    ]
    assert lines == [
        ("Cloud Engineer (EMEA) — time and materials", Decimal("40"), Decimal("145.00"), Decimal("5800.00")),
        ("Cloud Engineer (NA) — time and materials", Decimal("37.75"), Decimal("162.50"), Decimal("6134.38")),
        (
            "Solution Architect (EMEA) — time and materials",
            Decimal("33.5"),
            Decimal("210.00"),
            Decimal("7035.00"),
        ),
        (
            "Milestone: Discovery and migration plan signed off",
            Decimal("1"),
            Decimal("25000.00"),
            Decimal("25000.00"),
        ),
    ]
    assert Decimal(invoice["total"]) == Decimal("43969.38")
    assert invoice["externalId"] == "r2r-invoice-eng-acme-cloud-2026-ms-discovery-signoff"


def test_nothing_failed_nothing_waits_in_a_dlq(report: dict[str, Any]) -> None:
    assert report["exceptions"] == []
    assert report["dlq_depths"] and set(report["dlq_depths"].values()) == {0}
