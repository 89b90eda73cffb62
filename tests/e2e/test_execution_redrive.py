"""Acceptance: a milestone-to-invoice execution fails on a business error, becomes one exception for
finance, the cause is fixed, ``r2r executions redrive`` makes it succeed, and there is exactly one invoice.

Sold-to-billed's deal and Priya Sharma's week (33.5 h × 210.00 = 7035.00) are posted; the ERP sandbox
holds the milestone's invoice in a closed period, so the ``CreateInvoice`` step fails with
``ErpPermanentError`` (NetSuite ``CLOSED_PERIOD``) after the billing run was frozen. Finance reopens the
period; the redrive runs the same input again (locally; on AWS ``RedriveExecution`` resumes at
``CreateInvoice``) and the invoice is 7035.00 + the 25000.00 milestone = 32035.00, once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.local.stack import LocalStack, write_json

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "sold-to-billed"
INVOICE_EID = "r2r-invoice-eng-acme-cloud-2026-ms-discovery-signoff"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]


def _post(stack: LocalStack, file: str) -> None:
    step = json.loads((SCENARIO / file).read_text())
    assert stack.post_webhook(step["source"], step["body"], step.get("webhook_id")).status == 202
    stack.drain(timeout=60)


def _workflow_exceptions(stack: LocalStack) -> list[dict[str, Any]]:
    return [e for e in stack.exceptions() if e.get("kind") == "invoice_workflow_failed"]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("sfn-redrive")
    runner = CliRunner()
    result: dict[str, Any] = {}
    with LocalStack.start(ROOT, erp_db=tmp / "erp.sqlite") as stack:
        local_json = tmp / "local.json"
        write_json(local_json, stack.describe())
        cli = ["--local-json", str(local_json)]
        for file in sorted(p.name for p in SCENARIO.glob("0[1-6]-*.json")):
            _post(stack, file)
        stack.erp.mark_closed("invoice", external_id=INVOICE_EID)
        _post(stack, "19-milestone-completed.json")
        stack.drain(timeout=120)
        result["failed_list"] = runner.invoke(
            app, ["executions", "list", "--status", "FAILED", "--json", *cli]
        )
        [failed] = json.loads(result["failed_list"].output)
        result["failed"] = failed
        result["show"] = runner.invoke(app, ["executions", "show", failed["name"], "--json", *cli])
        result["show_text"] = runner.invoke(app, ["executions", "show", failed["execution_arn"], *cli])
        result["exceptions_before"] = _workflow_exceptions(stack)
        result["invoices_before"] = stack.erp_records().get("invoice", [])
        # Finance reopens the period.
        stack.erp.clear_faults()
        result["redrive"] = runner.invoke(app, ["executions", "redrive", failed["execution_arn"], *cli])
        stack.drain(timeout=120)
        result["redrive_again"] = runner.invoke(app, ["executions", "redrive", failed["name"], *cli])
        stack.drain(timeout=60)
        result["all"] = runner.invoke(app, ["executions", "list", "--json", *cli])
        result["invoices"] = stack.report()["invoices"]
        result["exceptions_after"] = _workflow_exceptions(stack)
    return result


def test_the_closed_period_fails_the_execution_at_create_invoice_with_one_exception(
    outcome: dict[str, Any],
) -> None:
    assert outcome["failed_list"].exit_code == 0, outcome["failed_list"].output
    assert outcome["failed"]["name"] == "eng-acme-cloud-2026-ms-discovery-signoff"
    shown = json.loads(outcome["show"].output)
    assert (shown["status"], shown["error"]) == ("FAILED", "ErpPermanentError")
    assert shown["failed_state"] == "CreateInvoice"
    assert shown["input"]["milestone_id"] == "ms-discovery-signoff"
    assert "closed" in str(shown["cause"]).lower()
    text = outcome["show_text"].output
    assert "failed in CreateInvoice: ErpPermanentError" in text
    [exception] = outcome["exceptions_before"]
    assert exception["execution_arn"] == outcome["failed"]["execution_arn"]
    assert outcome["invoices_before"] == []


def test_redrive_after_the_fix_succeeds_with_exactly_one_invoice(outcome: dict[str, Any]) -> None:
    assert outcome["redrive"].exit_code == 0, outcome["redrive"].output
    assert "runs again as" in outcome["redrive"].output
    executions = {e["name"]: e["status"] for e in json.loads(outcome["all"].output)}
    assert executions == {
        "eng-acme-cloud-2026-ms-discovery-signoff": "FAILED",
        "eng-acme-cloud-2026-ms-discovery-signoff-redrive-1": "SUCCEEDED",
    }
    [invoice] = outcome["invoices"]
    assert invoice["externalId"] == INVOICE_EID
    assert invoice["total"] == "32035.00"
    assert [line["amount"] for line in invoice["lines"]] == ["7035.00", "25000.00"]
    assert len(outcome["exceptions_after"]) == 1  # the one failure, recorded once


def test_a_second_redrive_of_a_redriven_execution_is_refused(outcome: dict[str, Any]) -> None:
    assert outcome["redrive_again"].exit_code == 1
    assert "already redriven" in outcome["redrive_again"].output
