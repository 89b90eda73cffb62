"""Lambda functions: runtime, architecture, code folder, environment contract, logging, roles."""

from __future__ import annotations

from typing import Any

import pytest

from infra.constructs.observability import EXCEPTION_RECORDERS
from infra.constructs.paths import REPO_ROOT
from infra.constructs.queue_consumer import MAX_RECEIVE_COUNT
from tests.infra.helpers import (
    COMMON_ENV,
    CONSUMERS,
    FUNCTIONS,
    SCHEDULED_CONSUMERS,
    STAGE,
    functions_by_folder,
    of_type,
    ref_id,
)

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def test_every_app_function_is_in_the_template(resources: dict[str, dict[str, Any]]) -> None:
    assert set(functions_by_folder(resources)) == set(FUNCTIONS)


def test_every_function_runs_python_3_14_on_arm64_with_r2r_source(
    resources: dict[str, dict[str, Any]],
) -> None:
    lambdas = of_type(resources, "AWS::Lambda::Function")
    for lid, res in lambdas.items():
        props = res["Properties"]
        source = (res.get("Metadata") or {}).get("r2r:source")
        if props.get("Runtime", "").startswith("nodejs"):
            # The AwsCustomResource provider (sets the DLQs' RedriveAllowPolicy) is CDK's own code.
            assert lid.startswith("AWS679f53fac002430cb0da5b7982bd2287"), lid
            continue
        if lid.startswith("BucketNotificationsHandler"):  # CDK's own, for event_bridge_enabled
            continue
        assert props["Runtime"] == "python3.14", lid
        assert props["Architectures"] == ["arm64"], lid
        assert props["Handler"] == "handler.handler", lid
        assert source and source.startswith("functions/"), lid
        assert (REPO_ROOT / source).is_dir(), source


@pytest.mark.parametrize("folder", sorted(FUNCTIONS))
def test_function_configuration(resources: dict[str, dict[str, Any]], folder: str) -> None:
    _lid, res = functions_by_folder(resources)[folder]
    props = res["Properties"]
    expected_env, timeout = FUNCTIONS[folder]
    env = props["Environment"]["Variables"]
    # Functions that record exceptions also get the exceptions topic (tests/infra/test_exceptions_topic.py).
    notify = {"EXCEPTIONS_TOPIC_ARN"} if folder in EXCEPTION_RECORDERS else set()
    # SQS consumers know their queue's maxReceiveCount: the last receive records a still-failing message.
    sqs_fed = folder in CONSUMERS or folder in SCHEDULED_CONSUMERS
    receives = {"MAX_RECEIVE_COUNT"} if sqs_fed else set()
    assert set(env) == COMMON_ENV | expected_env | notify | receives
    if sqs_fed:
        assert env["MAX_RECEIVE_COUNT"] == str(MAX_RECEIVE_COUNT)
    assert env["STAGE"] == STAGE
    assert env["POWERTOOLS_SERVICE_NAME"] == "r2r-" + folder.replace("_", "-")
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "r2r"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert props["Timeout"] == timeout
    assert props["MemorySize"] == 256
    assert props["TracingConfig"] == {"Mode": "Active"}
    # Explicit log group (not the deprecated log_retention custom resource).
    log_group = ref_id(props["LoggingConfig"]["LogGroup"])
    assert resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert "RetentionInDays" in resources[log_group]["Properties"]
    layers = [ref_id(layer) for layer in props["Layers"]]
    assert len(layers) == 2
    assert all(resources[layer]["Type"] == "AWS::Lambda::LayerVersion" for layer in layers)


def test_environment_references_resolve_to_the_right_resources(resources: dict[str, dict[str, Any]]) -> None:
    expected_types = {
        "RAW_BUCKET_NAME": "AWS::S3::Bucket",
        "EVENT_BUS_NAME": "AWS::Events::EventBus",
        "IDEMPOTENCY_TABLE_NAME": "AWS::DynamoDB::Table",
        "STATE_TABLE_NAME": "AWS::DynamoDB::Table",
        "AUDIT_TABLE_NAME": "AWS::DynamoDB::Table",
        "WEBHOOK_SECRETS_ARN": "AWS::SecretsManager::Secret",
        "ERP_SECRET_ARN": "AWS::SecretsManager::Secret",
        "STATE_MACHINE_ARN": "AWS::StepFunctions::StateMachine",
        "SALESFORCE_SECRET_ARN": "AWS::SecretsManager::Secret",
        "SALESFORCE_OUTBOUND_SECRETS_ARN": "AWS::SecretsManager::Secret",
        "KANTATA_SECRET_ARN": "AWS::SecretsManager::Secret",
    }
    table_for = {
        "IDEMPOTENCY_TABLE_NAME": "Idempotency",
        "STATE_TABLE_NAME": "State",
        "AUDIT_TABLE_NAME": "Audit",
    }
    secret_for = {
        "WEBHOOK_SECRETS_ARN": "WebhookSecrets",
        "ERP_SECRET_ARN": "ErpCredentials",
        "SALESFORCE_SECRET_ARN": "SalesforceCredentials",
        "SALESFORCE_OUTBOUND_SECRETS_ARN": "SalesforceOutboundSecrets",
        "KANTATA_SECRET_ARN": "KantataCredentials",
    }
    for folder, (_lid, res) in functions_by_folder(resources).items():
        for key, value in res["Properties"]["Environment"]["Variables"].items():
            if key not in expected_types:
                continue
            target = ref_id(value)
            assert resources[target]["Type"] == expected_types[key], (folder, key)
            if key in table_for:
                assert table_for[key] + "Table" in target, (folder, key, target)
            if key in secret_for:
                assert secret_for[key] in target, (folder, key, target)


def test_deps_and_core_layers_target_python_3_14_arm64(resources: dict[str, dict[str, Any]]) -> None:
    layers = of_type(resources, "AWS::Lambda::LayerVersion")
    assert len(layers) == 2
    for props in (r["Properties"] for r in layers.values()):
        assert props["CompatibleRuntimes"] == ["python3.14"]
        assert props["CompatibleArchitectures"] == ["arm64"]


def test_roles_use_no_aws_managed_policies(resources: dict[str, dict[str, Any]]) -> None:
    for lid, res in of_type(resources, "AWS::IAM::Role").items():
        if lid.startswith("BucketNotificationsHandler"):
            # CDK's handler for event_bridge_enabled always gets the basic execution policy (IAM4 acked).
            continue
        assert not res["Properties"].get("ManagedPolicyArns"), lid


def _statements(resources: dict[str, dict[str, Any]], role_id: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for res in of_type(resources, "AWS::IAM::Policy").values():
        roles = [ref_id(r) for r in res["Properties"].get("Roles", [])]
        if role_id in roles:
            statements.extend(res["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for st in statements:
        actions = st["Action"]
        found.update([actions] if isinstance(actions, str) else actions)
    return found


def test_function_roles_carry_the_grants_the_contract_needs(resources: dict[str, dict[str, Any]]) -> None:
    needs = {
        "ingest_webhook": {
            "s3:PutObject",
            "events:PutEvents",
            "dynamodb:PutItem",
            "secretsmanager:GetSecretValue",
        },
        "project_setup": {"dynamodb:PutItem", "events:PutEvents", "secretsmanager:GetSecretValue"},
        "time_posting": {"dynamodb:PutItem", "events:PutEvents", "secretsmanager:GetSecretValue"},
        "expense_posting": {"dynamodb:PutItem", "secretsmanager:GetSecretValue"},
        "milestone_trigger": {"dynamodb:PutItem", "states:StartExecution", "events:PutEvents"},
        "invoice_workflow": {"dynamodb:PutItem", "events:PutEvents", "secretsmanager:GetSecretValue"},
        "exception_router": {"dynamodb:PutItem"},
        "invoice_status_poller": {"dynamodb:UpdateItem", "events:PutEvents", "secretsmanager:GetSecretValue"},
        "invoice_status_writeback": {"dynamodb:UpdateItem", "secretsmanager:GetSecretValue"},
        "reconciliation": {"dynamodb:PutItem", "dynamodb:Scan", "secretsmanager:GetSecretValue"},
        "file_intake": {"s3:GetObject*", "events:PutEvents", "dynamodb:PutItem"},
        "resource_sync": {"dynamodb:PutItem", "dynamodb:UpdateItem", "secretsmanager:GetSecretValue"},
        "resource_allocation": {"dynamodb:PutItem", "dynamodb:Query", "secretsmanager:GetSecretValue"},
        "psa_provisioning": {"dynamodb:PutItem", "dynamodb:UpdateItem", "secretsmanager:GetSecretValue"},
        "kantata_poller": {
            "dynamodb:UpdateItem",
            "events:PutEvents",
            "secretsmanager:GetSecretValue",
            "s3:PutObject",
        },
        "billing_period_close": {
            "dynamodb:Scan",
            "dynamodb:PutItem",
            "states:StartExecution",
            "secretsmanager:GetSecretValue",
            "events:PutEvents",
        },
        "ingest_salesforce_outbound": {
            "s3:PutObject",
            "events:PutEvents",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "secretsmanager:GetSecretValue",
        },
        "salesforce_events": {
            "s3:PutObject",
            "events:PutEvents",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "secretsmanager:GetSecretValue",
        },
        "operator_api": {"dynamodb:GetItem", "dynamodb:Scan", "dynamodb:UpdateItem", "dynamodb:PutItem"},
    }
    for folder, (_lid, res) in functions_by_folder(resources).items():
        role = ref_id(res["Properties"]["Role"])
        actions = _actions(_statements(resources, role))
        assert needs[folder] <= actions, (folder, needs[folder] - actions)
        assert {"logs:CreateLogStream", "logs:PutLogEvents"} <= actions, folder
        # Logging is allowed on the function's own log group only.
        log_group = ref_id(res["Properties"]["LoggingConfig"]["LogGroup"])
        for st in _statements(resources, role):
            if "logs:PutLogEvents" in _actions([st]):
                assert ref_id(st["Resource"]) == log_group, folder
