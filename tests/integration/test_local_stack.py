"""The local stack's machinery on a small hand-written template (no CDK, no ERP sandbox).

Given a template shaped like CDK's output (bus -> rule -> queue with DLQ -> consumer with
partial batch failures; API route -> function; state machine -> in-process Lambda; default-bus
rule on aws.states FAILED -> queue -> router), when the stack runs it, then every wire works.
"""

from __future__ import annotations

import http.client
import json
import textwrap
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import requests

from infra.local import DrainTimeout, LocalStack
from infra.local.scenario import ScenarioError

pytestmark = [pytest.mark.xdist_group("local"), pytest.mark.timeout(120)]

CONSUMER = """
import json
import time

from r2r_core.runtime import aws_client, environ


def handler(event, context):
    table = environ()["STATE_TABLE_NAME"]
    dynamodb = aws_client("dynamodb")
    failures = []
    for record in event["Records"]:
        detail = json.loads(record["body"])["detail"]
        time.sleep(detail.get("sleep", 0))
        dynamodb.update_item(
            TableName=table,
            Key={"pk": {"S": "THING#" + detail["id"]}, "sk": {"S": "SEEN"}},
            UpdateExpression="ADD attempts :one SET #rec = :record, #left = :remaining",
            ExpressionAttributeNames={"#rec": "rec", "#left": "left"},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":record": {"S": json.dumps(record)},
                ":remaining": {"N": str(context.get_remaining_time_in_millis())},
            },
        )
        if detail.get("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""

API = """
import base64
import hashlib
import hmac
import json

from r2r_core.runtime import aws_client, environ


def handler(event, context):
    secrets = json.loads(
        aws_client("secretsmanager").get_secret_value(SecretId=environ()["WEBHOOK_SECRETS_ARN"])["SecretString"]
    )
    headers = {k.lower(): v for k, v in (event["headers"] or {}).items()}
    source = event["pathParameters"]["source"]
    key = base64.b64decode(secrets[source][0].removeprefix("whsec_"))
    signed = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.{event['body']}".encode()
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    status = 202 if headers.get("webhook-signature") == expected else 401
    echo = {"event": event, "function": context.function_name, "bus": environ()["EVENT_BUS_NAME"]}
    return {"statusCode": status, "headers": {"X-Echo": "yes"}, "body": json.dumps(echo)}
"""

WORKFLOW = """
class ContractInvalid(Exception):
    pass


def handler(event, context):
    state = event["state"]
    if state.get("fail"):
        raise ContractInvalid("engagement has no signed contract")
    return {**state, "step": event["step"], "execution_id": event["execution_id"], "done": True}
"""

ROUTER = """
import json

from r2r_core.runtime import aws_client, environ


def handler(event, context):
    for record in event["Records"]:
        detail = json.loads(record["body"])["detail"]
        aws_client("dynamodb").put_item(
            TableName=environ()["STATE_TABLE_NAME"],
            Item={
                "pk": {"S": "EXC#" + detail["name"]},
                "sk": {"S": "EXC"},
                "execution_arn": {"S": detail["executionArn"]},
                "error": {"S": detail["error"] or ""},
                "status": {"S": detail["status"]},
            },
        )
"""

ASL_HEAD = '{"StartAt":"ValidateContract","States":{"ValidateContract":{"Type":"Task",'
ASL_TAIL = (
    '"Resource":"arn:aws:states:::lambda:invoke","Parameters":{"FunctionName":"${WorkflowFunctionArn}",'
    '"Payload":{"step":"validate_contract","state.$":"$","execution_id.$":"$$.Execution.Id"}},'
    '"OutputPath":"$.Payload","End":true}}}'
)


def _function(source: str, env: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "AWS::Lambda::Function",
        "Metadata": {"r2r:source": f"functions/{source}"},
        "DependsOn": ["FnRole"],
        "Properties": {
            "Handler": "handler.handler",
            "Runtime": "python3.13",
            "Timeout": 30,
            "MemorySize": 256,
            "Role": {"Fn::GetAtt": ["FnRole", "Arn"]},
            "Environment": {"Variables": {"STAGE": "dev", **env}},
        },
    }


def _mapping(queue: str, function: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]},
            "FunctionName": {"Ref": function},
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 2},
        },
    }


def _queue_pair(name: str) -> dict[str, Any]:
    return {
        f"{name}Dlq": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "MessageRetentionPeriod": 1209600,
                "RedriveAllowPolicy": {"redrivePermission": "allowAll"},
            },
        },
        f"{name}Queue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "VisibilityTimeout": 180,
                "MessageRetentionPeriod": 345600,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [f"{name}Dlq", "Arn"]},
                    "maxReceiveCount": 2,
                },
            },
        },
    }


def hand_template() -> dict[str, Any]:
    api_uri = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":apigateway:",
                {"Ref": "AWS::Region"},
                ":lambda:path/2015-03-31/functions/",
                {"Fn::GetAtt": ["ApiFn", "Arn"]},
                "/invocations",
            ],
        ]
    }
    resources: dict[str, Any] = {
        "FnRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}},
        "FnLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 7}},
        "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "r2r-dev-canonical"}},
        "BusArchive": {
            "Type": "AWS::Events::Archive",
            "Properties": {"SourceArn": {"Fn::GetAtt": ["Bus", "Arn"]}},
        },
        "StateTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
                "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
            },
        },
        "RawBucket": {
            "Type": "AWS::S3::Bucket",
            "Properties": {"VersioningConfiguration": {"Status": "Enabled"}},
        },
        "WebhookSecrets": {"Type": "AWS::SecretsManager::Secret", "Properties": {"GenerateSecretString": {}}},
        **_queue_pair("Consumer"),
        **_queue_pair("Failures"),
        "ConsumerRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "EventBusName": {"Ref": "Bus"},
                "EventPattern": {"source": ["r2r.canonical"], "detail-type": ["thing.happened"]},
                "State": "ENABLED",
                "Targets": [{"Arn": {"Fn::GetAtt": ["ConsumerQueue", "Arn"]}, "Id": "Target0"}],
            },
        },
        "PollRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "ScheduleExpression": "rate(15 minutes)",
                "State": "ENABLED",
                "Targets": [
                    {
                        "Arn": {"Fn::GetAtt": ["ConsumerQueue", "Arn"]},
                        "Id": "Target0",
                        "Input": json.dumps({"detail": {"id": "tick"}}),
                    }
                ],
            },
        },
        "ConsumerFn": _function("consumer", {"STATE_TABLE_NAME": {"Ref": "StateTable"}}),
        "ConsumerMapping": _mapping("ConsumerQueue", "ConsumerFn"),
        "ApiFn": _function(
            "api",
            {"WEBHOOK_SECRETS_ARN": {"Ref": "WebhookSecrets"}, "EVENT_BUS_NAME": {"Ref": "Bus"}},
        ),
        "ApiFnPermission": {"Type": "AWS::Lambda::Permission", "Properties": {}},
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "r2r-dev-webhooks"}},
        "ApiV1": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {
                "ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
                "PathPart": "v1",
                "RestApiId": {"Ref": "Api"},
            },
        },
        "ApiV1Webhooks": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {"ParentId": {"Ref": "ApiV1"}, "PathPart": "webhooks", "RestApiId": {"Ref": "Api"}},
        },
        "ApiV1WebhooksSource": {
            "Type": "AWS::ApiGateway::Resource",
            "Properties": {
                "ParentId": {"Ref": "ApiV1Webhooks"},
                "PathPart": "{source}",
                "RestApiId": {"Ref": "Api"},
            },
        },
        "ApiV1WebhooksSourcePost": {
            "Type": "AWS::ApiGateway::Method",
            "Properties": {
                "HttpMethod": "POST",
                "ResourceId": {"Ref": "ApiV1WebhooksSource"},
                "RestApiId": {"Ref": "Api"},
                "AuthorizationType": "NONE",
                "Integration": {"IntegrationHttpMethod": "POST", "Type": "AWS_PROXY", "Uri": api_uri},
            },
        },
        "ApiDeployment": {
            "Type": "AWS::ApiGateway::Deployment",
            "DependsOn": ["ApiV1WebhooksSourcePost"],
            "Properties": {"RestApiId": {"Ref": "Api"}},
        },
        "ApiStage": {
            "Type": "AWS::ApiGateway::Stage",
            "Properties": {
                "RestApiId": {"Ref": "Api"},
                "DeploymentId": {"Ref": "ApiDeployment"},
                "StageName": "dev",
            },
        },
        "WorkflowFn": _function("workflow", {}),
        "Machine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "RoleArn": {"Fn::GetAtt": ["FnRole", "Arn"]},
                "DefinitionString": {"Fn::Join": ["", [ASL_HEAD, ASL_TAIL]]},
                "DefinitionSubstitutions": {"WorkflowFunctionArn": {"Fn::GetAtt": ["WorkflowFn", "Arn"]}},
            },
        },
        "FailuresRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "EventPattern": {
                    "source": ["aws.states"],
                    "detail-type": ["Step Functions Execution Status Change"],
                    "detail": {
                        "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                        "stateMachineArn": [{"Ref": "Machine"}],
                    },
                },
                "State": "ENABLED",
                "Targets": [{"Arn": {"Fn::GetAtt": ["FailuresQueue", "Arn"]}, "Id": "Target0"}],
            },
        },
        "RouterFn": _function("router", {"STATE_TABLE_NAME": {"Ref": "StateTable"}}),
        "RouterMapping": _mapping("FailuresQueue", "RouterFn"),
    }
    return {"Resources": resources}


def write_project(root: Path) -> Path:
    for name, code in {"consumer": CONSUMER, "api": API, "workflow": WORKFLOW, "router": ROUTER}.items():
        folder = root / "functions" / name
        folder.mkdir(parents=True)
        (folder / "handler.py").write_text(textwrap.dedent(code))
    template = root / "cdk.out" / "r2r-dev.template.json"
    template.parent.mkdir()
    template.write_text(json.dumps(hand_template()))
    return template


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("project")
    template = write_project(root)
    with LocalStack.start(root, template=template, erp=False, retry_delay_s=0) as running:
        yield running


def _put(stack: LocalStack, details: list[dict[str, Any]]) -> None:
    events = stack.boto3_client("events")
    entries = [
        {
            "Source": "r2r.canonical",
            "DetailType": "thing.happened",
            "Detail": json.dumps(detail),
            "EventBusName": stack.resources["Bus"],
        }
        for detail in details
    ]
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0


def _items(stack: LocalStack, prefix: str) -> dict[str, dict[str, Any]]:
    table = stack.boto3_client("dynamodb").scan(TableName=stack.resources["StateTable"])["Items"]
    return {i["pk"]["S"]: i for i in table if i["pk"]["S"].startswith(prefix)}


def test_resources_come_from_the_template(stack: LocalStack):
    sqs = stack.boto3_client("sqs")
    urls = sqs.list_queues()["QueueUrls"]
    consumer = sqs.get_queue_attributes(QueueUrl=stack.resources["ConsumerQueue"], AttributeNames=["All"])
    dlq = sqs.get_queue_attributes(QueueUrl=stack.resources["ConsumerDlq"], AttributeNames=["All"])
    ttl = stack.boto3_client("dynamodb").describe_time_to_live(TableName=stack.resources["StateTable"])
    secret = stack.boto3_client("secretsmanager").get_secret_value(SecretId=stack.resources["WebhookSecrets"])

    assert sorted(u.rsplit("/", 1)[1] for u in urls) == sorted(
        f"r2r-dev-{q}" for q in ("ConsumerDlq", "ConsumerQueue", "FailuresDlq", "FailuresQueue")
    )
    attributes = consumer["Attributes"]
    assert attributes["VisibilityTimeout"] == "180"
    assert attributes["MessageRetentionPeriod"] == "345600"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq["Attributes"]["QueueArn"],
        "maxReceiveCount": 2,
    }
    # moto keeps RedriveAllowPolicy but does not return it from GetQueueAttributes.
    assert stack.local is not None
    allow = stack.local.queues["ConsumerDlq"].attributes["RedriveAllowPolicy"]
    assert json.loads(allow) == {"redrivePermission": "allowAll"}
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expiration"
    assert json.loads(secret["SecretString"])["crm"][0].startswith("whsec_")
    assert stack.resources["Bus"] == "r2r-dev-canonical"
    assert "FnRole" not in stack.resources and stack.local is not None
    assert {"FnRole", "FnLogs", "BusArchive", "ApiFnPermission"} <= set(stack.local.skipped)


def test_poller_deletes_successes_and_redrives_failures_to_the_dlq(stack: LocalStack):
    _put(stack, [{"id": "ok-1"}, {"id": "bad-1", "fail": True}, {"id": "ok-2"}])

    stack.drain(timeout=30)

    items = _items(stack, "THING#")
    assert items["THING#ok-1"]["attempts"]["N"] == "1"
    assert items["THING#ok-2"]["attempts"]["N"] == "1"
    assert items["THING#bad-1"]["attempts"]["N"] == "2"  # maxReceiveCount, then the DLQ
    assert stack.queue_depths(dlq_only=True)["r2r-dev-ConsumerDlq"] == 1
    record = json.loads(items["THING#ok-1"]["rec"]["S"])
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":r2r-dev-ConsumerQueue")
    assert record["awsRegion"] == "us-east-1"
    assert {"ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"} <= set(
        record["attributes"]
    )
    assert record["md5OfBody"] and record["receiptHandle"] and record["messageId"]
    assert json.loads(record["body"])["detail"] == {"id": "ok-1"}
    assert 0 < int(items["THING#ok-1"]["left"]["N"]) <= 30_000


def test_drain_timeout_names_what_is_busy(stack: LocalStack):
    _put(stack, [{"id": "slow-1", "sleep": 2}])

    with pytest.raises(DrainTimeout) as raised:
        stack.drain(timeout=0.5)

    assert "r2r-dev-ConsumerQueue" in str(raised.value) or "function r2r-dev-ConsumerFn" in str(raised.value)
    stack.drain(timeout=30)


def test_api_route_is_served_as_a_proxy_event(stack: LocalStack):
    delivery = stack.post_webhook(
        "crm", {"type": "thing.happened", "data": {}}, "msg_1", headers={"X-Extra": "1"}
    )

    assert stack.api_url.endswith("/dev/")
    assert delivery.status == 202
    assert delivery.headers["X-Echo"] == "yes"
    echo = delivery.json
    event = echo["event"]
    assert echo["function"] == "r2r-dev-ApiFn"
    assert echo["bus"] == "r2r-dev-canonical"  # template environment, resolved locally
    assert event["resource"] == "/v1/webhooks/{source}"
    assert event["path"] == "/v1/webhooks/crm"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"source": "crm"}
    assert event["headers"]["X-Extra"] == "1"
    assert event["multiValueHeaders"]["X-Extra"] == ["1"]
    assert event["requestContext"]["stage"] == "dev"
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert event["requestContext"]["requestId"]
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == {"type": "thing.happened", "data": {}}


def test_api_unsigned_unknown_and_oversized_requests(stack: LocalStack):
    unsigned = stack.post_webhook("crm", {"x": 1}, "msg_2", sign=False)
    query = requests.post(stack.api_url + "v1/webhooks/psa?a=1&a=2", data="{}", timeout=10).json()["event"]
    unknown = requests.post(stack.api_url + "v2/nothing", data="{}", timeout=10)
    wrong_method = requests.get(stack.api_url + "v1/webhooks/crm", timeout=10)
    host, port = stack.api_url.split("//")[1].split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/dev/v1/webhooks/crm")
    connection.putheader("Content-Length", str(11 * 1024 * 1024))
    connection.endheaders()
    too_large = connection.getresponse()

    assert unsigned.status == 401
    assert query["queryStringParameters"] == {"a": "2"}
    assert query["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert unknown.status_code == 404
    assert unknown.json() == {"message": "Missing Authentication Token"}
    assert wrong_method.status_code == 404
    assert too_large.status == 413
    connection.close()


def test_state_machine_runs_in_process_and_failures_reach_the_router(stack: LocalStack):
    sfn = stack.boto3_client("stepfunctions")
    machine = stack.resources["Machine"]

    ok = sfn.start_execution(stateMachineArn=machine, name="eng-1-ms-1", input=json.dumps({"fail": False}))
    bad = sfn.start_execution(stateMachineArn=machine, name="eng-1-ms-2", input=json.dumps({"fail": True}))
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=machine, name="eng-1-ms-1", input="{}")
    stack.drain(timeout=30)

    succeeded = sfn.describe_execution(executionArn=ok["executionArn"])
    failed = sfn.describe_execution(executionArn=bad["executionArn"])
    assert succeeded["status"] == "SUCCEEDED"
    output = json.loads(succeeded["output"])
    assert output["done"] is True
    assert output["step"] == "validate_contract"
    assert output["execution_id"] == ok["executionArn"]
    assert failed["status"] == "FAILED"
    assert failed["error"] == "ContractInvalid"
    exceptions = {e["pk"]: e for e in stack.report()["exceptions"]}
    assert exceptions["EXC#eng-1-ms-2"]["error"] == "ContractInvalid"
    assert exceptions["EXC#eng-1-ms-2"]["execution_arn"] == bad["executionArn"]
    assert "EXC#eng-1-ms-1" not in exceptions
    assert stack.watcher is not None
    statuses = [(e["name"], e["status"]) for e in stack.watcher.emitted if e["name"].startswith("eng-1-")]
    assert ("eng-1-ms-2", "RUNNING") in statuses and ("eng-1-ms-2", "FAILED") in statuses
    assert ("eng-1-ms-1", "SUCCEEDED") in statuses
    failed_event = next(
        e for e in stack.watcher.emitted if e["name"] == "eng-1-ms-2" and e["status"] == "FAILED"
    )
    assert isinstance(failed_event["startDate"], int) and isinstance(failed_event["stopDate"], int)
    assert failed_event["stateMachineArn"] == machine


def test_run_scenario_posts_in_name_order_and_reports(stack: LocalStack, tmp_path: Path):
    scenario = tmp_path / "scenario"
    scenario.mkdir()
    (scenario / "02-unsigned.json").write_text(
        json.dumps({"source": "crm", "body": {"type": "x"}, "sign": False, "expect_status": 401})
    )
    (scenario / "01-signed.json").write_text(json.dumps({"source": "hris", "body": {"type": "x"}}))
    (scenario / "03-raw.json").write_text(
        json.dumps({"source": "generic", "raw_body_file": "body.xml", "content_type": "text/xml"})
    )
    (scenario / "body.xml").write_text("<a>1</a>")
    (scenario / "README.md").write_text("not a delivery")

    report = stack.run_scenario(scenario)

    assert [d["file"] for d in report["deliveries"]] == ["01-signed.json", "02-unsigned.json", "03-raw.json"]
    assert [d["status"] for d in report["deliveries"]] == [202, 401, 202]
    assert report["deliveries"][0]["webhook_id"] == "msg_01-signed"
    assert report["deliveries"][2]["response"]["event"]["body"] == "<a>1</a>"
    assert report["ok"] is True
    assert report["dlq_depths"]["r2r-dev-ConsumerDlq"] >= 1
    assert report["erp"] == {"records": {}} and report["invoices"] == []
    assert report["duration_s"] > 0


def test_scenario_errors_are_clear(stack: LocalStack, tmp_path: Path):
    (tmp_path / "01-bad.json").write_text(json.dumps({"body": {}}))

    with pytest.raises(ScenarioError, match="'source'"):
        stack.run_scenario(tmp_path)


def test_a_second_stack_in_the_same_process_is_independent(stack: LocalStack, tmp_path: Path):
    template = tmp_path / "t.json"
    template.write_text(json.dumps({"Resources": {"Other": {"Type": "AWS::SQS::Queue"}}}))

    with LocalStack.start(tmp_path, template=template, erp=False) as other:
        theirs = other.boto3_client("sqs").list_queues()["QueueUrls"]
        ours = stack.boto3_client("sqs").list_queues()["QueueUrls"]

    assert [u.rsplit("/", 1)[1] for u in theirs] == ["t-Other"]
    assert "t-Other" not in {u.rsplit("/", 1)[1] for u in ours}


def test_startup_time_is_reported_and_an_idle_stack_drains(stack: LocalStack):
    # How fast it starts is measured (r2r local up prints it, make bench), never asserted here.
    stack.drain(timeout=60)

    assert stack.startup_s > 0
    assert stack.busy() == []


def test_a_scheduled_rule_ticks_on_demand_with_its_target_input(stack: LocalStack, tmp_path: Path):
    assert stack.local is not None
    [schedule] = stack.local.schedules
    assert (schedule.logical_id, schedule.expression, schedule.period_s) == (
        "PollRule",
        "rate(15 minutes)",
        900,
    )

    assert stack.tick("PollRule") == 1
    stack.drain(timeout=30)
    first = int(_items(stack, "THING#tick")["THING#tick"]["attempts"]["N"])
    (tmp_path / "01-tick.json").write_text(json.dumps({"tick": "consumer"}))  # by the function it feeds
    report = stack.run_scenario(tmp_path)

    assert first == 1
    assert report["deliveries"] == [
        {
            "file": "01-tick.json",
            "kind": "tick",
            "schedule": "consumer",
            "targets": 1,
            "ok": True,
            "drain_s": ANY,
        }
    ]
    assert _items(stack, "THING#tick")["THING#tick"]["attempts"]["N"] == "2"
    with pytest.raises(LookupError, match="no scheduled rule"):
        stack.tick("nothing")


def test_other_events_on_the_default_bus_do_not_fire_a_scheduled_rule(stack: LocalStack):
    # moto would match a pattern-less scheduled rule against every event on its bus, and the
    # consumer behind PollRule would then record THING#stray.
    stack.boto3_client("events").put_events(
        Entries=[
            {
                "Source": "aws.states",
                "DetailType": "Step Functions Execution Status Change",
                "Detail": json.dumps({"id": "stray"}),
            }
        ]
    )
    stack.drain(timeout=30)

    assert "THING#stray" not in _items(stack, "THING#")


def test_invoke_runs_a_function_directly(stack: LocalStack):
    result = stack.invoke("workflow", {"step": "s", "state": {"x": 1}, "execution_id": "e"})

    assert result == {"x": 1, "step": "s", "execution_id": "e", "done": True}
    with pytest.raises(LookupError, match="no function"):
        stack.invoke("nothing", {})
