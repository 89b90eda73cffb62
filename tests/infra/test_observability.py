"""The dashboard and the alarms (infra/constructs/observability.py) in the synthesized template."""

from __future__ import annotations

import json
from typing import Any

import pytest

from r2r_core import kpis
from tests.infra.helpers import flatten, functions_by_folder, of_type, ref_id

pytestmark = pytest.mark.infra


def _alarms(resources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in of_type(resources, "AWS::CloudWatch::Alarm").items()}


def _dlqs(resources: dict[str, dict[str, Any]]) -> set[str]:
    return {
        ref_id(r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
        for r in of_type(resources, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in r.get("Properties", {})
    }


def _watched_queue(alarm: dict[str, Any]) -> str | None:
    for dimension in alarm.get("Dimensions", []):
        if dimension["Name"] == "QueueName":
            return ref_id(dimension["Value"])
    return None


def test_every_dlq_has_a_not_empty_alarm(resources: dict[str, dict[str, Any]]) -> None:
    dlqs = _dlqs(resources)
    assert len(dlqs) >= 8
    not_empty = {
        _watched_queue(a)
        for a in _alarms(resources).values()
        if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and a["Threshold"] == 1
        and a["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    }
    assert dlqs <= not_empty, dlqs - not_empty


def test_every_source_queue_alarms_on_its_oldest_message(resources: dict[str, dict[str, Any]]) -> None:
    sources = {
        lid for lid, r in of_type(resources, "AWS::SQS::Queue").items() if "RedrivePolicy" in r["Properties"]
    }
    watched = {
        _watched_queue(a)
        for a in _alarms(resources).values()
        if a.get("MetricName") == "ApproximateAgeOfOldestMessage"
    }
    assert sources <= watched, sources - watched


def test_business_and_erp_alarms(resources: dict[str, dict[str, Any]]) -> None:
    alarms = list(_alarms(resources).values())
    by_metric = {(a.get("Namespace"), a.get("MetricName")): a for a in alarms}
    throttled = by_metric[("r2r", kpis.ERP_THROTTLED)]
    assert throttled["Statistic"] == "Sum" and "Dimensions" not in throttled  # the stack-wide series
    rate = by_metric[("r2r", kpis.INVOICE_EXCEPTION_RATE)]
    assert rate["Statistic"] == "Average" and rate["Threshold"] == 10
    executions = [
        a
        for a in alarms
        if any(
            (q.get("MetricStat") or {}).get("Metric", {}).get("MetricName") == "ExecutionsFailed"
            for q in a.get("Metrics", [])
        )
    ]
    assert len(executions) == 1


def test_every_alarm_notifies_the_encrypted_ssl_only_topic(resources: dict[str, dict[str, Any]]) -> None:
    (topic_id, topic) = next(iter(of_type(resources, "AWS::SNS::Topic").items()))
    key_id = ref_id(topic["Properties"]["KmsMasterKeyId"])
    assert resources[key_id]["Properties"]["EnableKeyRotation"] is True
    key_policy = json.dumps(resources[key_id]["Properties"]["KeyPolicy"])
    assert "cloudwatch.amazonaws.com" in key_policy
    policies = [
        p["Properties"]
        for p in of_type(resources, "AWS::SNS::TopicPolicy").values()
        if topic_id in json.dumps(p["Properties"]["Topics"])
    ]
    denies = [
        s
        for p in policies
        for s in p["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert denies, "the alarm topic must deny non-TLS publishing"
    for lid, alarm in _alarms(resources).items():
        assert [ref_id(a) for a in alarm["AlarmActions"]] == [topic_id], lid


def test_dashboard_shows_kpis_beside_technical_signals(resources: dict[str, dict[str, Any]]) -> None:
    (dashboard,) = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    body = flatten(dashboard["Properties"]["DashboardBody"])
    for metric in (
        kpis.TIME_TO_BILL,
        kpis.APPROVED_TIME_AGING,
        kpis.BILLING_TRIGGER_LATENCY,
        kpis.INVOICE_EXCEPTION_RATE,
        kpis.SYNC_SUCCESS,
        kpis.SYNC_FAILURE,
        kpis.UTILIZATION,
        kpis.BACKLOG,
        kpis.MARGIN_PERCENT,
        kpis.WRITE_OFF_PERCENT,
        kpis.PROJECT_SETUP_ACCURACY,
        kpis.DAYS_TO_COLLECT,
        kpis.UNBILLED_APPROVED_AMOUNT,
        kpis.ERP_THROTTLED,
    ):
        assert f'MetricName=\\"{metric}\\"' in body or f'"{metric}"' in body, metric
    assert "BusinessUnit,Region" in body
    for technical in (
        "Errors",
        "Throttles",
        "Duration",
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "ExecutionsFailed",
        "5XXError",
    ):
        assert f'"{technical}"' in body, technical
    for folder, (lid, _res) in functions_by_folder(resources).items():
        assert "${Ref:" + lid + "}" in body, f"{folder} missing from the dashboard"


def test_reconciliation_runs_daily_through_its_own_queue(resources: dict[str, dict[str, Any]]) -> None:
    lid, _ = functions_by_folder(resources)["reconciliation"]
    mappings = [
        m["Properties"]
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if ref_id(m["Properties"]["FunctionName"]) == lid
    ]
    (mapping,) = mappings
    queue = ref_id(mapping["EventSourceArn"])
    assert "RedrivePolicy" in resources[queue]["Properties"]
    rules = [
        r["Properties"]
        for r in of_type(resources, "AWS::Events::Rule").values()
        if any(ref_id(t["Arn"]) == queue for t in r["Properties"].get("Targets", []))
    ]
    assert [r.get("ScheduleExpression") for r in rules] == ["rate(1 day)"]
