"""milestone-to-invoice: STANDARD, logging ALL, tracing, definition from the ASL file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.constructs.paths import REPO_ROOT
from infra.synth import SynthResult
from tests.infra.helpers import functions_by_folder, of_type, ref_id

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

ASL_FILE = REPO_ROOT / "infra" / "statemachines" / "milestone_to_invoice.asl.json"
STEPS = [
    ("ValidateContract", "validate_contract"),
    ("ConfirmApprovedCharges", "confirm_approved_charges"),
    ("CheckTaxAndLegalEntity", "check_tax_and_legal_entity"),
    ("CreateInvoice", "create_invoice"),
    ("PublishInvoiceCreated", "publish_invoice_created"),
]


@pytest.fixture(scope="module")
def machine(resources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    machines = of_type(resources, "AWS::StepFunctions::StateMachine")
    assert len(machines) == 1
    lid, res = next(iter(machines.items()))
    return lid, res


def test_standard_logged_and_traced(resources: dict[str, dict[str, Any]], machine: tuple[str, Any]) -> None:
    _lid, res = machine
    props = res["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert "StateMachineName" not in props
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    (destination,) = logging["Destinations"]
    log_group = ref_id(destination["CloudWatchLogsLogGroup"]["LogGroupArn"])
    assert resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert props["TracingConfiguration"] == {"Enabled": True}


def test_definition_is_the_asl_file_with_the_function_substituted(
    synth: SynthResult, resources: dict[str, dict[str, Any]], machine: tuple[str, Any]
) -> None:
    _lid, res = machine
    props = res["Properties"]
    # DefinitionBody.from_file: the file is an S3 asset staged in the cloud assembly.
    key = props["DefinitionS3Location"]["Key"]
    staged = Path(synth.assembly.directory) / f"asset.{key}"
    assert staged.read_bytes() == ASL_FILE.read_bytes()
    assert res["Metadata"]["r2r:definition"] == "infra/statemachines/milestone_to_invoice.asl.json"
    fn_id, _ = functions_by_folder(resources)["invoice_workflow"]
    assert props["DefinitionSubstitutions"] == {"InvoiceWorkflowFunctionArn": {"Fn::GetAtt": [fn_id, "Arn"]}}


def test_asl_contract() -> None:
    asl = json.loads(ASL_FILE.read_text(encoding="utf-8"))
    assert asl["StartAt"] == "ValidateContract"
    assert list(asl["States"]) == [name for name, _ in STEPS]
    for index, (name, step) in enumerate(STEPS):
        state = asl["States"][name]
        assert state["Type"] == "Task"
        assert state["Resource"] == "arn:aws:states:::lambda:invoke"
        assert state["Parameters"] == {
            "FunctionName": "${InvoiceWorkflowFunctionArn}",
            "Payload": {"step": step, "state.$": "$", "execution_id.$": "$$.Execution.Id"},
        }
        assert state["OutputPath"] == "$.Payload"
        assert "Catch" not in state  # business failures stay uncaught: the execution can be redriven
        if index + 1 < len(STEPS):
            assert state["Next"] == STEPS[index + 1][0]
        else:
            assert state["End"] is True
        retriers = {tuple(r["ErrorEquals"]): r for r in state["Retry"]}
        lambda_transient = (
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.ClientExecutionTimeoutException",
        )
        for errors in (lambda_transient, ("Lambda.TooManyRequestsException",), ("ErpTransientError",)):
            retrier = retriers[errors]
            assert (retrier["IntervalSeconds"], retrier["MaxAttempts"], retrier["BackoffRate"]) == (2, 6, 2)
        assert not {"States.ALL", "ContractInvalid", "ErpPermanentError"} & {
            e for errors in retriers for e in errors
        }


def test_state_machine_may_invoke_the_workflow_and_the_trigger_may_start_it(
    resources: dict[str, dict[str, Any]], machine: tuple[str, Any]
) -> None:
    lid, res = machine
    sm_role = ref_id(res["Properties"]["RoleArn"])
    invoke_fn, _ = functions_by_folder(resources)["invoice_workflow"]
    trigger_role = ref_id(functions_by_folder(resources)["milestone_trigger"][1]["Properties"]["Role"])

    def statements(role: str) -> list[dict[str, Any]]:
        return [
            st
            for r in of_type(resources, "AWS::IAM::Policy").values()
            if role in [ref_id(x) for x in r["Properties"]["Roles"]]
            for st in r["Properties"]["PolicyDocument"]["Statement"]
        ]

    assert any(
        st["Action"] == "lambda:InvokeFunction" and {"Fn::GetAtt": [invoke_fn, "Arn"]} in st["Resource"]
        for st in statements(sm_role)
    )
    assert any(
        st["Action"] == "states:StartExecution" and st["Resource"] == {"Ref": lid}
        for st in statements(trigger_role)
    )


def test_the_period_close_may_start_this_state_machine_and_nothing_else(
    resources: dict[str, dict[str, Any]], machine: tuple[str, Any]
) -> None:
    lid, _ = machine
    role = ref_id(functions_by_folder(resources)["billing_period_close"][1]["Properties"]["Role"])
    statements = [
        st
        for r in of_type(resources, "AWS::IAM::Policy").values()
        if role in [ref_id(x) for x in r["Properties"]["Roles"]]
        for st in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    starts = [st for st in statements if "states:StartExecution" in json.dumps(st["Action"])]
    assert [st["Resource"] for st in starts] == [{"Ref": lid}]
    # The state machine creates and publishes the invoice. The ERP secret and the bus are there for the
    # period-end flush of time summaries (summary posting mode): the timeBills and their revenue events.
    env = functions_by_folder(resources)["billing_period_close"][1]["Properties"]["Environment"]["Variables"]
    assert "EVENT_BUS_NAME" in env and "ERP_SECRET_ARN" in env
