"""Standard state machine ``milestone-to-invoice``, defined by the ASL file next to the app."""

from __future__ import annotations

from aws_cdk import CfnResource, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.constructs import nag
from infra.constructs.encryption import DataKey
from infra.constructs.paths import STATEMACHINES_DIR, repo_relative

DEFINITION_FILE = STATEMACHINES_DIR / "milestone_to_invoice.asl.json"
DEFINITION_METADATA_KEY = "r2r:definition"
FUNCTION_ARN_SUBSTITUTION = "InvoiceWorkflowFunctionArn"
LOG_RETENTION = logs.RetentionDays.THREE_MONTHS


class MilestoneToInvoice(Construct):
    """ValidateContract -> ConfirmApprovedCharges -> CheckTaxAndLegalEntity -> CreateInvoice
    -> PublishInvoiceCreated, each task invoking ``invoice_workflow``; no Catch, so a failed
    execution can be redriven once the cause is fixed."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        invoice_workflow: lambda_.IFunction,
        log_removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=LOG_RETENTION,
            removal_policy=log_removal_policy,
            encryption_key=DataKey.of(self),
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="r2r milestone-to-invoice",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(DEFINITION_FILE)),
            definition_substitutions={FUNCTION_ARN_SUBSTITUTION: invoice_workflow.function_arn},
            logs=sfn.LogOptions(
                destination=self.log_group,
                level=sfn.LogLevel.ALL,
                include_execution_data=True,
            ),
            tracing_enabled=True,
        )
        invoice_workflow.grant_invoke(self.state_machine)

        cfn_state_machine = self.state_machine.node.default_child
        assert isinstance(cfn_state_machine, CfnResource)
        # The local stack runs the same file; name it so it need not resolve the S3 asset.
        cfn_state_machine.add_metadata(DEFINITION_METADATA_KEY, repo_relative(DEFINITION_FILE))

        policy = self.state_machine.role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            nag.acknowledge(
                policy,
                "IAM5",
                "CloudWatch Logs vended-log delivery actions (logs:CreateLogDelivery, "
                "PutResourcePolicy, ...) and X-Ray PutTraceSegments/GetSamplingRules do not "
                "support resource-level permissions; the resource must be '*'.",
                findings=["Resource::*"],
            )
            nag.acknowledge(
                policy,
                "IAM5",
                "lambda:InvokeFunction on '<function arn>:*' comes from grant_invoke and covers "
                "the function's versions and aliases; the function itself is named exactly.",
                findings=[f"Resource::<{_logical_id_token(invoice_workflow)}.Arn>:*"],
            )


def _logical_id_token(function: lambda_.IFunction) -> str:
    cfn_function = function.node.default_child
    assert isinstance(cfn_function, CfnResource)
    return function.stack.get_logical_id(cfn_function)
