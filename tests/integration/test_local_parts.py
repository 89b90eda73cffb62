"""Pieces of the local stack that need no servers: batch responses, records, signing, scenarios."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from infra.local import LocalStack, config
from infra.local.pollers import CrashPlan, _matches_filters, failed_message_ids, sqs_record
from infra.local.scenario import ScenarioError, invoice_summary, load_scenario, load_step
from infra.local.webhooks import signed_headers
from r2r_core import webhooks as core_webhooks

IDS = ["m1", "m2", "m3"]


@pytest.mark.parametrize("response", [None, {}, "", {"batchItemFailures": []}, {"batchItemFailures": None}])
def test_empty_batch_responses_mean_every_message_succeeded(response):
    assert failed_message_ids(response, IDS) == set()


def test_listed_items_fail_alone():
    response = {"batchItemFailures": [{"itemIdentifier": "m2"}]}

    assert failed_message_ids(response, IDS) == {"m2"}


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"itemIdentifier": "unknown"}]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"wrongKey": "m1"}]},
        ["not", "an", "object"],
    ],
)
def test_invalid_batch_responses_fail_the_whole_batch(response):
    assert failed_message_ids(response, IDS) == set(IDS)


def test_sqs_record_has_lambdas_shape():
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "rh",
        "Body": '{"a": 1}',
        "MD5OfBody": "md5",
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1", "Unrelated": "x"},
        "MessageAttributes": {
            "kind": {"StringValue": "x", "DataType": "String"},
            "blob": {"BinaryValue": b"\x00\x01", "DataType": "Binary"},
        },
    }

    record = sqs_record(message, "arn:aws:sqs:us-east-1:123456789012:q")

    assert record["messageId"] == "m1" and record["receiptHandle"] == "rh" and record["md5OfBody"] == "md5"
    assert record["attributes"] == {"ApproximateReceiveCount": "2", "SentTimestamp": "1"}
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "x",
        "binaryValue": None,
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AAE="
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == (
        "aws:sqs",
        "arn:aws:sqs:us-east-1:123456789012:q",
        "us-east-1",
    )


def test_filter_criteria_match_on_the_json_body():
    from moto.events.models import EventPattern

    patterns = [EventPattern.load(json.dumps({"body": {"detail-type": ["a"]}}))]
    record = {"body": json.dumps({"detail-type": "a"})}
    other = {"body": json.dumps({"detail-type": "b"})}

    assert _matches_filters(record, patterns)
    assert not _matches_filters(other, patterns)
    assert _matches_filters(other, [])


def test_local_signatures_verify_with_the_core_verifier():
    body = b'{"type": "x"}'

    headers = signed_headers("crm", "msg_1", body)

    assert core_webhooks.verify([config.WEBHOOK_SECRETS["crm"]], headers, body) == "msg_1"
    with pytest.raises(core_webhooks.WebhookAuthError):
        core_webhooks.verify([config.WEBHOOK_SECRETS["psa"]], headers, body)
    with pytest.raises(ValueError, match="no local signing secret"):
        signed_headers("nope", "msg_1", body)


def test_scenario_files_are_validated(tmp_path: Path):
    def write(name: str, document: object) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(document))
        return path

    step = load_step(write("07-ok.json", {"source": "psa", "body": {}, "expect_status": [202, 409]}))

    assert step.webhook_id == "msg_07-ok"
    assert step.expected(409) and not step.expected(200)
    assert load_step(write("08-any.json", {"source": "psa", "body": {}})).expected(204)
    with pytest.raises(ScenarioError, match="unknown keys"):
        load_step(write("x.json", {"source": "crm", "body": {}, "bdy": 1}))
    with pytest.raises(ScenarioError, match="'body'"):
        load_step(write("y.json", {"source": "crm"}))
    with pytest.raises(ScenarioError, match="does not exist"):
        load_step(write("z.json", {"source": "crm", "raw_body_file": "missing.xml"}))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScenarioError, match=r"no \*\.json"):
        load_scenario(empty)


def test_invoice_summary_reads_netsuite_sublists():
    record = {
        "id": "7",
        "externalId": "r2r-invoice-1",
        "entity": {"id": "3"},
        "currency": {"externalId": "USD"},
        "item": {
            "items": [
                {"item": {"id": "1"}, "description": "A", "quantity": 2, "rate": "10.50"},
                {"item": {"id": "1"}, "description": "B", "quantity": "1", "rate": "5", "amount": "5.00"},
            ]
        },
    }

    summary = invoice_summary(record)

    assert summary["entity"] == "3" and summary["currency"] == "USD"
    assert [line["amount"] for line in summary["lines"]] == ["21.00", "5.00"]
    assert summary["total"] == "26.00"


@pytest.mark.xdist_group("local")
def test_a_taken_port_base_fails_fast(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        template = tmp_path / "t.json"
        template.write_text(json.dumps({"Resources": {}}))

        with pytest.raises(RuntimeError, match=f"port {port} .* in use"):
            LocalStack.start(tmp_path, template=template, erp=False, port_base=port)


@pytest.mark.xdist_group("local")
def test_closing_stops_moto_and_puts_the_process_back(tmp_path: Path):
    import os

    import requests

    template = tmp_path / "t.json"
    template.write_text(json.dumps({"Resources": {}}))
    before = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "MOTO_PORT", "POWERTOOLS_TRACE_DISABLED")}

    with LocalStack.start(tmp_path, template=template, erp=False) as stack:
        endpoint = stack.aws_endpoint_url
        assert requests.get(endpoint + "/moto-api/data.json", timeout=5).ok
        assert "AWS_ENDPOINT_URL" not in os.environ  # only the functions' environment points at moto
        assert stack.api_url == "" and stack.drain(timeout=5, stable_s=0.1) < 5

    assert {k: os.environ.get(k) for k in before} == before
    with pytest.raises(requests.ConnectionError):
        requests.get(endpoint + "/moto-api/data.json", timeout=5)


def test_the_scheduler_ticks_rate_rules_on_their_period():
    import threading
    import time

    from infra.local.schedules import Scheduler, ScheduleSpec, ScheduleTarget, scheduled_event, target_payload

    ticks: list[str] = []
    stop = threading.Event()
    every_minute = ScheduleSpec("Every", "r2r-dev-Every", "arn:rule/every", "rate(1 minute)")
    nightly = ScheduleSpec("Nightly", "r2r-dev-Nightly", "arn:rule/nightly", "cron(0 2 * * ? *)")
    scheduler = Scheduler(
        [every_minute, nightly], lambda s: ticks.append(s.logical_id) or 1, stop, speedup=600
    )

    scheduler.start()
    time.sleep(0.35)
    stop.set()
    scheduler.join(2)

    assert 2 <= ticks.count("Every") <= 4  # every 0.1 s, the first one period after start
    assert "Nightly" not in ticks  # cron rules are ticked on demand only
    event = scheduled_event("arn:rule/every")
    assert (event["source"], event["detail-type"], event["resources"]) == (
        "aws.events",
        "Scheduled Event",
        ["arn:rule/every"],
    )
    assert json.loads(target_payload(ScheduleTarget("arn:q", input_path="$.detail"), event)) == {}
    assert target_payload(ScheduleTarget("arn:q", input='{"a": 1}'), event) == '{"a": 1}'


def test_an_armed_crash_fires_once_on_a_batch_larger_than_its_cut() -> None:
    plan = CrashPlan()
    assert plan.take("r2r-dev-TimePosting", 10) is None  # nothing armed
    plan.arm("r2r-dev-TimePosting", after_records=4)
    assert plan.take("r2r-dev-TimePosting", 4) is None  # no record would be left to lose
    assert plan.take("r2r-dev-ProjectSetup", 10) is None  # another consumer
    assert plan.take("r2r-dev-TimePosting", 10) == 4
    assert plan.take("r2r-dev-TimePosting", 10) is None  # once
    with pytest.raises(ValueError, match="at least 1"):
        plan.arm("r2r-dev-TimePosting", after_records=0)
