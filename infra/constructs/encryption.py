"""The stack's customer-managed KMS key (rotation on) for data at rest.

One key encrypts the consumer queues and their DLQs, the DynamoDB tables, the raw archive bucket
(SSE-KMS with an S3 bucket key), the canonical event bus and its archive, the secrets and the log
groups. Functions get the key only through the ``grant_*`` of the resource they use
(``grant_consume_messages`` on a queue, ``grant_read`` on a secret, ``grant_read_write_data`` on a
table...), which add the KMS actions on this key and nothing else.

The key policy names the AWS services that use the key on r2r's behalf, each scoped with conditions:

- EventBridge delivering matched events to the encrypted queues (rule targets): added by CDK's SQS
  target, ``aws:SourceAccount`` = this account (feature flag ``eventsTargetQueueSameAccount``); the
  rule's ARN cannot be named, since rule -> queue -> key -> rule would be a cycle.
- EventBridge encrypting the canonical bus (added by CDK's ``EventBus``: ``aws:SourceArn``,
  ``aws:SourceAccount``, ``kms:EncryptionContext:aws:events:event-bus:arn`` = the bus) and its archive
  (``infra.constructs.eventbus``: the same encryption context and account).
- CloudWatch Logs encrypting this account's log groups in this region
  (``kms:EncryptionContext:aws:logs:arn``).

S3 event notifications reach the default bus (EventBridge), not a queue, and carry only object
metadata, so S3 needs no use of the key; no SNS topic delivers to these queues (the alarm and
exception topics have a key of their own).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.constructs import nag

DATA_KEY_ID = "DataKey"


class DataKey(Construct):
    """``kms.Key`` with rotation, plus the CloudWatch Logs statement of its key policy."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self,
            "Key",
            description="r2r data at rest: queues, tables, raw archive, event bus, secrets, log groups",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsEncryptsThisAccountsLogGroups",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )

    @classmethod
    def of(cls, scope: Construct) -> kms.IKey:
        """The stack's data key; created (retained on delete) if the stack has none yet."""
        stack = Stack.of(scope)
        existing = stack.node.try_find_child(DATA_KEY_ID)
        if isinstance(existing, DataKey):
            return existing.key
        return cls(stack, DATA_KEY_ID, removal_policy=RemovalPolicy.RETAIN).key


# What CDK's grant_* on a KMS-encrypted resource adds: the key actions with wildcards, on this one key.
_KEY_GRANT_WILDCARDS = ("kms:GenerateDataKey*", "kms:ReEncrypt*")


def acknowledge_key_grants(scope: Construct) -> None:
    """Acknowledge IAM5 for the KMS action wildcards of ``grant_*``, policy by policy where they occur.

    Call once every grant is made (the end of the stack). Each acknowledgment names the wildcard actions the
    policy really holds; the resource of those statements is the data key (or the alarm topic key) by ARN.
    """
    stack = Stack.of(scope)
    for construct in scope.node.find_all():
        if not isinstance(construct, iam.Policy):
            continue
        document = stack.resolve(construct.document.to_json())
        actions: set[str] = set()
        for statement in document.get("Statement", []):
            listed = statement.get("Action", [])
            actions.update([listed] if isinstance(listed, str) else listed)
        found = [action for action in _KEY_GRANT_WILDCARDS if action in actions]
        if found:
            nag.acknowledge(
                construct,
                "IAM5",
                "KMS actions added by CDK's grant_* on a KMS-encrypted queue, table, bucket, secret or "
                "topic (kms:GenerateDataKey* = GenerateDataKey and GenerateDataKeyWithoutPlaintext, "
                "kms:ReEncrypt* = ReEncryptFrom/To); the statement names the one key by ARN, never '*'.",
                findings=[f"Action::{action}" for action in found],
            )
