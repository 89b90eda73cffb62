"""The ingest function on moto: every answer of the webhook contract, and nothing accepted is lost."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from r2r_core.runtime import reset_clients, use_environ
from r2r_core.webhooks import sign
from tests.conftest import load_handler

SECRET = "whsec_" + base64.b64encode(b"integration-test-secret-psa-01").decode()
SAMPLES = Path(__file__).resolve().parents[2] / "events" / "samples"


@dataclass
class Context:
    function_name: str = "ingest"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ingest"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        reset_clients()
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="raw")
        ddb = boto3.client("dynamodb")
        for table, key in (("idem", "id"), ("audit", "pk")):
            schema = [{"AttributeName": key, "KeyType": "HASH"}]
            attrs = [{"AttributeName": key, "AttributeType": "S"}]
            if table == "audit":
                schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
                attrs.append({"AttributeName": "sk", "AttributeType": "S"})
            ddb.create_table(
                TableName=table, KeySchema=schema, AttributeDefinitions=attrs, BillingMode="PAY_PER_REQUEST"
            )
        secret_arn = boto3.client("secretsmanager").create_secret(
            Name="webhooks",
            SecretString=json.dumps({"psa": [SECRET], "crm": [SECRET], "_placeholder": SECRET}),
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
        env = {
            "RAW_BUCKET_NAME": "raw",
            "EVENT_BUS_NAME": "canonical",
            "IDEMPOTENCY_TABLE_NAME": "idem",
            "AUDIT_TABLE_NAME": "audit",
            "WEBHOOK_SECRETS_ARN": secret_arn,
            "AWS_REGION": "us-east-1",
        }
        with use_environ(env):
            yield {"s3": s3, "sqs": sqs, "queue_url": queue_url, "ddb": ddb}
        reset_clients()


def post(body: bytes, headers: dict[str, str], source: str = "psa") -> tuple[int, dict[str, Any]]:
    handler = load_handler("ingest_webhook")
    event = {
        "resource": "/v1/webhooks/{source}",
        "path": f"/v1/webhooks/{source}",
        "httpMethod": "POST",
        "headers": headers | {"Content-Type": "application/json"},
        "pathParameters": {"source": source},
        "body": body.decode("utf-8", errors="replace"),
        "isBase64Encoded": False,
    }
    response = handler.handler(event, Context())
    return response["statusCode"], json.loads(response["body"])


def published(aws: dict[str, Any]) -> list[dict[str, Any]]:
    messages = (
        aws["sqs"].receive_message(QueueUrl=aws["queue_url"], MaxNumberOfMessages=10).get("Messages", [])
    )
    return [json.loads(m["Body"]) for m in messages]


def sample_body(name: str = "time_entry.approved") -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


def test_signed_valid_delivery_is_archived_published_and_answered_202(aws: dict[str, Any]) -> None:
    body = sample_body()
    status, reply = post(body, sign(SECRET, "msg_ok", body))
    assert status == 202
    assert reply["type"] == "time_entry.approved" and reply["duplicate"] is False
    archived = aws["s3"].get_object(Bucket="raw", Key=reply["archived_as"])["Body"].read()
    assert archived == body
    [event] = published(aws)
    assert event["detail-type"] == "time_entry.approved"
    assert event["detail"]["event_id"] == reply["event_id"]
    assert event["detail"]["source_record_id"] == "te-maria-lopez-2026-11-16"
    assert event["detail"]["data"]["hours"] == "7.25"


def test_duplicate_delivery_is_acknowledged_with_the_same_event_id_and_not_published_again(
    aws: dict[str, Any],
) -> None:
    body = sample_body()
    _, first = post(body, sign(SECRET, "msg_dup", body))
    status, second = post(body, sign(SECRET, "msg_dup", body))
    assert status == 202
    assert second["event_id"] == first["event_id"] and second["duplicate"] is True
    assert len(published(aws)) == 1


def test_reused_webhook_id_with_another_body_is_a_conflict(aws: dict[str, Any]) -> None:
    body = sample_body()
    post(body, sign(SECRET, "msg_reuse", body))
    other = sample_body("milestone.completed")
    status, reply = post(other, sign(SECRET, "msg_reuse", other))
    assert status == 409 and reply["error"] == "webhook_id_reused"


def test_missing_or_wrong_signature_is_401_and_not_archived(aws: dict[str, Any]) -> None:
    body = sample_body()
    status, reply = post(body, {})
    assert status == 401 and "missing signature header" in reply["message"]
    wrong = "whsec_" + base64.b64encode(b"not-the-right-secret").decode()
    status, reply = post(body, sign(wrong, "msg_x", body))
    assert status == 401 and reply["message"] == "signature does not match"
    assert aws["s3"].list_objects_v2(Bucket="raw").get("KeyCount", 0) == 0
    assert published(aws) == []


def test_unknown_source_is_404(aws: dict[str, Any]) -> None:
    body = sample_body()
    status, reply = post(body, sign(SECRET, "msg_src", body), source="erp-x")
    assert status == 404 and "erp-x" in reply["message"]
    # The secret's deploy-time placeholder key is not a source, even with a matching signature.
    status, _ = post(body, sign(SECRET, "msg_src", body), source="_placeholder")
    assert status == 404


def test_malformed_json_is_400_and_the_raw_body_is_kept(aws: dict[str, Any]) -> None:
    body = b'{"type": "time_entry.approved", "data": '
    status, reply = post(body, sign(SECRET, "msg_bad_json", body))
    assert status == 400 and reply["error"] == "malformed_json"
    assert aws["s3"].get_object(Bucket="raw", Key=reply["archived_as"])["Body"].read() == body


def test_schema_violation_is_400_naming_each_offending_field(aws: dict[str, Any]) -> None:
    document = json.loads(sample_body())
    document["data"]["hours"] = "lots"
    del document["data"]["work_date"]
    body = json.dumps(document).encode()
    status, reply = post(body, sign(SECRET, "msg_schema", body))
    assert status == 400 and reply["error"] == "invalid_data"
    assert {d["field"] for d in reply["details"]} == {"data.hours", "data.work_date"}
    assert published(aws) == []


def test_unknown_event_type_is_422(aws: dict[str, Any]) -> None:
    document = json.loads(sample_body()) | {"type": "timesheet.submitted"}
    body = json.dumps(document).encode()
    status, reply = post(body, sign(SECRET, "msg_type", body))
    assert status == 422 and "timesheet.submitted" in reply["message"]


def test_body_over_one_megabyte_is_413_and_kept(aws: dict[str, Any]) -> None:
    document = json.loads(sample_body())
    document["data"]["notes"] = "x" * (1_048_576 + 10)
    body = json.dumps(document).encode()
    status, reply = post(body, sign(SECRET, "msg_big", body))
    assert status == 413 and reply["error"] == "payload_too_large"
    assert aws["s3"].head_object(Bucket="raw", Key=reply["archived_as"])["ContentLength"] == len(body)


def audit_items(aws: dict[str, Any], pk: str) -> list[dict[str, Any]]:
    items = aws["ddb"].query(
        TableName="audit", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}}
    )["Items"]
    return [{k: next(iter(v.values())) for k, v in item.items()} for item in items]


def test_an_update_from_a_non_owner_is_archived_audited_and_never_published(aws: dict[str, Any]) -> None:
    # Time entries belong to the PSA: the same signed, valid delivery from the CRM is not applied.
    body = sample_body()
    status, reply = post(body, sign(SECRET, "msg_not_owner", body), source="crm")
    assert status == 202
    assert (
        reply["ignored"] == "not_owner" and "crm (CRM) does not own time_entry.approved" in reply["message"]
    )
    assert aws["s3"].get_object(Bucket="raw", Key=reply["archived_as"])["Body"].read() == body
    assert published(aws) == []
    [record] = audit_items(aws, "ownership#time_entry.approved#te-maria-lopez-2026-11-16")
    assert record["action"] == "ignored_not_owner" and record["event_id"] == reply["event_id"]
    detail = json.loads(record["detail"])
    assert detail["source_system"] == "crm" and detail["path"] == "webhook"
    assert {"field": "hours", "owner": "PSA"} in detail["not_owned"]

    status, owner = post(body, sign(SECRET, "msg_owner", body), source="psa")  # the owner's goes through
    assert status == 202 and "ignored" not in owner
    [event] = published(aws)
    assert event["detail"]["source_system"] == "psa" and event["detail"]["event_id"] == owner["event_id"]
