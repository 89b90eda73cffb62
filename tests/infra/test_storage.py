"""Raw archive bucket, DynamoDB tables, secrets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.helpers import flatten, functions_by_folder, of_type, ref_id

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _raw_bucket(resources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    _lid, ingest = functions_by_folder(resources)["ingest_webhook"]
    bucket_id = ref_id(ingest["Properties"]["Environment"]["Variables"]["RAW_BUCKET_NAME"])
    return bucket_id, resources[bucket_id]["Properties"]


def _denies_insecure_transport(resources: dict[str, dict[str, Any]], bucket_id: str) -> bool:
    for res in of_type(resources, "AWS::S3::BucketPolicy").values():
        if ref_id(res["Properties"]["Bucket"]) != bucket_id:
            continue
        for st in res["Properties"]["PolicyDocument"]["Statement"]:
            if st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}:
                return True
    return False


def test_raw_bucket_is_encrypted_versioned_private_and_tls_only(resources: dict[str, dict[str, Any]]) -> None:
    bucket_id, props = _raw_bucket(resources)
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert _denies_insecure_transport(resources, bucket_id)
    assert "BucketName" not in props


def test_raw_bucket_lifecycle(resources: dict[str, dict[str, Any]]) -> None:
    _bucket_id, props = _raw_bucket(resources)
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any(
        {"StorageClass": "STANDARD_IA", "TransitionInDays": 30} in r.get("Transitions", []) for r in rules
    )
    assert any(r.get("NoncurrentVersionExpiration") == {"NoncurrentDays": 90} for r in rules)
    assert all(r["Status"] == "Enabled" for r in rules)


def test_raw_bucket_server_access_logs_go_to_a_private_log_bucket(
    resources: dict[str, dict[str, Any]],
) -> None:
    _bucket_id, props = _raw_bucket(resources)
    log_bucket = ref_id(props["LoggingConfiguration"]["DestinationBucketName"])
    log_props = resources[log_bucket]["Properties"]
    assert log_props["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert "BucketEncryption" in log_props
    assert _denies_insecure_transport(resources, log_bucket)


def test_data_is_retained_by_default(resources: dict[str, dict[str, Any]]) -> None:
    for cfn_type in ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SecretsManager::Secret"):
        for lid, res in of_type(resources, cfn_type).items():
            assert res.get("DeletionPolicy") == "Retain", lid
            assert res.get("UpdateReplacePolicy") == "Retain", lid


@pytest.mark.parametrize(
    ("name", "keys", "ttl"),
    [
        ("IdempotencyTable", [("id", "HASH")], "expiration"),
        ("StateTable", [("pk", "HASH"), ("sk", "RANGE")], None),
        ("AuditTable", [("pk", "HASH"), ("sk", "RANGE")], None),
    ],
)
def test_tables(
    resources: dict[str, dict[str, Any]], name: str, keys: list[tuple[str, str]], ttl: str | None
) -> None:
    matches = [r for lid, r in of_type(resources, "AWS::DynamoDB::Table").items() if name in lid]
    assert len(matches) == 1, name
    props = matches[0]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]] == keys
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == {
        k: "S" for k, _ in keys
    }
    if ttl:
        assert props["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in props


def test_secrets_hold_a_generated_json_skeleton_only(resources: dict[str, dict[str, Any]]) -> None:
    secrets = of_type(resources, "AWS::SecretsManager::Secret")
    assert len(secrets) == 5
    assert any("SalesforceOutboundSecrets" in lid for lid in secrets)
    assert any("WebhookSecrets" in lid for lid in secrets)
    assert any("ErpCredentials" in lid for lid in secrets)
    assert any("SalesforceCredentials" in lid for lid in secrets)
    assert any("KantataCredentials" in lid for lid in secrets)
    for lid, res in secrets.items():
        props = res["Properties"]
        assert "SecretString" not in props, lid
        assert props["GenerateSecretString"]["SecretStringTemplate"].startswith("{"), lid
        assert "Name" not in props, lid
    webhook = next(r for lid, r in secrets.items() if "WebhookSecrets" in lid)
    assert "generic" in flatten(webhook["Properties"]["GenerateSecretString"]["SecretStringTemplate"])
