"""The customer-managed data key: every queue, table, the raw archive, the bus and its archive, every
secret and log group are encrypted with it; the services that use it are scoped by conditions; functions
reach it only through the grants of what they use."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.helpers import flatten, functions_by_folder, of_type, ref_id

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _data_key(resources: dict[str, dict[str, Any]]) -> str:
    keys = [lid for lid in of_type(resources, "AWS::KMS::Key") if lid.startswith("DataKey")]
    assert len(keys) == 1, keys
    return keys[0]


def _is_key(value: Any, key_id: str) -> bool:
    return ref_id(value) == key_id


def test_one_customer_managed_key_with_rotation(resources: dict[str, dict[str, Any]]) -> None:
    key = resources[_data_key(resources)]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["UpdateReplacePolicy"] == "Retain"
    assert key["DeletionPolicy"] == "Retain"


def test_every_queue_and_dlq_is_encrypted_with_the_key(resources: dict[str, dict[str, Any]]) -> None:
    key_id = _data_key(resources)
    queues = of_type(resources, "AWS::SQS::Queue")
    assert len(queues) >= 20  # every consumer has a queue and a DLQ
    for lid, queue in queues.items():
        props = queue["Properties"]
        assert _is_key(props.get("KmsMasterKeyId"), key_id), lid
        assert "SqsManagedSseEnabled" not in props, lid


def test_every_table_is_customer_managed(resources: dict[str, dict[str, Any]]) -> None:
    key_id = _data_key(resources)
    tables = of_type(resources, "AWS::DynamoDB::Table")
    assert len(tables) == 3
    for lid, table in tables.items():
        sse = table["Properties"]["SSESpecification"]
        assert sse["SSEEnabled"] is True and sse["SSEType"] == "KMS", lid
        assert _is_key(sse["KMSMasterKeyId"], key_id), lid


def test_raw_archive_uses_sse_kms_with_a_bucket_key(resources: dict[str, dict[str, Any]]) -> None:
    key_id = _data_key(resources)
    _lid, ingest = functions_by_folder(resources)["ingest_webhook"]
    bucket = resources[ref_id(ingest["Properties"]["Environment"]["Variables"]["RAW_BUCKET_NAME"])]
    [rule] = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert _is_key(rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"], key_id)
    assert rule["BucketKeyEnabled"] is True


def test_the_bus_and_its_archive_are_encrypted_with_the_key(resources: dict[str, dict[str, Any]]) -> None:
    key_id = _data_key(resources)
    buses = of_type(resources, "AWS::Events::EventBus")
    assert len(buses) == 2  # the canonical bus and the Salesforce Event Relay partner bus
    for lid, bus in buses.items():
        assert _is_key(bus["Properties"].get("KmsKeyIdentifier"), key_id), lid
    [archive] = of_type(resources, "AWS::Events::Archive").values()
    assert _is_key(archive["Properties"]["KmsKeyIdentifier"], key_id)


def test_every_secret_and_log_group_is_encrypted_with_the_key(resources: dict[str, dict[str, Any]]) -> None:
    key_id = _data_key(resources)
    secrets = of_type(resources, "AWS::SecretsManager::Secret")
    assert len(secrets) == 5  # webhook, ERP, Salesforce, Salesforce Outbound, Kantata
    for lid, secret in secrets.items():
        assert _is_key(secret["Properties"].get("KmsKeyId"), key_id), lid
    log_groups = of_type(resources, "AWS::Logs::LogGroup")
    assert log_groups
    for lid, group in log_groups.items():
        assert _is_key(group["Properties"].get("KmsKeyId"), key_id), lid


def _service_statements(resources: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    statements = resources[_data_key(resources)]["Properties"]["KeyPolicy"]["Statement"]
    found = []
    for statement in statements:
        service = (statement.get("Principal") or {}).get("Service")
        if service is not None:
            found.append((flatten(service), statement))
    return found


def test_services_use_the_key_only_under_conditions(resources: dict[str, dict[str, Any]]) -> None:
    services = _service_statements(resources)
    assert {name for name, _ in services} == {"events.amazonaws.com", "logs.${Ref:AWS::Region}.amazonaws.com"}
    for name, statement in services:
        assert statement.get("Condition"), f"{name}: {statement['Action']} without a condition"
    events = [s for name, s in services if name == "events.amazonaws.com"]
    for statement in events:
        assert "aws:SourceAccount" in statement["Condition"]["StringEquals"]
    # The bus statement names the bus itself (ARN and encryption context).
    assert any("aws:SourceArn" in s["Condition"]["StringEquals"] for s in events)
    assert any(
        "kms:EncryptionContext:aws:events:event-bus:arn" in s["Condition"]["StringEquals"] for s in events
    )
    [logs] = [s for name, s in services if name.startswith("logs.")]
    assert flatten(logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]).endswith(
        ":log-group:*"
    )


def _key_actions(resources: dict[str, dict[str, Any]], function: dict[str, Any], key_id: str) -> set[str]:
    role_id = ref_id(function["Properties"]["Role"])
    actions: set[str] = set()
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        if role_id not in {ref_id(r) for r in policy["Properties"].get("Roles", [])}:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            targets = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            if any(isinstance(t, dict) and "Fn::GetAtt" in t and ref_id(t) == key_id for t in targets):
                listed = statement["Action"]
                actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def test_consumers_may_decrypt_what_their_queue_holds(resources: dict[str, dict[str, Any]]) -> None:
    key_id = _data_key(resources)
    for folder in ("time_posting", "exception_router", "reconciliation", "file_intake"):
        _lid, function = functions_by_folder(resources)[folder]
        assert "kms:Decrypt" in _key_actions(resources, function, key_id), folder


def test_only_writers_of_encrypted_data_may_generate_data_keys(resources: dict[str, dict[str, Any]]) -> None:
    key_id = _data_key(resources)
    by_folder = functions_by_folder(resources)
    # ingest_webhook writes the raw archive and the tables: it encrypts.
    assert "kms:GenerateDataKey*" in _key_actions(resources, by_folder["ingest_webhook"][1], key_id)
    # The operator API writes nothing but an exception's status and its audit record.
    operator = _key_actions(resources, by_folder["operator_api"][1], key_id)
    assert "kms:Decrypt" in operator
    assert not any(action.startswith("kms:ReEncrypt") for action in operator)
