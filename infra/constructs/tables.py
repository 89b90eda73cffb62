"""DynamoDB tables: idempotency records, the single-table state store, the audit trail."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.constructs.encryption import DataKey


def _table(
    scope: Construct,
    construct_id: str,
    *,
    partition_key: str,
    sort_key: str | None,
    removal_policy: RemovalPolicy,
    time_to_live_attribute: str | None = None,
) -> dynamodb.Table:
    return dynamodb.Table(
        scope,
        construct_id,
        partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
        sort_key=(
            dynamodb.Attribute(name=sort_key, type=dynamodb.AttributeType.STRING) if sort_key else None
        ),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        # grant_*_data on a table adds the KMS actions on this key to the grantee.
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryption_key=DataKey.of(scope),
        time_to_live_attribute=time_to_live_attribute,
        removal_policy=removal_policy,
    )


class DataTables(Construct):
    """``IdempotencyTable`` (id, TTL expiration), ``StateTable`` and ``AuditTable`` (pk/sk)."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.idempotency = _table(
            self,
            "IdempotencyTable",
            partition_key="id",
            sort_key=None,
            time_to_live_attribute="expiration",
            removal_policy=removal_policy,
        )
        self.state = _table(
            self, "StateTable", partition_key="pk", sort_key="sk", removal_policy=removal_policy
        )
        self.audit = _table(
            self, "AuditTable", partition_key="pk", sort_key="sk", removal_policy=removal_policy
        )

    def grant_state_and_audit(self, grantee: iam.IGrantable, *, idempotency: bool = False) -> None:
        """What a flow function needs: read/write on the state and audit tables (and idempotency)."""
        self.state.grant_read_write_data(grantee)
        self.audit.grant_read_write_data(grantee)
        if idempotency:
            self.idempotency.grant_read_write_data(grantee)
