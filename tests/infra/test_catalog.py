"""The integration catalog: the committed docs/catalog.* are fresh, and it states known facts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra.catalog import build_catalog, outputs, render_markdown, stale_files, strip_id
from infra.synth import ensure_synthesized

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def default_template() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ensure_synthesized().read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def catalog(default_template: dict[str, Any]) -> dict[str, Any]:
    return build_catalog(default_template)


def test_committed_catalog_is_fresh(default_template: dict[str, Any]) -> None:
    stale = stale_files(DOCS, outputs(default_template))
    assert not stale, f"docs/{', docs/'.join(stale)} out of date: run `r2r catalog` and commit the result"


def test_stale_files_names_a_changed_file(tmp_path: Path, default_template: dict[str, Any]) -> None:
    generated = outputs(default_template)
    for name, text in generated.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert stale_files(tmp_path, generated) == []
    (tmp_path / "catalog.md").write_text("old\n", encoding="utf-8")
    assert stale_files(tmp_path, generated) == ["catalog.md"]


def test_generation_is_deterministic(default_template: dict[str, Any], catalog: dict[str, Any]) -> None:
    again = build_catalog(json.loads(json.dumps(default_template)))
    assert again == catalog
    assert render_markdown(again) == render_markdown(catalog)
    assert strip_id("TimePostingQueue5304C6A4") == "TimePostingQueue"


def test_webhook_route(catalog: dict[str, Any]) -> None:
    [route] = [r for r in catalog["routes"] if r["path"] == "/v1/webhooks/{source}"]
    assert (route["method"], route["function"]) == ("POST", "ingest_webhook")
    assert any("HMAC" in a for a in route["auth"])
    [sf] = [r for r in catalog["routes"] if r["path"] == "/v1/salesforce/outbound/{secret}"]
    assert sf["function"] == "ingest_salesforce_outbound" and any("path secret" in a for a in sf["auth"])


def test_time_entry_approved_goes_to_time_posting_with_its_dlq(catalog: dict[str, Any]) -> None:
    [event] = [e for e in catalog["events"] if e["type"] == "time_entry.approved"]
    assert event["schema_version"] == "1.0"
    assert event["routes_to"] == [
        {"rule": "TimePostingRule", "queue": "TimePostingQueue", "consumer": "time_posting"}
    ]
    [queue] = [q for q in catalog["queues"] if q["queue"] == "TimePostingQueue"]
    assert (queue["dlq"], queue["max_receive_count"], queue["consumer"]) == (
        "TimePostingDlq",
        5,
        "time_posting",
    )
    assert "start-message-move-task" in queue["recovery"]


def test_state_machine_recovery(catalog: dict[str, Any]) -> None:
    [machine] = catalog["state_machines"]
    assert machine["state_machine"] == "MilestoneToInvoiceStateMachine"
    assert machine["started_by"] == ["billing_period_close", "milestone_trigger"] and machine[
        "task_functions"
    ] == ["invoice_workflow"]
    assert "redrive-execution" in machine["recovery"] and "exception_router" in machine["recovery"]


def test_functions_grants_and_dependencies(catalog: dict[str, Any]) -> None:
    functions = {f["function"]: f for f in catalog["functions"]}
    assert functions["time_posting"]["secrets"] == ["SecretsErpCredentials"]
    assert "NetSuite (ERP)" in functions["time_posting"]["dependencies"]
    assert functions["invoice_status_writeback"]["dependencies"] == ["Salesforce (CRM / Certinia PSA)"]
    assert functions["ingest_webhook"]["trigger"] == ["API Gateway POST /v1/webhooks/{source}"]


def test_ownership_and_mapping_rows(catalog: dict[str, Any]) -> None:
    owners = {o["canonical_object"]: o["system"] for o in catalog["ownership"]}
    assert owners["time_entry"] == "PSA" and owners["client"] == "ERP" and owners["engagement"] == "CRM"
    assert {
        "system": "salesforce",
        "source_object": "Opportunity",
        "source_field": "StageName",
        "event_type": "opportunity.updated",
        "canonical_field": "stage",
        "how": "copy",
    } in catalog["mappings"]
