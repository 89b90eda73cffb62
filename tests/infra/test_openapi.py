"""The OpenAPI spec of the inbound API (events/openapi/webhooks.yaml) matches what is deployed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra.catalog import build_catalog
from infra.synth import ensure_synthesized
from r2r_core.model.events import WebhookPayload

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]
SPEC_PATH = Path(__file__).resolve().parents[2] / "events" / "openapi" / "webhooks.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return loaded


def test_the_spec_has_exactly_the_synthesized_routes(spec: dict[str, Any]) -> None:
    catalog = build_catalog(json.loads(ensure_synthesized().read_text(encoding="utf-8")))
    # The inbound (webhook) API; the operator API (/ops/..., IAM-authorized) is not for senders.
    deployed = {
        (r["method"].upper(), r["path"]) for r in catalog["routes"] if not r["path"].startswith("/ops/")
    }
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert documented == deployed


def test_the_webhook_body_is_the_canonical_model(spec: dict[str, Any]) -> None:
    documented = spec["components"]["schemas"]["WebhookPayload"]
    model = WebhookPayload.model_json_schema()
    assert set(documented["properties"]) == set(model["properties"])
    assert set(documented["required"]) == set(model["required"])
    assert documented["additionalProperties"] is model["additionalProperties"] is False
    assert documented["properties"]["correlation_id"]["anyOf"][0]["maxLength"] == 128


def test_every_rejection_is_documented_with_a_body_naming_the_problem(spec: dict[str, Any]) -> None:
    webhook = spec["paths"]["/v1/webhooks/{source}"]["post"]["responses"]
    # the answers of r2r_core.flows.ingest / functions/ingest_webhook (README "The generic signed webhook")
    assert {"202", "400", "401", "404", "409", "413", "422", "503"} <= set(webhook)
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"error", "message"}
    outbound = spec["paths"]["/v1/salesforce/outbound/{secret}"]["post"]["responses"]
    assert {"200", "400", "401", "500"} <= set(outbound)
