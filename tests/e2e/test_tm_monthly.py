"""Acceptance: a time-and-materials contract billed monthly, with no milestone, is invoiced by the daily
period-end run on the embedded local stack (``events/scenarios/tm-monthly``), amounts worked out by hand.

Rate card (USD): Cloud Engineer EMEA 145.00; Cloud Engineer NA 162.50; Solution Architect NA 225.00.
October 2026, approved in October (so deferred to 1 November, the day after the period):
  Ana Costa    Cloud Engineer     EMEA  7.5 + 8 = 15.5 h × 145.00 = 2247.50
  Carl Jensen  Cloud Engineer     NA    2.35 h   × 162.50 = 381.875 → 381.88
  Ben Okafor   Solution Architect NA    6.25 h   × 225.00 = 1406.25
Invoice total: 2247.50 + 381.88 + 1406.25 = 4035.63 (no milestone line).
The scenario's last step is one tick of the daily ``billing_period_close`` schedule (at the wall clock, so
the last ended period is the month before today; October's time is billable by then whatever month it is
from November 2026 on). A second tick starts no second run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infra.local.stack import LocalStack
from r2r_core.flows.period_close import last_ended_period

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "tm-monthly"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    erp_db = tmp_path_factory.mktemp("erp") / "erp.sqlite"
    with LocalStack.start(ROOT, erp_db=erp_db) as stack:
        report = stack.run_scenario(SCENARIO)
        assert stack.tick("billing_period_close") == 1
        stack.drain(timeout=60)
        sfn = stack.boto3_client("stepfunctions")
        executions = [
            e["name"]
            for machine in sfn.list_state_machines()["stateMachines"]
            for e in sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
        ]
        return {"report": report, "after_second_tick": stack.report(), "executions": executions}


def test_every_delivery_is_accepted_and_the_stack_drains(outcome: dict[str, Any]) -> None:
    report = outcome["report"]
    assert report["ok"], report.get("drain_error")
    assert [d["status"] for d in report["deliveries"] if "status" in d] == [202] * 5


def test_one_invoice_for_the_ended_month_with_lines_and_total_worked_out_by_hand(
    outcome: dict[str, Any],
) -> None:
    [invoice] = outcome["report"]["invoices"]
    lines = [
        (line["description"], Decimal(line["quantity"]), Decimal(line["rate"]), Decimal(line["amount"]))
        for line in invoice["lines"]
    ]
    assert lines == [
        (
            "Cloud Engineer (EMEA) — time and materials",
            Decimal("15.5"),
            Decimal("145.00"),
            Decimal("2247.50"),
        ),
        ("Cloud Engineer (NA) — time and materials", Decimal("2.35"), Decimal("162.50"), Decimal("381.88")),
        (
            "Solution Architect (NA) — time and materials",
            Decimal("6.25"),
            Decimal("225.00"),
            Decimal("1406.25"),
        ),
    ]
    assert Decimal(invoice["total"]) == Decimal("4035.63")
    period_end = last_ended_period(datetime.now(UTC).date()).isoformat()
    assert invoice["externalId"] == f"r2r-invoice-eng-globex-ops-2026-period-{period_end}"


def test_a_second_tick_starts_no_second_run_and_no_second_invoice(outcome: dict[str, Any]) -> None:
    period_end = last_ended_period(datetime.now(UTC).date()).isoformat()
    assert outcome["executions"] == [f"eng-globex-ops-2026-period-{period_end}"]
    assert len(outcome["after_second_tick"]["invoices"]) == 1


def test_nothing_failed_nothing_waits_in_a_dlq(outcome: dict[str, Any]) -> None:
    report = outcome["after_second_tick"]
    assert report["exceptions"] == []
    assert report["dlq_depths"] and set(report["dlq_depths"].values()) == {0}
