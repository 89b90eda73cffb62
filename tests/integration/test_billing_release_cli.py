"""``r2r billing release`` against a running local stack: time held over a cap is billed by the next run.

``events/scenarios/tm-monthly`` with the contract capped at 20 h (hold for approval): Ana's 15.5 h fit,
Ben's 6.25 h only 4.5 h (1.75 h held), Carl's 2.35 h not at all. Finance releases Ben's entry; the period-end
run then bills 15.5 h × 145.00 = 2247.50 and 6.25 h × 225.00 = 1406.25: 3653.75 (without the release:
3260.00).
"""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "tm-monthly"

pytestmark = [pytest.mark.xdist_group("local"), pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("billing-release")
    scenario = work / "scenario"
    scenario.mkdir()
    for path in sorted(SCENARIO.glob("0[1-5]-*.json")):  # the deal and October's time, no tick
        shutil.copy(path, scenario / path.name)
    deal_file = scenario / "01-opportunity-closed-won.json"
    deal = json.loads(deal_file.read_text())
    deal["body"]["data"]["engagement"].update(
        {"billing_type": "capped_time_and_materials", "cap_hours": "20"}
    )
    deal_file.write_text(json.dumps(deal))
    with LocalStack.start(ROOT, erp_db=work / "erp.sqlite") as stack:
        report = stack.run_scenario(scenario)
        assert report["ok"], report.get("drain_error")
        local_json = work / "local.json"
        local_json.write_text(json.dumps(stack.describe()))
        runner = CliRunner()
        args = ["--by", "finance@northwind", "--note", "CO-7", "--local-json", str(local_json)]
        released = runner.invoke(app, ["billing", "release", "te-ben-okafor-2026-10-07", *args])
        again = runner.invoke(app, ["billing", "release", "te-ben-okafor-2026-10-07", *args])
        not_held = runner.invoke(app, ["billing", "release", "te-ana-costa-2026-10-05", *args])
        explained = runner.invoke(
            app, ["billing", "explain", "te-ben-okafor-2026-10-07", "--local-json", str(local_json)]
        )
        stack.tick("billing_period_close")
        stack.drain(timeout=60)
        return {
            "released": released,
            "again": again,
            "not_held": not_held,
            "explained": explained,
            "invoices": stack.report()["invoices"],
        }


def test_release_says_what_the_next_invoice_bills(outcome: dict[str, Any]) -> None:
    result = outcome["released"]
    assert result.exit_code == 0, result.output
    assert "1.75 h more billable" in result.output and "6.25 h = 1406.25 USD" in result.output
    assert "cap-released-by-approval" in outcome["explained"].output
    assert "Released over the cap by finance@northwind" in outcome["explained"].output


def test_release_refuses_what_is_not_held(outcome: dict[str, Any]) -> None:
    for result in (outcome["again"], outcome["not_held"]):
        assert result.exit_code == 1 and "no hours held over a cap" in result.output


def test_the_next_run_bills_the_released_hours_over_the_cap(outcome: dict[str, Any]) -> None:
    [invoice] = outcome["invoices"]
    assert [(line["quantity"], line["amount"]) for line in invoice["lines"]] == [
        ("15.5", "2247.50"),
        ("6.25", "1406.25"),
    ]
    assert Decimal(invoice["total"]) == Decimal("3653.75")
