"""Exceptions notify finance: an encrypted SSL-only topic of its own, whose ARN (EXCEPTIONS_TOPIC_ARN) and
publish rights go to exactly the functions that record exceptions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from infra.constructs.observability import EXCEPTION_RECORDERS
from tests.infra.helpers import functions_by_folder, of_type, ref_id

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
# What a handler calls when it records exceptions (through r2r_core.flows.exceptions and the consumer shape).
_RECORDS = re.compile(r"consume_canonical|consume\(|record_event_failure|record_execution_failure")


def _exceptions_topic(resources: dict[str, dict[str, Any]]) -> str:
    [topic_id] = [
        lid
        for lid, topic in of_type(resources, "AWS::SNS::Topic").items()
        if topic["Properties"].get("DisplayName") == "r2r exceptions for finance"
    ]
    return topic_id


def test_the_topic_is_encrypted_and_ssl_only(resources: dict[str, dict[str, Any]]) -> None:
    topic_id = _exceptions_topic(resources)
    assert ref_id(resources[topic_id]["Properties"]["KmsMasterKeyId"])
    denies = [
        statement
        for policy in of_type(resources, "AWS::SNS::TopicPolicy").values()
        if topic_id in json.dumps(policy["Properties"]["Topics"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
    ]
    assert denies


def test_functions_that_record_exceptions_get_the_topic_and_may_publish(
    resources: dict[str, dict[str, Any]],
) -> None:
    topic_id = _exceptions_topic(resources)
    functions = functions_by_folder(resources)
    policies = of_type(resources, "AWS::IAM::Policy")
    with_topic = set()
    for folder, (_lid, function) in functions.items():
        variables = function["Properties"]["Environment"]["Variables"]
        if "EXCEPTIONS_TOPIC_ARN" not in variables:
            continue
        with_topic.add(folder)
        assert ref_id(variables["EXCEPTIONS_TOPIC_ARN"]) == topic_id
        role_id = ref_id(function["Properties"]["Role"])
        statements = [
            s
            for p in policies.values()
            if role_id in json.dumps(p["Properties"]["Roles"])
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        ]
        publish = [s for s in statements if s["Action"] == "sns:Publish"]
        assert [ref_id(s["Resource"]) for s in publish] == [topic_id], folder
    assert with_topic == EXCEPTION_RECORDERS & set(functions)
    assert "ingest_webhook" not in with_topic and "invoice_workflow" not in with_topic


def test_every_handler_that_records_exceptions_is_listed() -> None:
    recording = {
        handler.parent.name
        for handler in FUNCTIONS_DIR.glob("*/handler.py")
        if _RECORDS.search(handler.read_text(encoding="utf-8"))
    }
    assert recording
    assert recording <= EXCEPTION_RECORDERS
