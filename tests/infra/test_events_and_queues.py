"""Canonical bus + archive; rule -> queue (own DLQ, redrivable) -> consumer, four times."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra.helpers import (
    CONSUMERS,
    CONTEXT,
    SCHEDULED_CONSUMERS,
    flatten,
    functions_by_folder,
    of_type,
    ref_id,
)

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _bus_id(resources: dict[str, dict[str, Any]], *, partner: bool = False) -> str:
    """The canonical bus (or the Salesforce Event Relay partner bus): one of each."""
    buses = [
        lid
        for lid, res in of_type(resources, "AWS::Events::EventBus").items()
        if ("EventSourceName" in res["Properties"]) == partner
    ]
    assert len(buses) == 1
    return buses[0]


def test_custom_bus_is_archived_for_replay(resources: dict[str, dict[str, Any]]) -> None:
    bus = _bus_id(resources)
    archives = of_type(resources, "AWS::Events::Archive")
    assert len(archives) == 1
    props = next(iter(archives.values()))["Properties"]
    assert ref_id(props["SourceArn"]) == bus
    assert props["RetentionDays"] >= 90


def _consumer_wiring(resources: dict[str, dict[str, Any]], folder: str) -> dict[str, Any]:
    """The ESM, queue, DLQ and rule feeding ``folder``'s function."""
    fn_id, fn = functions_by_folder(resources)[folder]
    mappings = [
        r["Properties"]
        for r in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if ref_id(r["Properties"]["FunctionName"]) == fn_id
    ]
    assert len(mappings) == 1, folder
    esm = mappings[0]
    queue_id = ref_id(esm["EventSourceArn"])
    queue = resources[queue_id]
    assert queue["Type"] == "AWS::SQS::Queue"
    dlq_id = ref_id(queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
    rules = [
        r["Properties"]
        for r in of_type(resources, "AWS::Events::Rule").values()
        if any(ref_id(t["Arn"]) == queue_id for t in r["Properties"]["Targets"])
    ]
    assert len(rules) == 1, folder
    return {
        "function": fn["Properties"],
        "esm": esm,
        "queue_id": queue_id,
        "queue": queue["Properties"],
        "dlq_id": dlq_id,
        "dlq": resources[dlq_id]["Properties"],
        "rule": rules[0],
    }


@pytest.mark.parametrize("folder", sorted(CONSUMERS | SCHEDULED_CONSUMERS))
def test_queue_and_dlq(resources: dict[str, dict[str, Any]], folder: str) -> None:
    w = _consumer_wiring(resources, folder)
    queue, dlq = w["queue"], w["dlq"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 5
    assert dlq["MessageRetentionPeriod"] == 1209600
    assert queue["MessageRetentionPeriod"] == 4 * 86400
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert queue["VisibilityTimeout"] >= 6 * w["function"]["Timeout"]
    for props in (queue, dlq):
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props
        assert "QueueName" not in props
    # The DLQ is used by this queue only, and is not itself redriven anywhere.
    assert "RedrivePolicy" not in dlq


@pytest.mark.parametrize("folder", sorted(CONSUMERS | SCHEDULED_CONSUMERS))
def test_queues_deny_insecure_transport(resources: dict[str, dict[str, Any]], folder: str) -> None:
    w = _consumer_wiring(resources, folder)
    for queue_id in (w["queue_id"], w["dlq_id"]):
        statements = [
            st
            for r in of_type(resources, "AWS::SQS::QueuePolicy").values()
            if queue_id in [ref_id(q) for q in r["Properties"]["Queues"]]
            for st in r["Properties"]["PolicyDocument"]["Statement"]
        ]
        assert any(
            st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for st in statements
        ), queue_id


@pytest.mark.parametrize("folder", sorted(CONSUMERS | SCHEDULED_CONSUMERS))
def test_dlq_redrive_allow_policy_names_its_source_queue(
    resources: dict[str, dict[str, Any]], folder: str
) -> None:
    """The RedriveAllowPolicy is set by a custom resource (see QueueConsumer): a DLQ property
    referencing the source queue would be a circular dependency."""
    w = _consumer_wiring(resources, folder)
    calls = []
    for res in of_type(resources, "Custom::AWS").values():
        create = flatten(res["Properties"]["Create"])
        if "${Ref:" + w["dlq_id"] + "}" in create:
            calls.append(create)
    assert len(calls) == 1, folder
    call = calls[0]
    assert '"action":"setQueueAttributes"' in call
    # The policy is JSON inside the call's JSON: unescape once.
    policy_json = re.search(r'"RedriveAllowPolicy":"(.*?)"\}', call)
    assert policy_json, call
    policy = json.loads(policy_json.group(1).replace('\\"', '"'))
    assert policy == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": ["${GetAtt:" + w["queue_id"] + ".Arn}"],
    }


BULK_CONSUMERS = {"time_posting"}


@pytest.mark.parametrize("folder", sorted(CONSUMERS | SCHEDULED_CONSUMERS))
def test_event_source_mapping(resources: dict[str, dict[str, Any]], folder: str) -> None:
    esm = _consumer_wiring(resources, folder)["esm"]
    if folder in BULK_CONSUMERS:
        # Month-end volume: 100 records an invoke, gathered for at most a second.
        assert esm["BatchSize"] == 100
        assert esm["MaximumBatchingWindowInSeconds"] == 1
    else:
        assert esm["BatchSize"] == 10
        assert "MaximumBatchingWindowInSeconds" not in esm
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    expected = (CONSUMERS.get(folder) or SCHEDULED_CONSUMERS[folder])[-1]
    assert esm["ScalingConfig"]["MaximumConcurrency"] == expected


@pytest.mark.parametrize("folder", sorted(SCHEDULED_CONSUMERS))
def test_schedule_rule_ticks_the_pollers_own_queue(resources: dict[str, dict[str, Any]], folder: str) -> None:
    wiring = _consumer_wiring(resources, folder)
    rule = wiring["rule"]
    assert rule["ScheduleExpression"] == SCHEDULED_CONSUMERS[folder][0]
    assert "EventPattern" not in rule and "EventBusName" not in rule  # schedules live on the default bus
    assert wiring["queue"]["RedrivePolicy"]["maxReceiveCount"] >= 5


def test_every_erp_writing_consumer_is_capped_at_the_erp_share(resources: dict[str, dict[str, Any]]) -> None:
    """A consumer whose function holds the ERP secret counts against NetSuite's account-wide limit."""
    share = CONSUMERS["project_setup"][2]
    capped = 0
    for folder, (_lid, fn) in functions_by_folder(resources).items():
        if (
            "ERP_SECRET_ARN" not in fn["Properties"]["Environment"]["Variables"]
            or folder == "invoice_workflow"
        ):
            continue
        esm = _consumer_wiring(resources, folder)["esm"]
        assert esm["ScalingConfig"]["MaximumConcurrency"] <= share, folder
        capped += 1
    # project_setup, time_posting, expense_posting, invoice_status_poller, reconciliation, resource_sync,
    # resource_allocation, period close
    assert capped == 8


def test_master_data_writers_keep_to_their_smaller_erp_share(resources: dict[str, dict[str, Any]]) -> None:
    """A bulk worker resync cannot take more of NetSuite's concurrency than its own small share: the rest
    stays with the financial flows (time and expense posting, the period close, invoices)."""
    master, financial = CONTEXT["erpMasterDataShare"], CONTEXT["erpConcurrencyShare"]
    assert master < financial
    for folder in ("resource_sync", "resource_allocation"):
        esm = _consumer_wiring(resources, folder)["esm"]
        assert esm["ScalingConfig"]["MaximumConcurrency"] == master, folder
    for folder in ("time_posting", "expense_posting", "project_setup"):
        esm = _consumer_wiring(resources, folder)["esm"]
        assert esm["ScalingConfig"]["MaximumConcurrency"] == financial, folder


@pytest.mark.parametrize("folder", sorted(CONSUMERS))
def test_rule_pattern_and_bus(resources: dict[str, dict[str, Any]], folder: str) -> None:
    rule = _consumer_wiring(resources, folder)["rule"]
    bus, detail_type, _ = CONSUMERS[folder]
    pattern = rule["EventPattern"]
    if folder == "salesforce_events":
        partner_bus = resources[_bus_id(resources, partner=True)]["Properties"]
        assert ref_id(rule["EventBusName"]) == _bus_id(resources, partner=True)
        assert pattern == {"source": [partner_bus["EventSourceName"]]}
        return
    if folder == "resource_sync":
        assert pattern["detail-type"] == ["resource.upserted", "resource.terminated"]
    else:
        assert pattern["detail-type"] == [detail_type]
    if folder == "file_intake":
        assert "EventBusName" not in rule  # S3 notifies the default bus
        assert pattern["source"] == ["aws.s3"]
        (bucket,) = pattern["detail"]["bucket"]["name"]
        assert resources[ref_id(bucket)]["Type"] == "AWS::S3::Bucket"
        assert pattern["detail"]["object"]["key"] == [
            {"prefix": "inbound/workday/"},
            {"prefix": "inbound/timesheets/"},
            {"prefix": "inbound/expenses/"},
        ]
    elif bus == "custom":
        assert ref_id(rule["EventBusName"]) == _bus_id(resources)
        assert pattern["source"] == ["r2r.canonical"]
    else:
        assert "EventBusName" not in rule  # the default bus
        assert pattern["source"] == ["aws.states"]
        assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
        (machine,) = pattern["detail"]["stateMachineArn"]
        assert resources[ref_id(machine)]["Type"] == "AWS::StepFunctions::StateMachine"


def test_every_consumer_has_its_own_queue_pair(resources: dict[str, dict[str, Any]]) -> None:
    consumers = len(CONSUMERS) + len(SCHEDULED_CONSUMERS)
    assert len(of_type(resources, "AWS::SQS::Queue")) == 2 * consumers
    assert len(of_type(resources, "AWS::Lambda::EventSourceMapping")) == consumers


def test_the_period_end_flush_posts_at_the_erp_share(resources: dict[str, dict[str, Any]]) -> None:
    """A month's time summaries are ERP-bound: the flush uses the share an ERP writer may have in flight."""
    _lid, fn = functions_by_folder(resources)["billing_period_close"]
    variables = fn["Properties"]["Environment"]["Variables"]
    assert variables["ERP_CONCURRENCY_SHARE"] == str(CONTEXT["erpConcurrencyShare"])
