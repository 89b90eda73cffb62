"""The analytics feed in the template: rule → Firehose (dynamic partitioning) → bucket, Glue table, roles."""

from __future__ import annotations

import json
from typing import Any

from infra.constructs.analytics import DELIVERY_PREFIX, ERROR_PREFIX, PARTITION_QUERY, TABLE_NAME
from r2r_core.model.events import EVENT_TYPES
from tests.infra.helpers import of_type, ref_id


def _one(
    resources: dict[str, dict[str, Any]], cfn_type: str, prefix: str = "AnalyticsFeed"
) -> tuple[str, Any]:
    [(lid, res)] = [(k, v) for k, v in of_type(resources, cfn_type).items() if k.startswith(prefix)]
    return lid, res


def _stream(resources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    return _one(resources, "AWS::KinesisFirehose::DeliveryStream")


def _policy_of(resources: dict[str, dict[str, Any]], role_id: str) -> list[dict[str, Any]]:
    return [
        st
        for res in of_type(resources, "AWS::IAM::Policy").values()
        if role_id in [ref_id(r) for r in res["Properties"]["Roles"]]
        for st in res["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_firehose_partitions_by_event_type_and_day_into_the_analytics_bucket(
    resources: dict[str, dict[str, Any]],
) -> None:
    _lid, stream = _stream(resources)
    props = stream["Properties"]
    assert props["DeliveryStreamType"] == "DirectPut"
    assert props["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "AWS_OWNED_CMK"}
    s3 = props["ExtendedS3DestinationConfiguration"]
    bucket_id, _ = _one(resources, "AWS::S3::Bucket", "AnalyticsFeedBucket")
    assert ref_id(s3["BucketARN"]) == bucket_id
    assert s3["Prefix"] == "events/type=!{partitionKeyFromQuery:type}/dt=!{partitionKeyFromQuery:dt}/"
    assert s3["ErrorOutputPrefix"] == ERROR_PREFIX and "!{firehose:error-output-type}" in ERROR_PREFIX
    assert s3["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert s3["BufferingHints"]["SizeInMBs"] >= 64  # the minimum with dynamic partitioning
    assert s3["CompressionFormat"] == "GZIP" and s3["FileExtension"] == ".json.gz"
    processors = {p["Type"]: {x["ParameterName"]: x["ParameterValue"] for x in p["Parameters"]}
                  for p in s3["ProcessingConfiguration"]["Processors"]}  # fmt: skip
    assert processors["MetadataExtraction"] == {
        "MetadataExtractionQuery": '{type: ."detail-type", dt: .time[0:10]}',
        "JsonParsingEngine": "JQ-1.6",
    }
    assert processors["AppendDelimiterToRecord"] == {"Delimiter": "\\n"}
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True


def test_the_bucket_is_private_encrypted_tls_only_and_ages_its_objects(
    resources: dict[str, dict[str, Any]],
) -> None:
    bucket_id, bucket = _one(resources, "AWS::S3::Bucket", "AnalyticsFeedBucket")
    props = bucket["Properties"]
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "analytics/"
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["age-events"]["Prefix"] == "events/" and rules["age-events"]["ExpirationInDays"] == 2555
    assert [t["StorageClass"] for t in rules["age-events"]["Transitions"]] == ["STANDARD_IA", "GLACIER_IR"]
    assert rules["expire-errors"]["ExpirationInDays"] == 90
    [(_pid, policy)] = [
        (k, v)
        for k, v in of_type(resources, "AWS::S3::BucketPolicy").items()
        if ref_id(v["Properties"]["Bucket"]) == bucket_id
    ]
    [deny] = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_canonical_event_goes_to_the_stream_through_a_role_that_can_only_put_records(
    resources: dict[str, dict[str, Any]],
) -> None:
    stream_id, _ = _stream(resources)
    _lid, rule = _one(resources, "AWS::Events::Rule")
    props = rule["Properties"]
    bus_id, _ = next(iter(of_type(resources, "AWS::Events::EventBus").items()))
    assert ref_id(props["EventBusName"]) == bus_id
    assert props["EventPattern"] == {"source": ["r2r.canonical"]}  # every type, nothing else
    [target] = props["Targets"]
    assert ref_id(target["Arn"]) == stream_id
    role_id = ref_id(target["RoleArn"])
    trust = resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]
    [statement] = _policy_of(resources, role_id)
    assert sorted(statement["Action"]) == ["firehose:PutRecord", "firehose:PutRecordBatch"]
    assert ref_id(statement["Resource"]) == stream_id


def test_firehose_may_only_write_and_list_the_analytics_bucket_and_its_log(
    resources: dict[str, dict[str, Any]],
) -> None:
    _lid, stream = _stream(resources)
    role_id = ref_id(stream["Properties"]["ExtendedS3DestinationConfiguration"]["RoleARN"])
    trust = resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
    bucket_id, _ = _one(resources, "AWS::S3::Bucket", "AnalyticsFeedBucket")
    log_id, _ = _one(resources, "AWS::Logs::LogGroup")
    statements = _policy_of(resources, role_id)
    actions = {
        a for st in statements for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    }
    assert {"s3:PutObject", "s3:Abort*", "s3:GetBucket*", "s3:List*", "logs:PutLogEvents"} <= actions
    assert not any(a.startswith(("s3:Delete", "s3:*", "s3:PutBucket")) for a in actions)
    text = json.dumps(statements)
    named = {ref for ref in (bucket_id, log_id) if ref in text}
    assert named == {bucket_id, log_id}
    assert '"Resource": "*"' not in text
    # The stream waits for its role's policy (Firehose checks it at creation).
    policy_id = next(
        k
        for k, v in of_type(resources, "AWS::IAM::Policy").items()
        if role_id in [ref_id(r) for r in v["Properties"]["Roles"]]
    )
    assert policy_id in stream.get("DependsOn", [])


def test_glue_table_projects_type_and_day_partitions_over_the_firehose_prefix(
    resources: dict[str, dict[str, Any]],
) -> None:
    db_id, database = _one(resources, "AWS::Glue::Database")
    _tid, table = _one(resources, "AWS::Glue::Table")
    assert database["Properties"]["DatabaseInput"]["Name"] == "r2r_dev_analytics"
    props = table["Properties"]
    assert props["DatabaseName"] == "r2r_dev_analytics" and db_id in table["DependsOn"]
    table_input = props["TableInput"]
    assert table_input["Name"] == TABLE_NAME and table_input["TableType"] == "EXTERNAL_TABLE"
    assert [k["Name"] for k in table_input["PartitionKeys"]] == ["type", "dt"]
    params = table_input["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.type.type"] == "enum"
    assert sorted(params["projection.type.values"].split(",")) == sorted(EVENT_TYPES)
    assert (params["projection.dt.type"], params["projection.dt.format"]) == ("date", "yyyy-MM-dd")
    assert params["projection.dt.range"].endswith(",NOW")
    # The projected location is exactly where Firehose writes (its prefix with the keys substituted).
    template = json.dumps(params["storage.location.template"])
    firehose_prefix = DELIVERY_PREFIX.replace("!{partitionKeyFromQuery:type}", "${type}").replace(
        "!{partitionKeyFromQuery:dt}", "${dt}"
    )
    assert firehose_prefix in template
    serde = table_input["StorageDescriptor"]["SerdeInfo"]
    assert serde["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert serde["Parameters"]["mapping.detail_type"] == "detail-type"
    columns = {c["Name"]: c["Type"] for c in table_input["StorageDescriptor"]["Columns"]}
    assert columns["detail_type"] == "string" and columns["time"] == "string"
    assert columns["detail"].startswith("struct<type:string,") and "data:string" in columns["detail"]
    assert all(f"{key}:" in PARTITION_QUERY for key in ("type", "dt"))
