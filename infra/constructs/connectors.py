"""Connectors in the source systems' own wire formats.

Salesforce Outbound Messages (SOAP): ``POST /v1/salesforce/outbound/{secret}`` on the webhook API →
``ingest_salesforce_outbound`` (archive, map, publish, SOAP Ack). The listener secrets per
organisation live in ``SalesforceOutboundSecrets`` (``{"<OrganizationId>": ["<secret>", …]}``).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnElement, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.constructs import nag
from infra.constructs.api import WebhookApi
from infra.constructs.functions import R2rFunction
from infra.constructs.secrets import PLACEHOLDER_KEY
from infra.constructs.storage import RawArchive
from infra.constructs.tables import DataTables

OUTBOUND_TIMEOUT = Duration.seconds(30)  # Salesforce waits 60 s for the Ack
OUTBOUND_SECRETS_SKELETON = "{}"
OUTBOUND_PATH = "v1/salesforce/outbound"
_LISTENER_AUTH = (
    "Salesforce Outbound Messages cannot sign requests or use IAM/Cognito: the listener checks a "
    "per-organisation secret in the path (constant-time, from SalesforceOutboundSecrets) and the "
    "OrganizationId allow-list in the message before anything is published; the stage is throttled."
)


class SalesforceOutboundListener(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: WebhookApi,
        tables: DataTables,
        archive: RawArchive,
        bus: events.IEventBus,
        layers: Sequence[lambda_.ILayerVersion],
        stage: str,
        removal_policy: RemovalPolicy,
        integration_user_ids: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        self.secrets = secretsmanager.Secret(
            self,
            "SalesforceOutboundSecrets",
            description='r2r Salesforce outbound listener secrets: {"<OrganizationId>": ["<secret>"]}',
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=OUTBOUND_SECRETS_SKELETON,
                generate_string_key=PLACEHOLDER_KEY,
            ),
            removal_policy=removal_policy,
        )
        nag.acknowledge(
            self.secrets,
            "SMG4",
            "Listener secrets are chosen by the operator and configured in the Salesforce org's outbound "
            "message endpoint URL; rotating means changing both, which a rotation Lambda cannot do.",
        )
        self.listener = R2rFunction(
            self,
            "Listener",
            folder="ingest_salesforce_outbound",
            stage=stage,
            timeout=OUTBOUND_TIMEOUT,
            description="r2r ingest_salesforce_outbound: Outbound Messages to canonical events, SOAP Ack",
            layers=layers,
            log_removal_policy=removal_policy,
            environment={
                "RAW_BUCKET_NAME": archive.bucket.bucket_name,
                "EVENT_BUS_NAME": bus.event_bus_name,
                "IDEMPOTENCY_TABLE_NAME": tables.idempotency.table_name,
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "SALESFORCE_OUTBOUND_SECRETS_ARN": self.secrets.secret_arn,
                # Only when configured (context salesforceIntegrationUserIds): r2r's own edits are echoes.
                **({"SALESFORCE_INTEGRATION_USER_IDS": integration_user_ids} if integration_user_ids else {}),
            },
        )
        function = self.listener.function
        archive.bucket.grant_put(function)
        bus.grant_put_events_to(function)
        for table in (tables.idempotency, tables.state, tables.audit):
            table.grant_read_write_data(function)
        self.secrets.grant_read(function)
        _acknowledge_bucket_put(self.listener, archive)

        resource = api.api.root.resource_for_path(OUTBOUND_PATH).add_resource("{secret}")
        self.method = resource.add_method(
            "POST",
            apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False),
            authorization_type=apigw.AuthorizationType.NONE,
            request_validator=api.validator,
            request_parameters={"method.request.path.secret": True},
        )
        nag.acknowledge(self.method, "APIG4", _LISTENER_AUTH)
        nag.acknowledge(self.method, "COG4", _LISTENER_AUTH)


def _acknowledge_bucket_put(function: R2rFunction, archive: RawArchive) -> None:
    policy = function.role.node.find_child("DefaultPolicy")
    cfn_bucket = archive.bucket.node.default_child
    assert isinstance(cfn_bucket, CfnElement)
    bucket_id = Stack.of(function).get_logical_id(cfn_bucket)
    nag.acknowledge(
        policy,
        "IAM5",
        "grant_put on the raw archive: each message is written under a key only known at run time "
        "(raw/salesforce-outbound/<date>/<org>-<body hash>), so the resource is '<bucket arn>/*' and "
        "s3:Abort* lets the SDK abort its own failed multipart uploads.",
        findings=[f"Resource::<{bucket_id}.Arn>/*", "Action::s3:Abort*"],
    )
