"""The salesforce_events function on moto with the Salesforce sandbox: one batch of change events in which a
poison message, a waiting record and a redelivery sit beside good events — only the waiting one is reported
failed, the poison is kept and recorded, the good ones are published once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.saas_sandbox import SalesforceSandbox
from r2r_core.runtime import reset_clients, use_environ
from r2r_core.state import StateStore
from tests.conftest import create_state_and_audit_tables, load_handler

CDC = Path(__file__).resolve().parents[2] / "events" / "salesforce" / "cdc"
OPP = "0065g00000Gx7bQAAS"


@dataclass
class Context:
    function_name: str = "salesforce-events"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:salesforce-events"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _sqs_record(body: bytes | str) -> dict[str, Any]:
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "rh",
        "body": body.decode() if isinstance(body, bytes) else body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:salesforce-events",
        "awsRegion": "us-east-1",
    }


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    with SalesforceSandbox() as crm, mock_aws():
        reset_clients()
        ddb = boto3.client("dynamodb")
        create_state_and_audit_tables(ddb)
        ddb.create_table(
            TableName="idem",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        boto3.client("s3").create_bucket(Bucket="raw")
        secret_arn = boto3.client("secretsmanager").create_secret(
            Name="sf", SecretString=json.dumps(crm.secret_values())
        )["ARN"]
        events = boto3.client("events")
        events.create_event_bus(Name="canonical")
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName="observer")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(
            Name="all", EventBusName="canonical", EventPattern=json.dumps({"source": ["r2r.canonical"]})
        )
        events.put_targets(Rule="all", EventBusName="canonical", Targets=[{"Id": "q", "Arn": queue_arn}])
        record = json.loads((CDC / "rest" / "01-opportunity-update-closed-won" / f"{OPP}.json").read_text())
        record.pop("attributes")
        crm.seed("Opportunity", record)
        card = json.loads(
            (CDC / "rest" / "14-timecard-update-unknown-project" / "a1D5g000000Tc10AAC.json").read_text()
        )
        card.pop("attributes")
        crm.seed("pse__Timecard_Header__c", card)
        env = {
            "RAW_BUCKET_NAME": "raw",
            "EVENT_BUS_NAME": "canonical",
            "IDEMPOTENCY_TABLE_NAME": "idem",
            "STATE_TABLE_NAME": "state",
            "AUDIT_TABLE_NAME": "audit",
            "SALESFORCE_SECRET_ARN": secret_arn,
            "SALESFORCE_BASE_URL": crm.url,
            "AWS_REGION": "us-east-1",
        }
        handler = load_handler("salesforce_events")
        handler._intake.cache_clear()
        with use_environ(env):
            yield {"handler": handler, "sqs": sqs, "queue_url": queue_url, "crm": crm, "ddb": ddb}
        handler._intake.cache_clear()
        reset_clients()


def test_a_poison_message_never_blocks_the_batch_and_only_the_waiting_record_is_retried(
    world: dict[str, Any],
) -> None:
    won = (CDC / "01-opportunity-update-closed-won.json").read_bytes()
    waiting = (CDC / "14-timecard-update-unknown-project.json").read_bytes()
    batch = [_sqs_record(won), _sqs_record(won[:200]), _sqs_record(waiting), _sqs_record(won)]
    answer = world["handler"].handler({"Records": batch}, Context())

    # Partial batch failure: the waiting record returns to the queue; the poison and the duplicate do not.
    assert answer == {"batchItemFailures": [{"itemIdentifier": batch[2]["messageId"]}]}
    messages = world["sqs"].receive_message(QueueUrl=world["queue_url"], MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["detail-type"] for m in messages] == ["opportunity.closed_won"]
    assert world["crm"].stats()["GET Opportunity"] == 1  # the redelivery re-read nothing

    exceptions = {e["kind"]: e for e in StateStore("state", world["ddb"]).exceptions()}
    assert set(exceptions) == {"connector_rejected", "connector_waiting"}
    poison = exceptions["connector_rejected"]
    assert poison["field"] == "(document)" and "not valid JSON" in poison["problem"]
    kept = boto3.client("s3").get_object(Bucket="raw", Key=poison["archived_as"])["Body"].read()
    assert kept == won[:200]  # the raw (truncated) event is kept
    assert "a1B5g000009ZzZ9AAK" in exceptions["connector_waiting"]["error"]
