"""Circular flows are impossible by construction: the flow graph, checked against the template, is acyclic.

The graph (``r2r_core.ownership.flow_graph``): an owner's change of an object enters as the event types
that carry it (ingest), a rule routes an event type to its consumer, a consumer publishes events and
writes objects into systems. The consumers of each function are read from the synthesized template's
rules (what is deployed), the publishes and writes are the reviewed declaration ``FLOWS``, checked
against each function's grants (a function that can put events declares what it publishes, one that
holds the ERP or Salesforce credentials declares what it writes or reads). A cycle would mean r2r's own
write could come back as an event that makes it write again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra.catalog import build_catalog
from infra.constructs.eventbus import CANONICAL_SOURCE
from infra.synth import ensure_synthesized
from r2r_core.ownership import (
    CRM,
    ERP,
    FLOWS,
    INGEST_FUNCTIONS,
    INVOICE_RUN,
    PSA,
    Flow,
    find_cycle,
    flow_graph,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


@pytest.fixture(scope="module")
def catalog() -> dict[str, Any]:
    return build_catalog(json.loads(ensure_synthesized().read_text(encoding="utf-8")))


def deployed_consumes(catalog: dict[str, Any]) -> dict[str, set[str]]:
    """Function -> canonical event types routed to it by a rule on the canonical bus."""
    consumer_of = {q["queue"]: q["consumer"] for q in catalog["queues"]}
    out: dict[str, set[str]] = {}
    for rule in catalog["rules"]:
        pattern = rule.get("pattern") or {}
        if rule.get("bus") == "default" or CANONICAL_SOURCE not in pattern.get("source", []):
            continue  # S3 file drops, the Salesforce partner bus: outside changes, not canonical events
        for target in rule["targets"]:
            if target in consumer_of:  # the analytics feed's Firehose stream copies events, runs no code
                out.setdefault(consumer_of[target], set()).update(pattern["detail-type"])
    return out


def test_every_function_declares_its_flow(catalog: dict[str, Any]) -> None:
    functions = {f["function"] for f in catalog["functions"]}
    undeclared = functions - set(FLOWS) - INGEST_FUNCTIONS
    assert not undeclared, f"declare the flow of {sorted(undeclared)} in r2r_core.ownership.FLOWS"
    assert set(FLOWS) <= functions, f"FLOWS names functions the stack does not have: {set(FLOWS) - functions}"


def test_declared_consumes_are_the_deployed_rules(catalog: dict[str, Any]) -> None:
    deployed = deployed_consumes(catalog)
    for name, flow in FLOWS.items():
        declared = {t for t in flow.consumes if t != INVOICE_RUN}
        assert declared == deployed.get(name, set()), name


def test_declared_publishes_and_writes_match_the_grants(catalog: dict[str, Any]) -> None:
    functions = {f["function"]: f for f in catalog["functions"]}
    for name, flow in FLOWS.items():
        env = set(functions[name]["environment"])
        publishes_events = {t for t in flow.publishes if t != INVOICE_RUN}
        handler = (ROOT / "functions" / name / "handler.py").read_text(encoding="utf-8")
        assert bool(publishes_events) == ("EventPublisher(" in handler), f"{name}: publishes vs its handler"
        assert not publishes_events or "EVENT_BUS_NAME" in env, f"{name}: publishes without a bus"
        assert (INVOICE_RUN in flow.publishes) == ("STATE_MACHINE_ARN" in env), f"{name}: starts the run"
        touches_erp = any(s is ERP for s, _ in flow.writes + flow.reads)
        assert touches_erp == ("ERP_SECRET_ARN" in env), f"{name}: ERP writes/reads vs ERP credentials"
        writes_salesforce = any(s in (CRM, PSA) for s, _ in flow.writes)
        assert writes_salesforce == ("SALESFORCE_SECRET_ARN" in env), f"{name}: Salesforce writes"
    assert [
        f["function"] for f in catalog["functions"] if "Step Functions task" in " ".join(f["trigger"])
    ] == [name for name, flow in FLOWS.items() if INVOICE_RUN in flow.consumes]


def test_the_flow_graph_is_acyclic_and_no_consumer_feeds_itself() -> None:
    graph = flow_graph()
    assert find_cycle(graph) is None
    for name, flow in FLOWS.items():
        assert not set(flow.consumes) & set(flow.publishes), name
    # the write-back's targets are copies r2r never reads back as canonical data: the path ends there
    assert graph["data:CRM/invoice_status_copy"] == set() and graph["data:PSA/invoice_status_copy"] == set()


def test_a_consumer_writing_what_feeds_it_is_found_as_a_cycle() -> None:
    # e.g. a PSA project sync that would write projects back into the PSA it listens to
    looping = {**FLOWS, "project_sync": Flow(("project.upserted",), (), ((PSA, "project"),))}
    cycle = find_cycle(flow_graph(looping))
    assert cycle is not None
    assert cycle[0] == cycle[-1] and {"fn:project_sync", "event:project.upserted", "data:PSA/project"} <= set(
        cycle
    )
