"""REST API: POST /v1/webhooks/{source}, validator, throttling, access logs, tracing, output."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.helpers import CONTEXT, STAGE, flatten, functions_by_folder, of_type, ref_id

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


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


def _webhook_method(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [method] = [
        m["Properties"]
        for m in of_type(resources, "AWS::ApiGateway::Method").values()
        if _path_of(resources, ref_id(m["Properties"]["ResourceId"])) == "/v1/webhooks/{source}"
    ]
    return method


def test_post_routes_the_signed_webhook_and_the_salesforce_listener(
    resources: dict[str, dict[str, Any]],
) -> None:
    methods = of_type(resources, "AWS::ApiGateway::Method")
    routes = {
        (m["Properties"]["HttpMethod"], _path_of(resources, ref_id(m["Properties"]["ResourceId"])))
        for m in methods.values()
    }
    # Besides the operator API (/ops/..., IAM-authorized: tests/infra/test_operator_api.py).
    webhooks = {(method, path) for method, path in routes if not path.startswith("/ops/")}
    assert webhooks == {
        ("POST", "/v1/webhooks/{source}"),
        ("POST", "/v1/salesforce/outbound/{secret}"),
        ("POST", "/v1/salesforce/outbound"),  # the basic-auth variant
    }


def test_salesforce_listener_route_proxied_to_its_function(resources: dict[str, dict[str, Any]]) -> None:
    [method] = [
        m["Properties"]
        for m in of_type(resources, "AWS::ApiGateway::Method").values()
        if _path_of(resources, ref_id(m["Properties"]["ResourceId"])) == "/v1/salesforce/outbound/{secret}"
    ]
    assert method["AuthorizationType"] == "NONE"
    assert method["RequestParameters"] == {"method.request.path.secret": True}
    listener_id, _ = functions_by_folder(resources)["ingest_salesforce_outbound"]
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert "${GetAtt:" + listener_id + ".Arn}" in flatten(method["Integration"]["Uri"])


def test_one_post_route_proxied_to_ingest_webhook(resources: dict[str, dict[str, Any]]) -> None:
    method = _webhook_method(resources)
    assert method["HttpMethod"] == "POST"
    assert _path_of(resources, ref_id(method["ResourceId"])) == "/v1/webhooks/{source}"
    assert method["AuthorizationType"] == "NONE"
    integration = method["Integration"]
    assert integration["Type"] == "AWS_PROXY"
    ingest_id, _ = functions_by_folder(resources)["ingest_webhook"]
    assert "${GetAtt:" + ingest_id + ".Arn}" in flatten(integration["Uri"])


def test_validator_requires_the_source_path_parameter_only(resources: dict[str, dict[str, Any]]) -> None:
    method = _webhook_method(resources)
    # Webhook headers are not required here: the function answers 401 for a missing signature.
    assert method["RequestParameters"] == {"method.request.path.source": True}
    validator = resources[ref_id(method["RequestValidatorId"])]
    assert validator["Type"] == "AWS::ApiGateway::RequestValidator"
    assert validator["Properties"]["ValidateRequestParameters"] is True
    assert "RequestModels" not in method  # so body validation has nothing to check


def test_stage_throttling_tracing_and_json_access_logs(
    template: Template, resources: dict[str, dict[str, Any]]
) -> None:
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": STAGE,
            "TracingEnabled": True,
            "MethodSettings": Match.array_with(
                [
                    Match.object_like(
                        {
                            "HttpMethod": "*",
                            "ResourcePath": "/*",
                            "ThrottlingRateLimit": CONTEXT["apiThrottleRateLimit"],
                            "ThrottlingBurstLimit": CONTEXT["apiThrottleBurstLimit"],
                        }
                    )
                ]
            ),
        },
    )
    stage = next(iter(of_type(resources, "AWS::ApiGateway::Stage").values()))["Properties"]
    access = stage["AccessLogSetting"]
    destination = flatten(access["DestinationArn"])
    refs = [part.split("}")[0] for part in destination.split("${Ref:")[1:]]
    (log_group,) = [ref for ref in refs if ref in resources]
    assert resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert ":log-group:" in destination
    fields = json.loads(access["Format"])
    assert fields["requestId"] == "$context.requestId"
    assert {"status", "ip", "httpMethod", "resourcePath", "integrationErrorMessage"} <= set(fields)


def test_no_authorizer(resources: dict[str, dict[str, Any]]) -> None:
    assert not of_type(resources, "AWS::ApiGateway::Authorizer")


def test_api_url_output_is_the_webhook_base_url(template_json: dict[str, Any]) -> None:
    outputs = template_json["Outputs"]
    assert {"ApiUrl", "EventBusName", "StateMachineArn", "RawBucketName"} <= set(outputs)
    url = flatten(outputs["ApiUrl"]["Value"])
    assert url.startswith("https://${Ref:") and url.endswith("/v1/webhooks")
    # The RestApi's generated Endpoint output is replaced by ApiUrl.
    assert not [name for name in outputs if name.startswith("Webhooks")]


def test_salesforce_basic_auth_route_reaches_the_same_listener_without_a_required_header(
    resources: dict[str, dict[str, Any]],
) -> None:
    [method] = [
        m["Properties"]
        for m in of_type(resources, "AWS::ApiGateway::Method").values()
        if _path_of(resources, ref_id(m["Properties"]["ResourceId"])) == "/v1/salesforce/outbound"
    ]
    # No required header: a request without credentials gets the listener's SOAP 401, not a gateway 400.
    assert "RequestParameters" not in method
    assert method["AuthorizationType"] == "NONE" and method["HttpMethod"] == "POST"
    listener_id, _ = functions_by_folder(resources)["ingest_salesforce_outbound"]
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert "${GetAtt:" + listener_id + ".Arn}" in flatten(method["Integration"]["Uri"])
