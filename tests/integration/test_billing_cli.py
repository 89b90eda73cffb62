"""``r2r billing explain`` against a running local stack (the synthesized template on moto)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "sold-to-billed"

pytestmark = [pytest.mark.xdist_group("local"), pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def local_json(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Given a local stack that received the closed-won deal, one billable and one non-billable entry
    work = tmp_path_factory.mktemp("billing-cli")
    scenario = work / "scenario"
    scenario.mkdir()
    for name in (
        "01-opportunity-closed-won.json",
        "12-time-maria-lopez-2026-11-16.json",
        "17-time-tom-becker-training-non-billable.json",
    ):
        shutil.copy(SCENARIO / name, scenario / name)
    with LocalStack.start(ROOT, erp_db=work / "erp.sqlite") as stack:
        report = stack.run_scenario(scenario)
        assert report["ok"], report.get("drain_error")
        path = work / "local.json"
        path.write_text(json.dumps(stack.describe()))
        yield path


def test_explain_prints_the_decision_rule_and_reason_of_a_billable_entry(local_json: Path) -> None:
    result = CliRunner().invoke(
        app, ["billing", "explain", "te-maria-lopez-2026-11-16", "--local-json", str(local_json)]
    )
    assert result.exit_code == 0, result.output
    assert "decision:" in result.output and "invoiceable" in result.output
    assert "time-and-materials-at-rate" in result.output
    # 7.25 h × 162.50 = 1178.125 → 1178.13 USD
    assert "1178.13 USD" in result.output
    assert "project rate card rc-global-2026" in result.output


def test_explain_says_why_an_entry_was_not_billed(local_json: Path) -> None:
    result = CliRunner().invoke(
        app, ["billing", "explain", "te-tom-becker-2026-11-20-training", "--local-json", str(local_json)]
    )
    assert result.exit_code == 0, result.output
    assert "non_billable" in result.output and "entry-marked-non-billable" in result.output
    assert "recorded as cost only" in result.output


def test_explain_json_and_unknown_entries(local_json: Path) -> None:
    as_json = CliRunner().invoke(
        app, ["billing", "explain", "te-maria-lopez-2026-11-16", "--json", "--local-json", str(local_json)]
    )
    assert json.loads(as_json.output)["amount"] == "1178.13"
    unknown = CliRunner().invoke(app, ["billing", "explain", "te-nobody", "--local-json", str(local_json)])
    assert unknown.exit_code == 1
    assert "no billing decision recorded for time entry te-nobody" in unknown.output


def test_explain_without_a_running_stack_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["billing", "explain", "te-1", "--local-json", str(tmp_path / "local.json")]
    )
    assert result.exit_code != 0
    assert "r2r local up" in result.output
