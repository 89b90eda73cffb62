"""Operator API: IAM authorization on every /ops route, three roles with exactly their methods, outputs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.helpers import flatten, functions_by_folder, of_type, ref_id

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

GETS = {
    ("GET", "/ops/lineage/invoices/*"),
    ("GET", "/ops/exceptions"),
    ("GET", "/ops/exceptions/*"),
    ("GET", "/ops/kpis"),
}
RESOLVE = ("POST", "/ops/exceptions/*/resolve")
EXPECTED = {
    "read-only": GETS,
    "finance-ops": GETS | {RESOLVE},
    "integration-admin": GETS | {RESOLVE},
}


def _path_of(resources: dict[str, dict[str, Any]], resource_id: str) -> str:
    parts: list[str] = []
    current: Any = {"Ref": resource_id}
    while isinstance(current, dict) and "Ref" in current and current["Ref"] in resources:
        res = resources[current["Ref"]]
        if res["Type"] != "AWS::ApiGateway::Resource":
            break
        parts.append(res["Properties"]["PathPart"])
        current = res["Properties"]["ParentId"]
    return "/" + "/".join(reversed(parts))


def _methods(resources: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (m["Properties"]["HttpMethod"], _path_of(resources, ref_id(m["Properties"]["ResourceId"]))): m[
            "Properties"
        ]
        for m in of_type(resources, "AWS::ApiGateway::Method").values()
    }


def _operator_roles(resources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        res["Metadata"]["r2r:operator-role"]: res
        for res in of_type(resources, "AWS::IAM::Role").values()
        if "r2r:operator-role" in (res.get("Metadata") or {})
    }


def _invocable(role: dict[str, Any]) -> set[tuple[str, str]]:
    """(method, path) of each execute-api:Invoke resource of the role (``.../<stage>/<METHOD>/<path>``)."""
    found: set[tuple[str, str]] = set()
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            assert statement["Action"] == "execute-api:Invoke"
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            for arn in map(flatten, resources):
                assert arn.startswith(
                    "arn:${Ref:AWS::Partition}:execute-api:${Ref:AWS::Region}:${Ref:AWS::AccountId}:"
                )
                # <api id>/<stage>/<METHOD>/<path>: the first two parts are the API and its stage.
                parts = arn.split("/")
                assert parts[0].endswith("}") and parts[1].startswith("${Ref:"), arn
                found.add((parts[2], "/" + "/".join(parts[3:])))
    return found


def test_every_operator_route_requires_iam_and_reaches_the_operator_function(
    resources: dict[str, dict[str, Any]],
) -> None:
    methods = _methods(resources)
    operator = {key: m for key, m in methods.items() if key[1].startswith("/ops/")}
    assert {(method, path.replace("{id}", "*")) for method, path in operator} == GETS | {RESOLVE}
    function_id, _ = functions_by_folder(resources)["operator_api"]
    for key, method in operator.items():
        assert method["AuthorizationType"] == "AWS_IAM", key
        assert method["Integration"]["Type"] == "AWS_PROXY", key
        assert "${GetAtt:" + function_id + ".Arn}" in flatten(method["Integration"]["Uri"]), key
        if "{id}" in key[1]:
            assert method["RequestParameters"] == {"method.request.path.id": True}, key


def test_webhook_routes_stay_unauthenticated_by_iam(resources: dict[str, dict[str, Any]]) -> None:
    methods = _methods(resources)
    for key in (("POST", "/v1/webhooks/{source}"), ("POST", "/v1/salesforce/outbound/{secret}")):
        assert methods[key]["AuthorizationType"] == "NONE", key


def test_each_role_may_invoke_exactly_its_methods(resources: dict[str, dict[str, Any]]) -> None:
    roles = _operator_roles(resources)
    assert set(roles) == set(EXPECTED)
    for label, role in roles.items():
        assert _invocable(role) == EXPECTED[label], label
    assert RESOLVE not in _invocable(roles["read-only"])


def test_roles_are_trusted_by_the_account_and_carry_nothing_else(
    resources: dict[str, dict[str, Any]],
) -> None:
    for label, role in _operator_roles(resources).items():
        [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Action"] == "sts:AssumeRole"
        assert (
            flatten(statement["Principal"]["AWS"])
            == "arn:${Ref:AWS::Partition}:iam::${Ref:AWS::AccountId}:root"
        )
        assert "ManagedPolicyArns" not in role["Properties"], label
        assert role["Properties"]["MaxSessionDuration"] == 3600
        # No other policy is attached to an operator role.
        role_id = next(lid for lid, res in resources.items() if res is role)
        for policy in of_type(resources, "AWS::IAM::Policy").values():
            assert role_id not in {ref_id(r) for r in policy["Properties"].get("Roles", [])}, label


def test_role_arns_and_the_api_url_are_outputs(template_json: dict[str, Any]) -> None:
    outputs = template_json["Outputs"]
    for name in ("FinanceOpsRoleArn", "IntegrationAdminRoleArn", "ReadOnlyRoleArn"):
        assert ref_id(outputs[name]["Value"]) in _role_ids(template_json["Resources"]), name
    assert flatten(outputs["OperatorApiUrl"]["Value"]).endswith("/ops")


def _role_ids(resources: dict[str, dict[str, Any]]) -> set[str]:
    return {lid for lid, res in resources.items() if "r2r:operator-role" in (res.get("Metadata") or {})}


def test_the_operator_function_cannot_delete_or_batch_write(resources: dict[str, dict[str, Any]]) -> None:
    _lid, function = functions_by_folder(resources)["operator_api"]
    role_id = ref_id(function["Properties"]["Role"])
    actions: set[str] = set()
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        if role_id in {ref_id(r) for r in policy["Properties"].get("Roles", [])}:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                listed = statement["Action"]
                actions.update([listed] if isinstance(listed, str) else listed)
    dynamodb = {a for a in actions if a.startswith("dynamodb:")}
    assert {"dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Scan"} <= dynamodb
    assert not dynamodb & {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    assert not any(a.startswith(("sqs:", "events:", "s3:", "secretsmanager:")) for a in actions)
