"""Acceptance: a poison time entry rests in the time_posting DLQ, the contract is fixed, ``r2r dlq redrive``
moves it back, and it is processed exactly once (one timeBill, one charge, still one exception).

The engagement's rate card has no rate for a "Data Engineer" in EMEA, so the entry is a permanent
``BillingRuleError``: recorded once as an exception, the message fails every receive and after
maxReceiveCount (5) it is in the DLQ. A corrected closed-won deal (version 2, same engagement, with the rate)
fixes the terms; the redriven message is then billed at 150.00 × 6 h = 900.00.
"""

from __future__ import annotations

import copy
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.local.stack import LocalStack, write_json
from r2r_core.state import StateStore

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "sold-to-billed"
ENTRY_ID = "te-dana-data-2026-11-18"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]


def _closed_won(version: int, *, with_data_engineer: bool) -> dict[str, Any]:
    body = copy.deepcopy(json.loads((SCENARIO / "01-opportunity-closed-won.json").read_text())["body"])
    body["data"]["version"] = version
    if with_data_engineer:
        body["data"]["engagement"]["rate_card"]["rates"].append(
            {
                "role": "Data Engineer",
                "region": "EMEA",
                "rate": "150.00",
                "effective_from": "2026-01-01",
                "effective_to": "2026-12-31",
            }
        )
    return body


def _time_entry() -> dict[str, Any]:
    return {
        "type": "time_entry.approved",
        "timestamp": "2026-11-21T09:30:00Z",
        "data": {
            "id": ENTRY_ID,
            "version": 1,
            "engagement_id": "eng-acme-cloud-2026",
            "project_id": "prj-acme-cloud-2026",
            "resource_id": "res-dana-data",
            "assignment_id": "asg-dana-data-acme",
            "role": "Data Engineer",
            "region": "EMEA",
            "work_date": "2026-11-18",
            "hours": "6",
            "billable": True,
            "approved_at": "2026-11-21T09:30:00Z",
            "notes": "Data pipeline",
        },
    }


def _dlq_depth(stack: LocalStack, word: str) -> int:
    return sum(depth for name, depth in stack.queue_depths(dlq_only=True).items() if word in name)


def _wait(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _time_bills(stack: LocalStack) -> list[dict[str, Any]]:
    return [t for t in stack.erp_records().get("timeBill", []) if ENTRY_ID in str(t.get("externalId"))]


def _finance_inbox(stack: LocalStack) -> str:
    """An SQS queue subscribed to the exceptions topic, as finance would subscribe."""
    sns, sqs = stack.boto3_client("sns"), stack.boto3_client("sqs")
    [topic] = [t["TopicArn"] for t in sns.list_topics()["Topics"] if "ExceptionsTopic" in t["TopicArn"]]
    url = sqs.create_queue(QueueName="finance-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return str(url)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("redrive")
    local_json = tmp / "local.json"
    runner = CliRunner()
    result: dict[str, Any] = {}
    with LocalStack.start(ROOT, erp_db=tmp / "erp.sqlite") as stack:
        write_json(local_json, stack.describe())
        inbox = _finance_inbox(stack)
        assert (
            stack.post_webhook("crm", _closed_won(1, with_data_engineer=False), "msg_redrive_opp_v1").status
            == 202
        )
        stack.drain(timeout=60)
        assert stack.post_webhook("psa", _time_entry(), "msg_redrive_te_v1").status == 202
        _wait(lambda: _dlq_depth(stack, "TimePosting") == 1)
        stack.drain(timeout=60)
        result["before"] = stack.report()
        result["bills_before"] = _time_bills(stack)
        cli = ["--local-json", str(local_json)]
        result["list"] = runner.invoke(app, ["dlq", "list", "--json", *cli])
        result["show"] = runner.invoke(app, ["dlq", "show", "time_posting", "--json", *cli])
        # The contract is fixed: a corrected closed-won version with the rate.
        assert (
            stack.post_webhook("crm", _closed_won(2, with_data_engineer=True), "msg_redrive_opp_v2").status
            == 202
        )
        stack.drain(timeout=60)
        result["redrive"] = runner.invoke(app, ["dlq", "redrive", "time_posting", *cli])
        stack.drain(timeout=60)
        # A second redrive of an empty DLQ moves nothing.
        result["redrive_again"] = runner.invoke(app, ["dlq", "redrive", "time_posting", *cli])
        stack.drain(timeout=60)
        result["after"] = stack.report()
        [exception] = _ours(result["after"])
        result["exceptions_list"] = runner.invoke(app, ["exceptions", "list", "--json", *cli])
        result["resolve"] = runner.invoke(
            app,
            [
                "exceptions",
                "resolve",
                exception["id"][:10],
                "--by",
                "jane.finance",
                "--note",
                "rate added",
                *cli,
            ],
        )
        result["resolve_again"] = runner.invoke(
            app, ["exceptions", "resolve", exception["id"], "--by", "x", "--note", "y", *cli]
        )
        result["exceptions_show"] = runner.invoke(
            app, ["exceptions", "show", exception["id"], "--json", *cli]
        )
        result["open_after_resolve"] = runner.invoke(app, ["exceptions", "list", "--json", *cli])
        result["notices"] = [
            json.loads(m["Body"])
            for m in stack.boto3_client("sqs")
            .receive_message(QueueUrl=inbox, MaxNumberOfMessages=10)
            .get("Messages", [])
        ]
        # The milestone bills the redriven entry (once), and its lineage leads back to the deal.
        milestone = json.loads((SCENARIO / "19-milestone-completed.json").read_text())
        assert stack.post_webhook("psa", milestone["body"], "msg_redrive_ms").status == 202
        stack.drain(timeout=120)
        [invoice] = stack.report()["invoices"]
        result["invoice"] = invoice
        result["lineage"] = runner.invoke(app, ["lineage", "invoice", str(invoice["id"]), "--json", *cli])
        result["lineage_text"] = runner.invoke(app, ["lineage", "invoice", str(invoice["externalId"]), *cli])
        result["bills_after"] = _time_bills(stack)
        assert stack.local is not None
        store = StateStore(str(stack.local.table_for_env("STATE_TABLE_NAME")), stack.boto3_client("dynamodb"))
        result["charge"] = store.get("ENG#eng-acme-cloud-2026", f"CHARGE#{ENTRY_ID}")
    return result


def _ours(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in report["exceptions"] if e.get("source_record_id") == ENTRY_ID]


def test_the_poison_entry_rests_in_the_time_posting_dlq_with_one_exception(outcome: dict[str, Any]) -> None:
    before = outcome["before"]
    assert [d for name, d in before["dlq_depths"].items() if "TimePosting" in name] == [1]
    [exception] = _ours(before)
    assert exception["error_type"] == "BillingRuleError"
    assert "Data Engineer" in exception["error"]
    assert outcome["bills_before"] == []


def test_dlq_list_and_show_give_depth_source_and_business_summary(outcome: dict[str, Any]) -> None:
    assert outcome["list"].exit_code == 0, outcome["list"].output
    rows = {row["dlq"]: row for row in json.loads(outcome["list"].output)}
    [time_posting] = [row for name, row in rows.items() if "TimePosting" in name]
    assert time_posting["depth"] == 1
    assert time_posting["oldest_s"] is not None and time_posting["oldest_s"] >= 0
    [source] = time_posting["source"]
    assert "TimePosting" in source and "Dlq" not in source
    assert all(row["depth"] == 0 for name, row in rows.items() if "TimePosting" not in name)
    assert outcome["show"].exit_code == 0, outcome["show"].output
    [message] = json.loads(outcome["show"].output)
    assert message["event_type"] == "time_entry.approved"
    assert (message["source_record_id"], message["source_record_version"]) == (ENTRY_ID, 1)
    assert message["correlation_id"]
    assert message["receive_count"] >= 1
    assert "body" not in message  # the payload only with --raw


def test_redrive_moves_the_message_and_it_is_processed_exactly_once(outcome: dict[str, Any]) -> None:
    assert outcome["redrive"].exit_code == 0, outcome["redrive"].output
    assert "moved 1 message(s)" in outcome["redrive"].output
    assert "moved 0 message(s)" in outcome["redrive_again"].output
    after = outcome["after"]
    assert all(depth == 0 for depth in after["dlq_depths"].values())
    [bill] = outcome["bills_after"]
    assert float(bill["hours"]) == 6
    charge = outcome["charge"]
    assert charge is not None
    assert (Decimal(str(charge["amount"])), charge["decision"]) == (Decimal("900.00"), "invoiceable")
    assert len(_ours(after)) == 1  # still the one exception


def test_exceptions_list_show_and_resolve_with_an_append_only_audit(outcome: dict[str, Any]) -> None:
    listed = [
        e for e in json.loads(outcome["exceptions_list"].output) if e.get("source_record_id") == ENTRY_ID
    ]
    [open_one] = listed
    assert open_one["status"] == "open"
    assert (open_one["client_name"], open_one["project_id"]) == ("Acme Logistics", "prj-acme-cloud-2026")
    assert open_one["owner"] == "finance-ops/EMEA/Cloud Services"
    assert open_one["age_days"] is not None
    assert outcome["resolve"].exit_code == 0, outcome["resolve"].output
    assert "resolved by jane.finance" in outcome["resolve"].output
    assert outcome["resolve_again"].exit_code == 1
    assert "not open" in outcome["resolve_again"].output
    shown = json.loads(outcome["exceptions_show"].output)
    assert shown["exception"]["status"] == "resolved"
    assert (shown["exception"]["resolved_by"], shown["exception"]["resolution_note"]) == (
        "jane.finance",
        "rate added",
    )
    assert [entry["action"] for entry in shown["audit"]] == ["opened", "resolved"]
    still_open = json.loads(outcome["open_after_resolve"].output)
    assert all(e.get("source_record_id") != ENTRY_ID for e in still_open)


def test_the_redriven_entry_is_invoiced_once_and_its_lineage_leads_back_to_the_deal(
    outcome: dict[str, Any],
) -> None:
    invoice = outcome["invoice"]
    assert [(line["quantity"], line["rate"], line["amount"]) for line in invoice["lines"]][:1] == [
        ("6", "150.00", "900.00")
    ]
    assert invoice["total"] == "25900.00"  # 6 h × 150.00 + the 25000.00 milestone
    assert outcome["lineage"].exit_code == 0, outcome["lineage"].output
    doc = json.loads(outcome["lineage"].output)
    assert doc["invoice"]["erp_id"] == str(invoice["id"])
    time_line = next(line for line in doc["lines"] if line["kind"] == "time")
    [source] = time_line["sources"]
    assert source["id"] == ENTRY_ID
    charge = source["charge"]
    assert (charge["assignment_id"], charge["project_id"]) == ("asg-dana-data-acme", "prj-acme-cloud-2026")
    assert charge["status"] == "invoiced" and charge["erp_time_bill_external_id"]
    assert source["audit"], "the time entry's audit trail"
    assert doc["project"]["erp"]["external_id"] == "r2r-job-prj-acme-cloud-2026"
    assert doc["opportunity"] == {
        "id": "opp-0065g00000Jk1mN",
        "version": 2,
        "close_date": "2026-11-13",
        "name": "Acme Cloud Migration",
    }
    assert [e["action"] for e in doc["engagement"]["audit"]]
    text = outcome["lineage_text"]
    assert text.exit_code == 0, text.output
    assert ENTRY_ID in text.output and "opportunity opp-0065g00000Jk1mN v2" in text.output


def test_finance_is_notified_once_of_the_exception(outcome: dict[str, Any]) -> None:
    ours = [n for n in outcome["notices"] if ENTRY_ID in n["Message"]]
    assert len(ours) == 1, outcome["notices"]
    assert ours[0]["Subject"] == "r2r exception: time_posting_failed (Acme Logistics)"
