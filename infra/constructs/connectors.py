"""Connectors in the source systems' own wire formats.

Salesforce Outbound Messages (SOAP): ``POST /v1/salesforce/outbound/{secret}`` (or
``POST /v1/salesforce/outbound`` with ``Authorization: Basic <OrganizationId>:<secret>``) on the webhook API →
``ingest_salesforce_outbound`` (archive, map, publish, SOAP Ack). The listener secrets per
organisation live in ``SalesforceOutboundSecrets`` (``{"<OrganizationId>": ["<secret>", …]}``).

Salesforce Change Data Capture through Event Relay: partner event bus → rule → queue (own DLQ) →
``salesforce_events`` (re-read through the REST API, map, publish).
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
from infra.constructs.encryption import DataKey
from infra.constructs.functions import R2rFunction
from infra.constructs.queue_consumer import QueueConsumer
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
_LISTENER_BASIC_AUTH = (
    "Salesforce Outbound Messages cannot use IAM/Cognito: this route checks HTTP basic credentials "
    "(user = OrganizationId, password = that organisation's listener secret from SalesforceOutboundSecrets, "
    "constant-time) and the OrganizationId in the message before anything is published; throttled stage."
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
            encryption_key=DataKey.of(self),
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
        # The basic-auth variant: the same listener at /v1/salesforce/outbound, credentials in the header
        # (user = OrganizationId, password = a listener secret). The header is not required here, so a
        # request without it reaches the function and gets its SOAP 401 fault, not a gateway 400.
        self.basic_method = resource.parent_resource.add_method(  # type: ignore[union-attr]
            "POST",
            apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False),
            authorization_type=apigw.AuthorizationType.NONE,
            request_validator=api.validator,
        )
        nag.acknowledge(self.basic_method, "APIG4", _LISTENER_BASIC_AUTH)
        nag.acknowledge(self.basic_method, "COG4", _LISTENER_BASIC_AUTH)


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


EVENTS_TIMEOUT = Duration.seconds(30)
CDC_ARCHIVE_PREFIX = "raw/salesforce-cdc/"


class SalesforceEventRelayIntake(Construct):
    """Salesforce Change Data Capture via Event Relay (or AppFlow): partner bus → rule → queue (+DLQ) →
    ``salesforce_events``, which re-reads each changed record through the Salesforce REST API and publishes
    canonical events on the canonical bus.

    The partner bus must be named after its partner event source (AWS's rule), so its name is the
    stage's ``salesforceEventSourceName``: the one physical name in the stack, and an inherent one.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        event_source_name: str,
        tables: DataTables,
        archive: RawArchive,
        bus: events.IEventBus,
        salesforce_credentials: secretsmanager.ISecret,
        salesforce_base_url: str,
        layers: Sequence[lambda_.ILayerVersion],
        stage: str,
        removal_policy: RemovalPolicy,
        max_concurrency: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.partner_bus = events.EventBus(
            self,
            "PartnerBus",
            event_source_name=event_source_name,
            description="r2r: Salesforce Event Relay partner event bus (Change Data Capture)",
            # Change events carry client and deal data: under the data key, like the canonical bus.
            kms_key=DataKey.of(self),
        )
        self.intake = QueueConsumer(
            self,
            "Intake",
            folder="salesforce_events",
            stage=stage,
            timeout=EVENTS_TIMEOUT,
            environment={
                "RAW_BUCKET_NAME": archive.bucket.bucket_name,
                "EVENT_BUS_NAME": bus.event_bus_name,
                "IDEMPOTENCY_TABLE_NAME": tables.idempotency.table_name,
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "SALESFORCE_SECRET_ARN": salesforce_credentials.secret_arn,
                "SALESFORCE_BASE_URL": salesforce_base_url,
            },
            layers=layers,
            log_removal_policy=removal_policy,
            # Only events of this source reach this bus; the intake checks each one again.
            event_pattern=events.EventPattern(source=[event_source_name]),
            event_bus=self.partner_bus,
            max_concurrency=max_concurrency,
            description="r2r salesforce_events: Salesforce change events (Event Relay) to canonical events",
        )
        function = self.intake.function
        tables.grant_state_and_audit(function, idempotency=True)
        bus.grant_put_events_to(function)
        archive.bucket.grant_put(function, f"{CDC_ARCHIVE_PREFIX}*")
        salesforce_credentials.grant_read(function)
        cfn_bucket = archive.bucket.node.default_child
        assert isinstance(cfn_bucket, CfnElement)
        bucket_id = Stack.of(self).get_logical_id(cfn_bucket)
        nag.acknowledge(
            self.intake.consumer.role.node.find_child("DefaultPolicy"),
            "IAM5",
            "grant_put on the raw archive's raw/salesforce-cdc/ prefix only: each change event is written "
            "under a key known at run time (raw/salesforce-cdc/<date>/<body hash>); s3:Abort* lets the SDK "
            "abort its own failed multipart uploads.",
            findings=[f"Resource::<{bucket_id}.Arn>/{CDC_ARCHIVE_PREFIX}*", "Action::s3:Abort*"],
        )
