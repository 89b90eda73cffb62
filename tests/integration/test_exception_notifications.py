"""Exceptions notify finance through SNS once, and only when ``EXCEPTIONS_TOPIC_ARN`` is set."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import pytest

from r2r_core.errors import BillingRuleError
from r2r_core.flows.exceptions import record_event_failure
from r2r_core.notify import exception_message
from r2r_core.runtime import use_environ
from tests.integration.test_billing_flows import (  # the same moto tables and scenario helpers
    envelope,
    ports,  # noqa: F401 - a fixture
    set_up,
)


def _subscribed_queue() -> tuple[str, str, Any]:
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="r2r-exceptions")["TopicArn"]
    url = sqs.create_queue(QueueName="finance-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, url, sqs


def _record(stores: dict[str, Any]) -> bool:
    return record_event_failure(
        envelope("12-time-maria-lopez-2026-11-16.json"),
        BillingRuleError("no rate for role 'Data Engineer'"),
        store=stores["store"],
        audit=stores["audit"],
        stage="time_posting",
    )


def test_a_new_exception_is_published_once_with_its_business_summary(
    ports: dict[str, Any],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_up(ports)
    topic, url, sqs = _subscribed_queue()
    monkeypatch.setenv("EXCEPTIONS_TOPIC_ARN", topic)
    assert _record(ports) is True
    assert _record(ports) is False  # the same failure again: no second exception, no second notice
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert len(messages) == 1
    notice = json.loads(messages[0]["Body"])
    assert notice["Subject"] == "r2r exception: time_posting_failed (Acme Logistics)"
    assert "Owner: finance-ops/EMEA/Cloud Services." in notice["Message"]
    assert "Error: BillingRuleError: no rate for role 'Data Engineer'" in notice["Message"]
    assert notice["MessageAttributes"]["kind"]["Value"] == "time_posting_failed"


def test_without_the_topic_nothing_is_published(ports: dict[str, Any]) -> None:  # noqa: F811
    set_up(ports)
    _topic, url, sqs = _subscribed_queue()
    with use_environ({k: v for k, v in os.environ.items() if k != "EXCEPTIONS_TOPIC_ARN"}):
        assert _record(ports) is True
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []


def test_the_message_names_amount_at_risk_and_where_to_look() -> None:
    subject, message = exception_message(
        {
            "id": "abc",
            "kind": "reconciliation_unbilled",
            "client_id": "acme",
            "amount_at_risk": "900.00",
            "currency": "USD",
        }
    )
    assert subject == "r2r exception: reconciliation_unbilled (acme)"
    assert "Amount at risk: 900.00 USD." in message
    assert message.endswith("r2r exceptions show abc")
