"""The raw payload archive: every authenticated webhook body, kept as received."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constructs import nag
from infra.constructs.encryption import DataKey

RAW_IA_TRANSITION = Duration.days(30)
RAW_NONCURRENT_EXPIRATION = Duration.days(90)
ACCESS_LOG_EXPIRATION = Duration.days(365)


class RawArchive(Construct):
    """Versioned, encrypted, TLS-only bucket (key ``raw/<source>/<yyyy>/<mm>/<dd>/<webhook-id>``)
    with S3 server access logs delivered to a companion log bucket."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # log delivery requires SSE-S3
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=ACCESS_LOG_EXPIRATION,
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            removal_policy=removal_policy,
        )
        nag.acknowledge(
            self.access_logs,
            "S1",
            "This bucket is the server-access-log destination of the raw archive; logging it "
            "would need yet another bucket (or log into itself, which S3 advises against).",
        )

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            # SSE-KMS under the data key; the S3 bucket key keeps the KMS calls (and their cost) per
            # bucket, not per object. grant_put / grant_read add the KMS actions writer / reader need.
            encryption=s3.BucketEncryption.KMS,
            encryption_key=DataKey.of(self),
            bucket_key_enabled=True,
            versioned=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="raw-archive/",
            # File drops (inbound/workday/, inbound/timesheets/, inbound/expenses/) reach their intake
            # queue through EventBridge (aws.s3 "Object Created" on the default bus).
            event_bridge_enabled=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="archive-raw-payloads",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=RAW_IA_TRANSITION,
                        )
                    ],
                    noncurrent_version_expiration=RAW_NONCURRENT_EXPIRATION,
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            removal_policy=removal_policy,
        )
