"""``r2r dlq redrive`` on AWS: an SQS message move task from the DLQ to its source queue (Stubber)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from infra import ops_dlq, ops_target
from infra.cli import app
from infra.ops_target import Target

ACCOUNT = "111122223333"
SOURCE_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:r2r-prod-TimePostingQueue1A2B"
DLQ_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:r2r-prod-TimePostingDlq3C4D"
SOURCE_URL = f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/r2r-prod-TimePostingQueue1A2B"
DLQ_URL = f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/r2r-prod-TimePostingDlq3C4D"


def _stub_queues(stubber: Stubber) -> None:
    stubber.add_response("list_queues", {"QueueUrls": [DLQ_URL, SOURCE_URL]}, {"QueueNamePrefix": "r2r-prod"})
    stubber.add_response(
        "get_queue_attributes",
        {
            "Attributes": {
                "QueueArn": DLQ_ARN,
                "ApproximateNumberOfMessages": "3",
                "ApproximateNumberOfMessagesNotVisible": "0",
                "ApproximateNumberOfMessagesDelayed": "0",
                "RedriveAllowPolicy": json.dumps(
                    {"redrivePermission": "byQueue", "sourceQueueArns": [SOURCE_ARN]}
                ),
            }
        },
        {"QueueUrl": DLQ_URL, "AttributeNames": ["All"]},
    )
    stubber.add_response(
        "get_queue_attributes",
        {
            "Attributes": {
                "QueueArn": SOURCE_ARN,
                "ApproximateNumberOfMessages": "0",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 5}),
            }
        },
        {"QueueUrl": SOURCE_URL, "AttributeNames": ["All"]},
    )


@pytest.fixture
def sqs() -> Any:
    return boto3.client("sqs", region_name="eu-west-1")


def test_redrive_on_aws_starts_a_move_task_to_the_source_queue_and_reports_it(
    sqs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = Target(local=False, session=None, stack="r2r-prod", _clients={"sqs": sqs})
    monkeypatch.setattr(ops_target, "resolve", lambda **_: target)
    with Stubber(sqs) as stubber:
        _stub_queues(stubber)
        stubber.add_response(
            "start_message_move_task",
            {"TaskHandle": "handle-123"},
            {"SourceArn": DLQ_ARN, "DestinationArn": SOURCE_ARN, "MaxNumberOfMessagesPerSecond": 50},
        )
        stubber.add_response(
            "list_message_move_tasks",
            {
                "Results": [
                    {
                        "TaskHandle": "handle-123",
                        "Status": "RUNNING",
                        "SourceArn": DLQ_ARN,
                        "DestinationArn": SOURCE_ARN,
                        "ApproximateNumberOfMessagesMoved": 1,
                        "ApproximateNumberOfMessagesToMove": 3,
                    }
                ]
            },
            {"SourceArn": DLQ_ARN, "MaxResults": 1},
        )
        result = CliRunner().invoke(
            app,
            [
                "dlq",
                "redrive",
                "time_posting",
                "--aws",
                "--region",
                "eu-west-1",
                "--stack",
                "r2r-prod",
                "--max-per-second",
                "50",
            ],
        )
        stubber.assert_no_pending_responses()
    assert result.exit_code == 0, result.output
    assert "handle handle-123, status RUNNING, 1/3 moved" in result.output
    assert "r2r-prod-TimePostingQueue1A2B" in result.output


def test_find_dlqs_names_the_source_queue_and_depth(sqs: Any) -> None:
    with Stubber(sqs) as stubber:
        _stub_queues(stubber)
        [dlq] = ops_dlq.find_dlqs(sqs, "r2r-prod")
    assert (dlq.arn, dlq.depth, dlq.sources) == (DLQ_ARN, 3, (SOURCE_ARN,))


def test_an_ambiguous_queue_name_is_refused(sqs: Any) -> None:
    dlqs = [
        ops_dlq.Dlq("r2r-prod-TimePostingDlq", "u1", "a1", 0, ()),
        ops_dlq.Dlq("r2r-prod-ExpensePostingDlq", "u2", "a2", 0, ()),
    ]
    assert ops_dlq.pick(dlqs, "time-posting").url == "u1"
    with pytest.raises(Exception, match="names 2 DLQs"):
        ops_dlq.pick(dlqs, "posting")
