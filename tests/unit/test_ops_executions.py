"""``r2r executions redrive`` on AWS: ``RedriveExecution`` on the failed execution (Stubber); local names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from infra import ops_executions, ops_target
from infra.cli import app
from infra.ops_target import Target

MACHINE = "arn:aws:states:eu-west-1:111122223333:stateMachine:MilestoneToInvoice1A2B"
EXECUTION = "arn:aws:states:eu-west-1:111122223333:execution:MilestoneToInvoice1A2B:eng-acme-ms-1"
STARTED = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


@pytest.fixture
def sfn() -> Any:
    return boto3.client("stepfunctions", region_name="eu-west-1")


def _describe(status: str) -> dict[str, Any]:
    return {
        "executionArn": EXECUTION,
        "stateMachineArn": MACHINE,
        "name": "eng-acme-ms-1",
        "status": status,
        "startDate": STARTED,
        "input": '{"engagement_id": "eng-acme", "milestone_id": "ms-1"}',
    }


def _invoke(sfn: Any, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    target = Target(local=False, session=None, stack="r2r-prod", _clients={"stepfunctions": sfn})
    monkeypatch.setattr(ops_target, "resolve", lambda **_: target)
    monkeypatch.setattr(ops_executions, "state_machine_arns", lambda _target: [MACHINE])
    return CliRunner().invoke(app, ["executions", *args, "--aws", "--region", "eu-west-1"])


def test_redrive_on_aws_calls_redrive_execution_on_the_failed_execution(
    sfn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Stubber(sfn) as stubber:
        stubber.add_response("describe_execution", _describe("FAILED"), {"executionArn": EXECUTION})
        stubber.add_response("redrive_execution", {"redriveDate": STARTED}, {"executionArn": EXECUTION})
        result = _invoke(sfn, monkeypatch, "redrive", EXECUTION)
        stubber.assert_no_pending_responses()
    assert result.exit_code == 0, result.output
    assert f"redriven {EXECUTION}: resumes at its failed state" in result.output


def test_a_succeeded_execution_is_not_redriven(sfn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with Stubber(sfn) as stubber:
        stubber.add_response("describe_execution", _describe("SUCCEEDED"), {"executionArn": EXECUTION})
        result = _invoke(sfn, monkeypatch, "redrive", EXECUTION)
        stubber.assert_no_pending_responses()  # no RedriveExecution
    assert result.exit_code == 1
    assert "only a FAILED, TIMED_OUT or ABORTED execution can be redriven" in result.output


def test_an_execution_is_found_by_its_name(sfn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    listed = {
        "executions": [
            {
                "executionArn": EXECUTION,
                "stateMachineArn": MACHINE,
                "name": "eng-acme-ms-1",
                "status": "FAILED",
                "startDate": STARTED,
            }
        ]
    }
    with Stubber(sfn) as stubber:
        stubber.add_response("list_executions", listed, {"stateMachineArn": MACHINE})
        stubber.add_response("describe_execution", _describe("FAILED"), {"executionArn": EXECUTION})
        stubber.add_response("redrive_execution", {"redriveDate": STARTED}, {"executionArn": EXECUTION})
        result = _invoke(sfn, monkeypatch, "redrive", "acme-ms-1")
        stubber.assert_no_pending_responses()
    assert result.exit_code == 0, result.output


def test_local_redrive_names_count_up_and_stay_within_the_limit() -> None:
    assert ops_executions.redrive_name("eng-a-ms-1", set()) == "eng-a-ms-1-redrive-1"
    assert (
        ops_executions.redrive_name("eng-a-ms-1-redrive-1", {"eng-a-ms-1-redrive-1"})
        == "eng-a-ms-1-redrive-2"
    )
    long = "e" * 80
    assert ops_executions.redrive_name(long, set()) == "e" * 70 + "-redrive-1"
