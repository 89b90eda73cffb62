"""cdk-nag (AwsSolutions), acknowledgment hygiene, cfn-lint, no hard-coded physical names."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack, Stage, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from infra.synth import SynthResult
from tests.infra.helpers import STAGE

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

# Properties that would pin a resource's physical name (and break replacement / multiple stages).
PHYSICAL_NAME_PROPERTIES = {
    "AWS::SQS::Queue": "QueueName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Lambda::LayerVersion": "LayerName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::Events::Archive": "ArchiveName",
}


def _walk(construct: IConstruct) -> list[IConstruct]:
    found = [construct]
    for child in construct.node.children:
        found.extend(_walk(child))
    return found


def test_no_unacknowledged_aws_solutions_findings(synth: SynthResult) -> None:
    report = AwsSolutionsChecks().validate_scope(synth.app)
    findings = [
        f"{v.rule_name} at {[r.construct_path for r in v.violating_resources]}" for v in report.violations
    ]
    assert findings == []
    assert report.success


def test_no_error_or_warning_annotations(synth: SynthResult) -> None:
    messages = synth.assembly.get_stack_artifact(synth.stack.artifact_id).messages
    problems = [f"{m.level.name}: {m.entry.data}" for m in messages if m.level.name in {"ERROR", "WARNING"}]
    assert problems == []


def test_validation_report_has_no_violations(synth: SynthResult) -> None:
    report = Path(synth.assembly.directory) / "validation-report.json"
    if report.exists():
        data = json.loads(report.read_text(encoding="utf-8"))
        assert all(not p.get("violations") for p in data.get("pluginReports", []))


def test_every_acknowledgment_is_per_resource_with_a_reason(synth: SynthResult) -> None:
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged: dict[str, dict[str, str]] = {}
    for construct in _walk(synth.app):
        for entry in construct.node.metadata:
            if entry.type != key:
                continue
            assert not Stack.is_stack(construct), f"stack-wide acknowledgment on {construct.node.path}"
            assert not Stage.is_stage(construct), f"app-wide acknowledgment on {construct.node.path}"
            for rule, reason in dict(entry.data).items():
                assert len(str(reason).strip()) >= 10, (construct.node.path, rule)
                acknowledged.setdefault(construct.node.path, {})[rule] = reason
    rules = {
        match.group(0)
        for per_path in acknowledged.values()
        for rule in per_path
        if (match := re.search(r"AwsSolutions-[A-Z]+[0-9]+", rule))
    }
    # The acknowledgments this app documents (see infra/constructs): nothing else crept in.
    assert rules <= {
        "AwsSolutions-IAM4",  # CDK's BucketNotificationsHandler only (see the roles test)
        "AwsSolutions-IAM5",
        "AwsSolutions-APIG3",
        "AwsSolutions-APIG4",
        "AwsSolutions-APIG6",
        "AwsSolutions-COG4",
        "AwsSolutions-S1",
        "AwsSolutions-SMG4",
    }, rules


def test_cfn_lint_finds_no_errors(synth: SynthResult) -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--format", "json", str(synth.template_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert result.returncode in {0, 2, 4, 6, 8, 10, 12, 14}, result.stderr  # >=2: findings, not a crash
    findings = json.loads(result.stdout or "[]")
    errors = [f for f in findings if f["Level"] == "Error"]
    assert errors == []
    # The only warning tolerated: CDK's explicit DependsOn on a role it also references by GetAtt.
    other = [f for f in findings if f["Rule"]["Id"] not in {"W3005"}]
    assert other == [], other


def test_no_hard_coded_physical_names(template_json: dict[str, Any]) -> None:
    for lid, res in template_json["Resources"].items():
        prop = PHYSICAL_NAME_PROPERTIES.get(res["Type"])
        if prop:
            assert prop not in res.get("Properties", {}), (lid, prop)
    # EventBridge requires a bus name: CDK generates it from the stack and construct path. The one
    # exception AWS imposes: a partner event bus is named after its partner event source.
    for res in template_json["Resources"].values():
        if res["Type"] == "AWS::Events::EventBus":
            name = res["Properties"]["Name"]
            if "EventSourceName" in res["Properties"]:
                assert name == res["Properties"]["EventSourceName"]
                assert name.startswith("aws.partner/salesforce.com/"), name
                continue
            assert re.fullmatch(rf"r2r{STAGE}\w+[0-9A-F]{{8}}", name), name
