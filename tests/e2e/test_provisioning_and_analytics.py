"""Acceptance: outbound provisioning and the analytics feed on the embedded local stack.

After the sold-to-billed scenario, the HRIS sends the three consultants (cost rates) and the PSA their
assignments to the Acme project. Worked out by hand (USD, half-up once per allocation):
  Priya Sharma  100.5 h × 91.235 = 9169.1175 → 9169.12
  Tom Becker    400   h × 68.00  = 27200.00
  Maria Lopez   480   h × 78.40  = 37632.00
  cost forecast of prj-acme-cloud-2026: 74001.12 for 980.5 h
Expected: the closed-won deal is a Certinia pse__Proj__c in the Salesforce sandbox (crosswalk both ways in
the state table, audit record), three employees and three resource allocations in the NetSuite sandbox with
the forecast on the job, and every canonical event in the analytics bucket under
events/type=<detail-type>/dt=<day of its time>/, as the template's Firehose prefix says.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infra.local.stack import LocalStack
from r2r_core.flows.psa_provisioning import PSA_PROJECT
from r2r_core.model.events import EVENT_TYPES
from r2r_core.state import AuditLog, StateStore

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "sold-to-billed"
PROJECT = "prj-acme-cloud-2026"
TEAM = (  # resource, name, role, region, cost rate, planned hours
    ("res-priya-sharma", "Priya Sharma", "Solution Architect", "EMEA", "91.235", "100.5"),
    ("res-tom-becker", "Tom Becker", "Cloud Engineer", "EMEA", "68.00", "400"),
    ("res-maria-lopez", "Maria Lopez", "Cloud Engineer", "NA", "78.40", "480"),
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]


def worker(resource: str, name: str, role: str, region: str, cost: str) -> dict[str, Any]:
    return {
        "type": "resource.upserted",
        "timestamp": "2026-11-21T09:30:00Z",
        "data": {
            "id": resource,
            "version": 1,
            "name": name,
            "email": f"{resource}@northwind.example",
            "role": role,
            "region": region,
            "business_unit": "Cloud Services",
            "cost_rate": {"amount": cost, "currency": "USD"},
            "status": "active",
        },
    }


def assignment(resource: str, role: str, hours: str) -> dict[str, Any]:
    return {
        "type": "assignment.upserted",
        "timestamp": "2026-11-21T09:35:00Z",
        "data": {
            "id": f"asg-{resource.removeprefix('res-')}-acme",
            "version": 1,
            "project_id": PROJECT,
            "resource_id": resource,
            "role": role,
            "start_date": "2026-11-16",
            "end_date": "2027-03-31",
            "planned_hours": hours,
        },
    }


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    erp_db = tmp_path_factory.mktemp("erp") / "erp.sqlite"
    with LocalStack.start(ROOT, erp_db=erp_db) as stack:
        report = stack.run_scenario(SCENARIO)
        deliveries = []
        for resource, name, role, region, cost, _hours in TEAM:
            body = worker(resource, name, role, region, cost)
            deliveries.append(stack.post_webhook("hris", body, webhook_id=f"msg_hris_{resource}_v1"))
        stack.drain(timeout=60)
        for resource, _name, role, _region, _cost, hours in TEAM:
            body = assignment(resource, role, hours)
            deliveries.append(stack.post_webhook("psa", body, webhook_id=f"msg_psa_asg_{resource}_v1"))
        stack.drain(timeout=60)
        assert stack.local is not None
        ddb = stack.boto3_client("dynamodb")
        store = StateStore(str(stack.local.table_for_env("STATE_TABLE_NAME")), ddb)
        audit = AuditLog(str(stack.local.table_for_env("AUDIT_TABLE_NAME")), ddb)
        glue = stack.boto3_client("glue")
        [(database, table)] = stack.local.glue_tables.values()
        return {
            "report": report,
            "deliveries": [d.status for d in deliveries],
            "event_ids": [d["response"]["event_id"] for d in report["deliveries"]]
            + [d.json["event_id"] for d in deliveries],
            "psa": stack.salesforce.records(PSA_PROJECT),
            "changes": stack.salesforce.changes(),
            "crosswalk": store.crosswalk("project", PROJECT, system="certinia"),
            "audit": audit.history("project", PROJECT),
            "forecast": store.get(f"PROJ#{PROJECT}", "FORECAST"),
            "erp": stack.erp_records(),
            "analytics": stack.analytics_objects(),
            "streams": list(stack.local.delivery_streams.values()),
            "table": glue.get_table(DatabaseName=database, Name=table)["Table"],
            "exceptions": stack.exceptions(),
            "dlqs": stack.queue_depths(dlq_only=True),
        }


def test_everything_is_accepted_and_nothing_fails(outcome: dict[str, Any]) -> None:
    assert outcome["report"]["ok"], outcome["report"].get("drain_error")
    assert outcome["deliveries"] == [202] * 6
    assert outcome["exceptions"] == []
    assert set(outcome["dlqs"].values()) == {0}


def test_the_closed_won_deal_is_a_certinia_project_with_its_crosswalk(outcome: dict[str, Any]) -> None:
    [project] = outcome["psa"]
    assert project["R2R_Id__c"] == PROJECT
    assert project["Name"] == "Acme cloud migration"
    assert project["pse__Opportunity__c"] == "0065g00000Jk1mN"  # the Salesforce opportunity
    assert outcome["crosswalk"]["internal_id"] == project["Id"]
    assert outcome["crosswalk"]["external_id_field"] == "R2R_Id__c"
    [provisioned] = [a for a in outcome["audit"] if a["action"] == "psa_project_provisioned"]
    assert json.loads(provisioned["detail"])["psa_project_id"] == project["Id"]
    # Written once, by the integration user: what echo suppression recognises.
    [change] = [c for c in outcome["changes"] if c["entityName"] == PSA_PROJECT]
    assert change["changeType"] == "CREATE" and change["commitUser"] == "005000000000001AAA"


def test_assignments_are_erp_allocations_and_the_job_carries_the_cost_forecast(
    outcome: dict[str, Any],
) -> None:
    erp = outcome["erp"]
    [job] = [j for j in erp["job"] if j["externalId"] == f"r2r-job-{PROJECT}"]
    employees = {e["externalId"]: e for e in erp["employee"]}
    assert sorted(employees) == [f"r2r-resource-{r[0]}" for r in sorted(TEAM)]
    assert Decimal(str(employees["r2r-resource-res-priya-sharma"]["laborCost"])) == Decimal("91.235")
    allocations = {a["externalId"]: a for a in erp["resourceAllocation"]}
    assert len(allocations) == 3
    for resource, _name, _role, _region, _cost, hours in TEAM:
        allocation = allocations[f"r2r-allocation-asg-{resource.removeprefix('res-')}-acme"]
        assert allocation["project"] == {"id": job["id"]}
        assert allocation["allocationResource"] == {"externalId": f"r2r-resource-{resource}"}
        assert Decimal(str(allocation["allocationAmount"])) == Decimal(hours)
    assert Decimal(str(job["estimatedLaborCost"])) == Decimal("74001.12")
    assert Decimal(str(job["estimatedTime"])) == Decimal("980.5")
    assert outcome["forecast"]["labor_cost"] == "74001.12" and outcome["forecast"]["uncosted_hours"] == "0"


def test_every_canonical_event_is_in_the_analytics_feed_under_its_type_and_day(
    outcome: dict[str, Any],
) -> None:
    [stream] = outcome["streams"]
    found: Counter[str] = Counter()
    for key, events in outcome["analytics"].items():
        assert key.startswith("events/type="), key  # nothing under errors/
        assert key.endswith(".json.gz")
        for event in events:
            assert event["source"] == "r2r.canonical"
            assert key.startswith(f"events/type={event['detail-type']}/dt={event['time'][:10]}/"), key
            assert event["detail"]["type"] == event["detail-type"]
            found[event["detail"]["event_id"]] += 1
    # Every accepted webhook's event once (the duplicate delivery published nothing new) ...
    assert all(found[event_id] == 1 for event_id in set(outcome["event_ids"]))
    # ... and the events r2r itself published (revenue, invoice) too.
    types = {key.split("/")[1].removeprefix("type=") for key in outcome["analytics"]}
    assert {"opportunity.closed_won", "time_entry.approved", "milestone.completed", "invoice.created",
            "revenue.recognized", "resource.upserted", "assignment.upserted"} <= types  # fmt: skip
    assert stream.prefix == "events/type=!{partitionKeyFromQuery:type}/dt=!{partitionKeyFromQuery:dt}/"


def test_the_glue_table_projects_the_partitions_the_feed_writes(outcome: dict[str, Any]) -> None:
    table, [stream] = outcome["table"], outcome["streams"]
    params = table["Parameters"]
    assert params["storage.location.template"] == f"s3://{stream.bucket}/events/type=${{type}}/dt=${{dt}}/"
    assert set(params["projection.type.values"].split(",")) == set(EVENT_TYPES)
    for key in outcome["analytics"]:
        event_type = key.split("/")[1].removeprefix("type=")
        assert event_type in params["projection.type.values"].split(",")
    assert [k["Name"] for k in table["PartitionKeys"]] == ["type", "dt"]
