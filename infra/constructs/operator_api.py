"""The operator API on the stack's REST API, behind IAM authorization, and its three roles.

``/ops/...`` routes (``AuthorizationType.IAM``: a SigV4-signed request whose identity has
``execute-api:Invoke`` on the method) proxied to ``functions/operator_api``:

- ``GET /ops/lineage/invoices/{id}``: an invoice's lineage
- ``GET /ops/exceptions``, ``GET /ops/exceptions/{id}``: exceptions for finance
- ``POST /ops/exceptions/{id}/resolve``: resolve one (who = the caller's IAM identity)
- ``GET /ops/kpis``: the KPIs of what the StateTable holds

Three roles, each allowed ``execute-api:Invoke`` on exactly its methods' ARNs:
``finance-ops`` (every read and resolving exceptions), ``integration-admin`` (everything the API offers),
``read-only`` (the GET methods). They trust the account root (IAM policies in the account then decide who
may assume them) or the principal of context ``operatorPrincipalArn``. The webhook routes are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import CfnElement, CfnResource, Duration, RemovalPolicy, Stack, Tags
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct, IConstruct

from infra.constructs import nag
from infra.constructs.api import WebhookApi
from infra.constructs.encryption import DataKey
from infra.constructs.functions import R2rFunction
from infra.constructs.tables import DataTables

OPERATOR_TIMEOUT = Duration.seconds(15)
OPERATOR_BASE_PATH = "/ops"
# Metadata and tag naming an operator role's label; the local stack maps local credentials to it.
OPERATOR_ROLE_METADATA_KEY = "r2r:operator-role"
FINANCE_OPS = "finance-ops"
INTEGRATION_ADMIN = "integration-admin"
READ_ONLY = "read-only"
ROLE_DESCRIPTIONS = {
    FINANCE_OPS: "r2r operator API: finance operations (every read, resolve exceptions)",
    INTEGRATION_ADMIN: "r2r operator API: integration administrator (everything the operator API offers)",
    READ_ONLY: "r2r operator API: read only (lineage, exceptions, KPIs)",
}


@dataclass(frozen=True)
class OperatorRoute:
    method: str
    path: str  # below the API root, e.g. /ops/exceptions/{id}
    writes: bool = False


ROUTES: tuple[OperatorRoute, ...] = (
    OperatorRoute("GET", "/ops/lineage/invoices/{id}"),
    OperatorRoute("GET", "/ops/exceptions"),
    OperatorRoute("GET", "/ops/exceptions/{id}"),
    OperatorRoute("POST", "/ops/exceptions/{id}/resolve", writes=True),
    OperatorRoute("GET", "/ops/kpis"),
)


def allowed_routes(role: str) -> list[OperatorRoute]:
    """The methods a role may invoke."""
    if role == INTEGRATION_ADMIN:
        return list(ROUTES)
    if role == FINANCE_OPS:
        return [r for r in ROUTES if r.method == "GET" or r.path == "/ops/exceptions/{id}/resolve"]
    if role == READ_ONLY:
        return [r for r in ROUTES if r.method == "GET"]
    raise ValueError(f"unknown operator role {role!r}")


_IAM_AUTH_NOT_COGNITO = (
    "The operator API is authorized by IAM (SigV4, execute-api:Invoke on each method ARN for the "
    "finance-ops, integration-admin and read-only roles); operators are IAM principals, not a Cognito "
    "user pool."
)


class OperatorApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: WebhookApi,
        tables: DataTables,
        layers: Sequence[lambda_.ILayerVersion],
        stage: str,
        log_removal_policy: RemovalPolicy,
        trusted_principal_arn: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = R2rFunction(
            self,
            "Handler",
            folder="operator_api",
            stage=stage,
            timeout=OPERATOR_TIMEOUT,
            description="r2r operator_api: lineage, exceptions and KPIs behind IAM authorization",
            layers=layers,
            log_removal_policy=log_removal_policy,
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
            },
        )
        function = self.handler.function
        # Reads both tables; writes only an exception's status (UpdateItem on the state table) and one audit
        # record (PutItem on the append-only audit table): no delete, no batch write.
        tables.state.grant_read_data(function)
        tables.audit.grant_read_data(function)
        tables.state.grant(function, "dynamodb:UpdateItem")
        tables.audit.grant(function, "dynamodb:PutItem")
        DataKey.of(self).grant(function, "kms:Encrypt", "kms:GenerateDataKey")

        integration = apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
        self.methods: dict[OperatorRoute, apigw.Method] = {}
        for route in ROUTES:
            resource = api.api.root.resource_for_path(route.path)
            params = {
                f"method.request.path.{part[1:-1]}": True for part in route.path.split("/") if part[:1] == "{"
            }
            method = resource.add_method(
                route.method,
                integration,
                authorization_type=apigw.AuthorizationType.IAM,
                request_validator=api.validator,
                request_parameters=params or None,
            )
            nag.acknowledge(method, "COG4", _IAM_AUTH_NOT_COGNITO)
            self.methods[route] = method

        principal: iam.IPrincipal = (
            iam.ArnPrincipal(trusted_principal_arn) if trusted_principal_arn else iam.AccountRootPrincipal()
        )
        self.roles: dict[str, iam.Role] = {}
        for label in (FINANCE_OPS, INTEGRATION_ADMIN, READ_ONLY):
            self.roles[label] = self._role(label, principal)
        self.url = api.api.url_for_path(OPERATOR_BASE_PATH)

    def _role(self, label: str, principal: iam.IPrincipal) -> iam.Role:
        methods = [self.methods[route] for route in allowed_routes(label)]
        role = iam.Role(
            self,
            "".join(part.capitalize() for part in label.split("-")) + "Role",
            assumed_by=principal,
            description=ROLE_DESCRIPTIONS[label],
            max_session_duration=Duration.hours(1),
            inline_policies={
                "InvokeOperatorApi": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=["execute-api:Invoke"],
                            resources=[method.method_arn for method in methods],
                        )
                    ]
                )
            },
        )
        Tags.of(role).add(OPERATOR_ROLE_METADATA_KEY, label)
        cfn_role = role.node.default_child
        assert isinstance(cfn_role, CfnResource)
        cfn_role.add_metadata(OPERATOR_ROLE_METADATA_KEY, label)
        nag.acknowledge(
            role,
            "IAM5",
            "execute-api:Invoke on the exact method ARNs of this role; a path parameter ({id}) is '*' in a "
            "method ARN (any invoice or exception id), nothing else is a wildcard.",
            findings=[self._finding(method) for method in methods if "{" in method.resource.path],
        )
        return role

    def _finding(self, method: apigw.Method) -> str:
        """cdk-nag's id of the wildcard resource ``<api>/<stage>/<METHOD>/<path with * for parameters>``."""
        stack = Stack.of(self)
        rest_api = method.api
        api_id = stack.get_logical_id(_cfn(rest_api))
        stage_id = stack.get_logical_id(_cfn(rest_api.deployment_stage))
        path = "/".join("*" if part[:1] == "{" else part for part in method.resource.path.split("/"))
        return (
            "Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:"
            f"<{api_id}>/<{stage_id}>/{method.http_method}{path}"
        )


def _cfn(construct: IConstruct) -> CfnElement:
    child = construct.node.default_child
    assert isinstance(child, CfnElement)
    return child
