"""The analytics feed: every canonical event, as put on the bus, in S3 by type and day, queryable by Athena.

EventBridge rule (every ``r2r.canonical`` event on the canonical bus) → Kinesis Data Firehose (direct put,
dynamic partitioning) → the analytics bucket under
``events/type=<detail-type>/dt=<yyyy-mm-dd of the event's time>/`` (one JSON event per line, GZIP), records
Firehose cannot partition under ``errors/<error type>/dt=<arrival day>/``; a Glue database and table (OpenX
JSON SerDe, partition projection on ``type`` and ``dt``) make it a table for Athena without crawlers or
``MSCK REPAIR``. The rule's role may only put records on this stream; Firehose's role may only write and
list this bucket and write its own error log stream.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jsii
from aws_cdk import Aws, CfnElement, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constructs import nag
from infra.constructs.encryption import DataKey
from infra.constructs.eventbus import CANONICAL_SOURCE

EVENTS_PREFIX = "events/"
# Partition keys from the EventBridge event (JQ 1.6): its detail-type and the day of its time (UTC).
PARTITION_QUERY = '{type: ."detail-type", dt: .time[0:10]}'
DELIVERY_PREFIX = EVENTS_PREFIX + "type=!{partitionKeyFromQuery:type}/dt=!{partitionKeyFromQuery:dt}/"
ERROR_PREFIX = "errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/"
# Dynamic partitioning needs at least 64 MiB buffers; five minutes bounds the delay of a quiet feed.
BUFFER_MB = 64
BUFFER_SECONDS = 300
TABLE_NAME = "canonical_events"
PROJECTION_START = "2026-01-01"
IA_TRANSITION = Duration.days(90)
GLACIER_TRANSITION = Duration.days(365)
EVENTS_EXPIRATION = Duration.days(365 * 7)  # financial records: seven years
ERRORS_EXPIRATION = Duration.days(90)
LOG_RETENTION = logs.RetentionDays.THREE_MONTHS

# The envelope of every canonical event (docs/architecture.md); ``data`` differs per type, so it is kept
# as JSON text (OpenX JSON SerDe renders a nested object in a string column as its JSON).
_ENVELOPE = (
    "struct<type:string,schema_version:string,event_id:string,source_system:string,"
    "source_record_id:string,source_record_version:int,correlation_id:string,occurred_at:string,"
    "data:string>"
)
COLUMNS = (
    ("version", "string", "EventBridge event version"),
    ("id", "string", "EventBridge event id"),
    ("detail_type", "string", "the canonical event type (detail-type)"),
    ("source", "string", "r2r.canonical"),
    ("account", "string", "AWS account"),
    ("time", "string", "when the event was put on the bus (ISO 8601, UTC)"),
    ("region", "string", "AWS region"),
    ("resources", "array<string>", "EventBridge resources"),
    ("detail", _ENVELOPE, "the canonical envelope; detail.data is the record as JSON text"),
)


def glue_name(stage: str, suffix: str) -> str:
    """``r2r_<stage>_<suffix>`` in the characters Glue and Athena take unquoted."""
    return re.sub(r"[^a-z0-9_]", "_", f"r2r_{stage}_{suffix}".lower())


class AnalyticsFeed(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bus: events.IEventBus,
        stage: str,
        event_types: Sequence[str],
        access_logs: s3.IBucket,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="analytics/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="age-events",
                    prefix=EVENTS_PREFIX,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS, transition_after=IA_TRANSITION
                        ),
                        s3.Transition(
                            storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
                            transition_after=GLACIER_TRANSITION,
                        ),
                    ],
                    expiration=EVENTS_EXPIRATION,
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
                s3.LifecycleRule(id="expire-errors", prefix="errors/", expiration=ERRORS_EXPIRATION),
            ],
            removal_policy=removal_policy,
        )

        self.log_group = logs.LogGroup(
            self,
            "DeliveryLogs",
            retention=LOG_RETENTION,
            removal_policy=removal_policy,
            encryption_key=DataKey.of(self),
        )
        log_stream = logs.LogStream(
            self, "S3Delivery", log_group=self.log_group, removal_policy=removal_policy
        )

        # Firehose assumes this role only on behalf of this account (confused-deputy guard).
        self.delivery_role = iam.Role(
            self,
            "DeliveryRole",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
            description="r2r analytics feed: Firehose writes the analytics bucket",
        )
        self.bucket.grant_put(self.delivery_role)
        self.bucket.grant_read(self.delivery_role)  # GetBucketLocation, ListBucket(MultipartUploads)
        self.log_group.grant_write(self.delivery_role)

        self.delivery_stream = firehose.CfnDeliveryStream(
            self,
            "DeliveryStream",
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="AWS_OWNED_CMK"
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=self.bucket.bucket_arn,
                role_arn=self.delivery_role.role_arn,
                prefix=DELIVERY_PREFIX,
                error_output_prefix=ERROR_PREFIX,
                compression_format="GZIP",
                file_extension=".json.gz",
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=BUFFER_SECONDS, size_in_m_bs=BUFFER_MB
                ),
                dynamic_partitioning_configuration=firehose.CfnDeliveryStream.DynamicPartitioningConfigurationProperty(
                    enabled=True,
                    retry_options=firehose.CfnDeliveryStream.RetryOptionsProperty(duration_in_seconds=300),
                ),
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True,
                    processors=[
                        firehose.CfnDeliveryStream.ProcessorProperty(
                            type="MetadataExtraction",
                            parameters=[
                                firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                    parameter_name="MetadataExtractionQuery", parameter_value=PARTITION_QUERY
                                ),
                                firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                    parameter_name="JsonParsingEngine", parameter_value="JQ-1.6"
                                ),
                            ],
                        ),
                        # One event per line, so the JSON SerDe reads each as a row.
                        firehose.CfnDeliveryStream.ProcessorProperty(
                            type="AppendDelimiterToRecord",
                            parameters=[
                                firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                    parameter_name="Delimiter", parameter_value="\\n"
                                )
                            ],
                        ),
                    ],
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True,
                    log_group_name=self.log_group.log_group_name,
                    log_stream_name=log_stream.log_stream_name,
                ),
            ),
        )
        # Firehose checks its role when the stream is created: the policy must exist first.
        self.delivery_stream.node.add_dependency(self.delivery_role.node.find_child("DefaultPolicy"))

        # The rule's role may put records on this one stream, nothing else.
        self.target_role = iam.Role(
            self,
            "TargetRole",
            assumed_by=iam.ServicePrincipal(
                "events.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
            description="r2r analytics feed: the canonical bus rule puts records on the delivery stream",
        )
        iam.Grant.add_to_principal(
            grantee=self.target_role,
            actions=["firehose:PutRecord", "firehose:PutRecordBatch"],
            resource_arns=[self.delivery_stream.attr_arn],
        )
        self.rule = events.Rule(
            self,
            "AllCanonicalEvents",
            event_bus=bus,
            description="r2r analytics feed: every canonical event to Firehose",
            event_pattern=events.EventPattern(source=[CANONICAL_SOURCE]),
            targets=[_FirehoseTarget(self.delivery_stream.attr_arn, self.target_role)],  # type: ignore[list-item]
        )

        self.database_name = glue_name(stage, "analytics")
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=Aws.ACCOUNT_ID,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name, description="r2r analytics feed (canonical events)"
            ),
        )
        location = f"s3://{self.bucket.bucket_name}/{EVENTS_PREFIX}"
        self.table = glue.CfnTable(
            self,
            "EventsTable",
            catalog_id=Aws.ACCOUNT_ID,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=TABLE_NAME,
                description="every canonical event as put on the bus; partitions by type and day (projected)",
                table_type="EXTERNAL_TABLE",
                partition_keys=[
                    glue.CfnTable.ColumnProperty(name="type", type="string", comment="detail-type"),
                    glue.CfnTable.ColumnProperty(
                        name="dt", type="string", comment="yyyy-MM-dd of time (UTC)"
                    ),
                ],
                parameters={
                    "classification": "json",
                    "compressionType": "gzip",
                    "projection.enabled": "true",
                    "projection.type.type": "enum",
                    "projection.type.values": ",".join(event_types),
                    "projection.dt.type": "date",
                    "projection.dt.format": "yyyy-MM-dd",
                    "projection.dt.range": f"{PROJECTION_START},NOW",
                    "projection.dt.interval": "1",
                    "projection.dt.interval.unit": "DAYS",
                    "storage.location.template": location + "type=${type}/dt=${dt}/",
                },
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location,
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    compressed=True,
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.openx.data.jsonserde.JsonSerDe",
                        parameters={"mapping.detail_type": "detail-type", "case.insensitive": "TRUE"},
                    ),
                    columns=[glue.CfnTable.ColumnProperty(name=n, type=t, comment=c) for n, t, c in COLUMNS],
                ),
            ),
        )
        self.table.node.add_dependency(self.database)
        self._acknowledge()

    def _acknowledge(self) -> None:
        stack = Stack.of(self)
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, CfnElement)
        bucket_id = stack.get_logical_id(cfn_bucket)
        nag.acknowledge(
            self.delivery_role.node.find_child("DefaultPolicy"),
            "IAM5",
            "Firehose writes objects under keys it names at delivery (partition prefix + its own file "
            "names), so the bucket resource is '<bucket arn>/*'; grant_put / grant_read name s3:Abort* "
            "(abort its own multipart uploads), s3:GetObject*, s3:GetBucket* and s3:List* (the bucket "
            "location and multipart listing Firehose needs).",
            findings=[
                f"Resource::<{bucket_id}.Arn>/*",
                "Action::s3:Abort*",
                "Action::s3:GetObject*",
                "Action::s3:GetBucket*",
                "Action::s3:List*",
            ],
        )


@jsii.implements(events.IRuleTarget)
class _FirehoseTarget:
    """A rule target for an L1 delivery stream (the L2 target needs the L2 stream, whose module adds an
    unused CIDR mapping to the template)."""

    def __init__(self, stream_arn: str, role: iam.IRole) -> None:
        self._arn, self._role = stream_arn, role

    def bind(self, _rule: events.IRule, _id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self._arn, role=self._role)
