"""Salesforce Event Relay: partner bus → rule → queue (+DLQ) → salesforce_events, with least privilege."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App

from infra.constructs.settings import (
    CTX_SALESFORCE_EVENT_SOURCE,
    DEFAULT_SALESFORCE_EVENT_SOURCE,
    StageSettings,
)
from tests.infra.helpers import flatten, functions_by_folder, of_type, ref_id

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _partner_bus(resources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    [(lid, bus)] = [
        (lid, r["Properties"])
        for lid, r in of_type(resources, "AWS::Events::EventBus").items()
        if "EventSourceName" in r["Properties"]
    ]
    return lid, bus


def _policy_statements(resources: dict[str, dict[str, Any]], folder: str) -> list[dict[str, Any]]:
    _lid, fn = functions_by_folder(resources)[folder]
    role = ref_id(fn["Properties"]["Role"])
    statements: list[dict[str, Any]] = []
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        if any(ref_id(r) == role for r in policy["Properties"]["Roles"]):
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _resources(statement: dict[str, Any]) -> list[str]:
    value = statement["Resource"]
    return [flatten(v) for v in (value if isinstance(value, list) else [value])]


def test_the_partner_bus_is_named_after_the_stages_event_source(resources: dict[str, dict[str, Any]]) -> None:
    _lid, bus = _partner_bus(resources)
    assert bus["EventSourceName"] == DEFAULT_SALESFORCE_EVENT_SOURCE
    assert bus["Name"] == bus["EventSourceName"]  # AWS's rule for partner buses


def test_one_rule_on_the_partner_bus_feeds_the_intakes_queue_with_its_dlq(
    resources: dict[str, dict[str, Any]],
) -> None:
    bus_id, bus = _partner_bus(resources)
    [rule] = [
        r["Properties"]
        for r in of_type(resources, "AWS::Events::Rule").values()
        if "EventBusName" in r["Properties"] and ref_id(r["Properties"]["EventBusName"]) == bus_id
    ]
    assert rule["EventPattern"] == {"source": [bus["EventSourceName"]]}
    [target] = rule["Targets"]
    queue = resources[ref_id(target["Arn"])]["Properties"]
    dlq = resources[ref_id(queue["RedrivePolicy"]["deadLetterTargetArn"])]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 5
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    fn_id, _fn = functions_by_folder(resources)["salesforce_events"]
    [mapping] = [
        m["Properties"]
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if ref_id(m["Properties"]["FunctionName"]) == fn_id
    ]
    assert ref_id(mapping["EventSourceArn"]) == ref_id(target["Arn"])
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_intake_publishes_on_the_canonical_bus_not_the_partner_bus(
    resources: dict[str, dict[str, Any]],
) -> None:
    partner_id, _ = _partner_bus(resources)
    _lid, fn = functions_by_folder(resources)["salesforce_events"]
    canonical = ref_id(fn["Properties"]["Environment"]["Variables"]["EVENT_BUS_NAME"])
    assert canonical != partner_id
    put = [s for s in _policy_statements(resources, "salesforce_events") if "events:PutEvents" in _actions(s)]
    assert [_resources(s) for s in put] == [["${GetAtt:" + canonical + ".Arn}"]]


def test_the_intake_has_least_privilege(resources: dict[str, dict[str, Any]]) -> None:
    statements = _policy_statements(resources, "salesforce_events")
    actions = {a for s in statements for a in _actions(s)}
    # Writes raw events under its own prefix only, reads no object, starts no workflow.
    s3 = [s for s in statements if any(a.startswith("s3:") for a in _actions(s))]
    assert all(r.endswith("/raw/salesforce-cdc/*") for s in s3 for r in _resources(s))
    assert not {a for a in actions if a.startswith("s3:Get") or a.startswith("s3:List")}
    assert not {a for a in actions if a.startswith("states:") or a.startswith("sqs:Send")}
    # Reads the Salesforce REST credentials only: not the ERP's, not the listener secrets.
    secrets = [s for s in statements if "secretsmanager:GetSecretValue" in _actions(s)]
    targets = {
        ref_id(r)
        for s in secrets
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    }
    assert len(targets) == 1 and "SalesforceCredentials" in next(iter(targets))
    assert all(s["Effect"] == "Allow" for s in statements)


def test_the_intake_records_exceptions_for_finance(resources: dict[str, dict[str, Any]]) -> None:
    _lid, fn = functions_by_folder(resources)["salesforce_events"]
    assert "EXCEPTIONS_TOPIC_ARN" in fn["Properties"]["Environment"]["Variables"]


def _settings(context: dict[str, Any]) -> StageSettings:
    return StageSettings.from_node(App(context=context).node)


def test_each_stage_names_its_own_event_source() -> None:
    prod = "aws.partner/salesforce.com/00D7x000001ProdAAA/0YL7x00000000P1AAA"
    sources = {"dev": DEFAULT_SALESFORCE_EVENT_SOURCE, "prod": prod}
    assert (
        _settings({"stage": "prod", CTX_SALESFORCE_EVENT_SOURCE: sources}).salesforce_event_source_name
        == prod
    )
    assert (
        _settings({"stage": "prod", CTX_SALESFORCE_EVENT_SOURCE: prod}).salesforce_event_source_name == prod
    )
    assert _settings({}).salesforce_event_source_name == DEFAULT_SALESFORCE_EVENT_SOURCE


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        (
            {"stage": "prod", CTX_SALESFORCE_EVENT_SOURCE: {"dev": DEFAULT_SALESFORCE_EVENT_SOURCE}},
            "no event source",
        ),
        (
            {CTX_SALESFORCE_EVENT_SOURCE: "aws.partner/example.com/x/y"},
            "must be a Salesforce partner event source",
        ),
        ({CTX_SALESFORCE_EVENT_SOURCE: "salesforce"}, "must be a Salesforce partner event source"),
    ],
)
def test_a_wrong_event_source_fails_the_synth_with_a_clear_message(
    context: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        _settings(context)
