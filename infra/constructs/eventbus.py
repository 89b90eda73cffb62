"""The custom EventBridge bus for canonical events, archived for replay, both under the stack's data key."""

from __future__ import annotations

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.constructs.encryption import DataKey

CANONICAL_SOURCE = "r2r.canonical"
ARCHIVE_RETENTION = Duration.days(90)


class CanonicalEventBus(Construct):
    """Custom bus (``Source="r2r.canonical"`` events) with an Archive of everything put on it."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        key = DataKey.of(self)
        self.bus = events.EventBus(
            self,
            "Bus",
            description="r2r canonical events (source r2r.canonical)",
            # CDK adds the key-policy statement for events.amazonaws.com, scoped to this bus (aws:SourceArn,
            # aws:SourceAccount, kms:EncryptionContext:aws:events:event-bus:arn). Callers of PutEvents need
            # no KMS permission: EventBridge uses the key on their behalf.
            kms_key=key,
        )
        self.archive = events.Archive(
            self,
            "Archive",
            source_event_bus=self.bus,
            description="r2r canonical events, kept for replay",
            # Every event put on this bus is in this account: archive them all.
            event_pattern=events.EventPattern(account=[Aws.ACCOUNT_ID]),
            retention=ARCHIVE_RETENTION,
        )
        self._encrypt_archive()

    def _encrypt_archive(self) -> None:
        """The archive under the data key too. Not through ``Archive(kms_key=...)``: CDK would scope its
        key statement with the bus's ``Fn::GetAtt`` ARN, and key -> bus -> key is a cycle when the bus
        uses the same key. The bus ARN is built from the bus's synthesized name instead (as CDK does for
        the bus itself)."""
        stack = Stack.of(self)
        key = DataKey.of(self)
        cfn_bus = self.bus.node.default_child
        assert isinstance(cfn_bus, events.CfnEventBus)
        bus_arn = stack.format_arn(service="events", resource="event-bus", resource_name=cfn_bus.name)
        cfn_archive = self.archive.node.default_child
        assert isinstance(cfn_archive, events.CfnArchive)
        cfn_archive.add_property_override("KmsKeyIdentifier", key.key_arn)
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeEncryptsTheCanonicalArchive",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncrypt*"],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "aws:SourceAccount": stack.account,
                        "kms:EncryptionContext:aws:events:event-bus:arn": bus_arn,
                    }
                },
            )
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeDescribesTheKey",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:DescribeKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
