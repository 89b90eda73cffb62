"""One synthesis of the CDK app per test session (no bundling), shared by every infra test."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

from aws_cdk.assertions import Template

from infra.synth import SynthResult, synthesize_app
from tests.infra.helpers import CONTEXT, STAGE


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthResult]:
    outdir = tmp_path_factory.mktemp("cdk.out")
    yield synthesize_app(stage=STAGE, outdir=outdir, bundle=False, context=CONTEXT)


@pytest.fixture(scope="session")
def template(synth: SynthResult) -> Template:
    return Template.from_stack(synth.stack)


@pytest.fixture(scope="session")
def template_json(synth: SynthResult) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(synth.template_path.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def resources(template_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(template_json["Resources"])
