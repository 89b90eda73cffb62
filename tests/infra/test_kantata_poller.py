"""The Kantata poller's wiring: its schedule, its own queue and DLQ, and least privilege — state and audit
tables (the watermarks live in StateTable), the Kantata secret and the raw archive's ``raw/kantata/``
prefix only; nothing of the ERP, Salesforce or the idempotency table."""

from __future__ import annotations

from typing import Any

from tests.infra.helpers import CONTEXT, flatten, functions_by_folder, of_type, ref_id


def _role_statements(resources: dict[str, dict[str, Any]], folder: str) -> list[dict[str, Any]]:
    _lid, function = functions_by_folder(resources)[folder]
    role = ref_id(function["Properties"]["Role"])
    statements: list[dict[str, Any]] = []
    for res in of_type(resources, "AWS::IAM::Policy").values():
        if role in [ref_id(r) for r in res["Properties"].get("Roles", [])]:
            statements.extend(res["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _resources_of(statement: dict[str, Any]) -> list[str]:
    value = statement["Resource"]
    return [flatten(v) for v in (value if isinstance(value, list) else [value])]


def _logical(resources: dict[str, dict[str, Any]], cfn_type: str, word: str) -> str:
    [found] = [lid for lid in of_type(resources, cfn_type) if word in lid]
    return found


def test_a_schedule_every_kantata_poll_minutes_ticks_its_own_queue_with_a_dlq(
    resources: dict[str, dict[str, Any]],
) -> None:
    rules = {
        lid: r
        for lid, r in of_type(resources, "AWS::Events::Rule").items()
        if r["Properties"].get("ScheduleExpression") == f"rate({CONTEXT['kantataPollMinutes']} minutes)"
    }
    [(rule_id, rule)] = rules.items()
    assert rule_id.startswith("KantataPoller")
    [target] = rule["Properties"]["Targets"]
    queue_id = ref_id(target["Arn"])
    queue = resources[queue_id]["Properties"]
    dlq_id = ref_id(queue["RedrivePolicy"]["deadLetterTargetArn"])
    assert dlq_id.startswith("KantataPollerDlq") and queue["RedrivePolicy"]["maxReceiveCount"] == 5
    # The poller may run 120 s (paging, backoff): the queue hides a tick 6 x that long.
    assert queue["VisibilityTimeout"] == 720
    [mapping] = [
        m
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if ref_id(m["Properties"]["EventSourceArn"]) == queue_id
    ]
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    _lid, function = functions_by_folder(resources)["kantata_poller"]
    assert ref_id(mapping["Properties"]["FunctionName"]) == _lid
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["KANTATA_BASE_URL"] == CONTEXT["kantataBaseUrl"]
    assert variables["KANTATA_PAGE_SIZE"] == str(CONTEXT["kantataPageSize"])


def test_the_poller_reads_and_writes_state_and_audit_only(resources: dict[str, dict[str, Any]]) -> None:
    state = _logical(resources, "AWS::DynamoDB::Table", "StateTable")
    audit = _logical(resources, "AWS::DynamoDB::Table", "AuditTable")
    idempotency = _logical(resources, "AWS::DynamoDB::Table", "IdempotencyTable")
    tables: set[str] = set()
    for statement in _role_statements(resources, "kantata_poller"):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if any(a.startswith("dynamodb:") for a in actions):
            tables.update(_resources_of(statement))
            assert "dynamodb:DeleteTable" not in actions and "dynamodb:*" not in actions
    referenced = " ".join(tables)
    assert state in referenced and audit in referenced  # the watermark item lives in StateTable
    assert idempotency not in referenced


def test_the_poller_reads_the_kantata_secret_and_no_other(resources: dict[str, dict[str, Any]]) -> None:
    kantata = _logical(resources, "AWS::SecretsManager::Secret", "KantataCredentials")
    secrets = [
        resource
        for statement in _role_statements(resources, "kantata_poller")
        if "secretsmanager:GetSecretValue" in statement["Action"]
        for resource in _resources_of(statement)
    ]
    assert secrets == ["${Ref:" + kantata + "}"]


def test_the_poller_archives_under_raw_kantata_only(resources: dict[str, dict[str, Any]]) -> None:
    s3 = [
        resource
        for statement in _role_statements(resources, "kantata_poller")
        if any(str(a).startswith("s3:") for a in statement["Action"])
        for resource in _resources_of(statement)
    ]
    assert s3 and all(resource.endswith("/raw/kantata/*") for resource in s3), s3
