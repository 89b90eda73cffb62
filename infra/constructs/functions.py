"""One r2r Lambda function: code from ``functions/<folder>``, its own role and log group.

The role is created here (not by CDK's default) so it carries no AWS managed policy:
the only logging permission is writing to this function's own log group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import CfnResource, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs import nag
from infra.constructs.encryption import DataKey
from infra.constructs.layers import ARCHITECTURE, RUNTIME, compiled_source
from infra.constructs.paths import FUNCTIONS_DIR, repo_relative

SOURCE_METADATA_KEY = "r2r:source"
HANDLER = "handler.handler"
DEFAULT_MEMORY_MB = 256
FUNCTION_LOG_RETENTION = logs.RetentionDays.ONE_MONTH


def service_name(folder: str) -> str:
    """``POWERTOOLS_SERVICE_NAME`` for a function folder: ``r2r-<folder with dashes>``."""
    return "r2r-" + folder.replace("_", "-")


class R2rFunction(Construct):
    """A Python 3.14 arm64 function with X-Ray tracing, an explicit log group and a custom role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        folder: str,
        stage: str,
        timeout: Duration,
        environment: Mapping[str, str],
        layers: Sequence[lambda_.ILayerVersion],
        log_removal_policy: RemovalPolicy,
        memory_size: int = DEFAULT_MEMORY_MB,
        description: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        code_dir = FUNCTIONS_DIR / folder
        # The function folders belong to the handler authors; an empty folder is enough to synth.
        code_dir.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.timeout = timeout

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=FUNCTION_LOG_RETENTION,
            removal_policy=log_removal_policy,
            encryption_key=DataKey.of(self),
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"r2r {folder}: execution role (grants added per resource)",
        )
        self.log_group.grant_write(self.role)

        common_environment = {
            "STAGE": stage,
            "POWERTOOLS_SERVICE_NAME": service_name(folder),
            "POWERTOOLS_METRICS_NAMESPACE": "r2r",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        self.function = lambda_.Function(
            self,
            "Function",
            description=description or f"r2r {folder}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=HANDLER,
            code=compiled_source(code_dir),
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            memory_size=memory_size,
            timeout=timeout,
            environment={**common_environment, **environment},
            layers=list(layers),
        )
        cfn_function = self.function.node.default_child
        assert isinstance(cfn_function, CfnResource)
        cfn_function.add_metadata(SOURCE_METADATA_KEY, repo_relative(code_dir))

        default_policy = self.role.node.try_find_child("DefaultPolicy")
        if default_policy is not None:
            nag.acknowledge(
                default_policy,
                "IAM5",
                "X-Ray PutTraceSegments/PutTelemetryRecords (added by tracing=ACTIVE) do not support "
                "resource-level permissions; the resource must be '*'.",
                findings=["Resource::*"],
            )
