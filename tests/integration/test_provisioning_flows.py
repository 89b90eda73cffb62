"""Outbound provisioning on real sandboxes: the PSA project of a closed-won deal (Salesforce sandbox),
resource allocations, cost forecast and employees (NetSuite sandbox), r2r's state in moto DynamoDB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from infra.erp_sandbox import ErpSandbox
from infra.saas_sandbox import SalesforceSandbox
from r2r_core.consumer import consume
from r2r_core.crm import SalesforceClient, SalesforceCredentials
from r2r_core.erp import NetSuiteClient
from r2r_core.erp.mapping import ErpMapping
from r2r_core.flows.exceptions import record_event_failure
from r2r_core.flows.invoice_status import is_echo
from r2r_core.flows.project_setup import set_up_project
from r2r_core.flows.psa_provisioning import (
    PSA_PROJECT,
    PSA_PROJECT_EXTERNAL_ID,
    provision_psa_project,
)
from r2r_core.flows.resource_allocation import (
    CostCurrencyConflict,
    ProjectNotInErp,
    allocate,
)
from r2r_core.flows.resource_status import record_resource
from r2r_core.model.events import EventEnvelope, WebhookPayload, build_envelope, event_type
from tests.integration.test_billing_flows import envelope, ports  # noqa: F401 - ports is a fixture

PROJECT = "prj-acme-cloud-2026"
SAMPLES = Path(__file__).resolve().parents[2] / "events" / "samples"


@pytest.fixture
def systems(tmp_path: Path, ports: dict[str, Any]) -> Iterator[dict[str, Any]]:  # noqa: F811
    with ErpSandbox(tmp_path / "erp.sqlite") as erp, SalesforceSandbox() as crm:
        netsuite = NetSuiteClient(erp.url, erp.tba_credentials(), sleep=lambda _: None)
        salesforce = SalesforceClient(
            crm.url, SalesforceCredentials.model_validate(crm.secret_values()), sleep=lambda _: None
        )
        yield {**ports, "erp_sandbox": erp, "netsuite": netsuite, "crm": crm, "salesforce": salesforce}


def sample(type_name: str, **data: Any) -> EventEnvelope:
    """A canonical event from ``events/samples/<type>.json`` with ``data`` overridden."""
    body = json.loads((SAMPLES / f"{type_name}.json").read_text())
    body["data"].update(data)
    payload = WebhookPayload.model_validate(body)
    record = event_type(payload.type).data_model.model_validate(payload.data)
    delivery = f"msg_{type_name}_{record.id}_v{record.version}"
    return build_envelope(source_system="hris", delivery_id=delivery, payload=payload, record=record)


def worker(
    resource_id: str, name: str, cost: str | None, currency: str = "USD", **extra: Any
) -> EventEnvelope:
    rate = {"amount": cost, "currency": currency} if cost is not None else None
    return sample(
        "resource.upserted",
        id=resource_id,
        name=name,
        email=f"{resource_id}@northwind.example",
        cost_rate=rate,
        **extra,
    )


def assignment(assignment_id: str, resource_id: str, hours: str | None, version: int = 1) -> EventEnvelope:
    return sample(
        "assignment.upserted",
        id=assignment_id,
        version=version,
        project_id=PROJECT,
        resource_id=resource_id,
        planned_hours=hours,
    )


def provision(systems: dict[str, Any], event: EventEnvelope) -> dict[str, Any]:
    return provision_psa_project(
        event, store=systems["store"], audit=systems["audit"], salesforce=systems["salesforce"]
    )


# ---- the PSA project of a closed-won deal --------------------------------------------------------


def test_a_closed_won_deal_becomes_one_certinia_project_with_the_crosswalk_both_ways(
    systems: dict[str, Any],
) -> None:
    crm: SalesforceSandbox = systems["crm"]
    store = systems["store"]

    first = provision(systems, envelope("01-opportunity-closed-won.json"))
    again = provision(systems, envelope("01-opportunity-closed-won.json"))

    [record] = crm.records(PSA_PROJECT)
    assert first == {"psa_project_id": record["Id"], "action": "psa_project_provisioned"}
    assert again == {"psa_project_id": record["Id"], "action": "unchanged"}
    assert record[PSA_PROJECT_EXTERNAL_ID] == PROJECT
    assert record["Name"] == "Acme cloud migration"
    assert (record["pse__Start_Date__c"], record["pse__End_Date__c"]) == ("2026-11-16", "2027-03-31")
    assert record["pse__Billing_Type__c"] == "T&M/Fixed"  # billing type "mixed"
    assert record["pse__Region__c"] == "EMEA" and record["CurrencyIsoCode"] == "USD"
    assert record["pse__Opportunity__c"] == "0065g00000Jk1mN"
    # Written once: the redelivery wrote nothing (no second change for the echo reader).
    assert [c["changeType"] for c in crm.changes() if c["entityName"] == PSA_PROJECT] == ["CREATE"]

    forward = store.crosswalk("project", PROJECT, system="certinia")
    assert forward is not None and forward["internal_id"] == record["Id"]
    assert forward["external_id_field"] == "R2R_Id__c" and forward["sobject"] == PSA_PROJECT
    backward = store.crosswalk(f"certinia#{PSA_PROJECT}", record["Id"], system="r2r")
    assert backward is not None and backward["internal_id"] == PROJECT
    # The change feed entry of our write is recognisably ours: integration user, r2r's values.
    [change] = crm.changes()
    assert change["commitUser"] == "005000000000001AAA"
    assert is_echo(store, "salesforce", PSA_PROJECT, PROJECT, change["values"])
    assert not is_echo(store, "salesforce", PSA_PROJECT, PROJECT, {"Name": "Renamed by a user"})
    history = systems["audit"].history("project", PROJECT)
    assert [h["action"] for h in history] == ["psa_project_provisioned", "unchanged"]
    assert json.loads(history[0]["detail"])["psa_project_id"] == record["Id"]


def test_a_newer_deal_version_updates_the_same_record_and_an_older_one_changes_nothing(
    systems: dict[str, Any],
) -> None:
    crm: SalesforceSandbox = systems["crm"]
    provision(systems, envelope("01-opportunity-closed-won.json"))
    v2 = envelope("01-opportunity-closed-won.json", version=2)
    v2.data["project"]["name"] = "Acme cloud migration, wave 1"
    v2.data["project"]["version"] = 2

    assert provision(systems, v2)["action"] == "psa_project_updated"
    assert provision(systems, envelope("01-opportunity-closed-won.json"))["action"] == "stale_version_ignored"

    [record] = crm.records(PSA_PROJECT)
    assert record["Name"] == "Acme cloud migration, wave 1"


def test_salesforce_outages_are_retried_and_land_once(systems: dict[str, Any]) -> None:
    crm: SalesforceSandbox = systems["crm"]
    crm.fail_writes(PSA_PROJECT, status=503, error_code="SERVER_UNAVAILABLE", count=2)

    result = provision(systems, envelope("01-opportunity-closed-won.json"))

    assert result["action"] == "psa_project_provisioned"
    assert len(crm.records(PSA_PROJECT)) == 1
    assert crm.stats()["fault 503"] == 2


def test_a_refused_psa_write_is_one_exception_however_often_it_is_delivered(systems: dict[str, Any]) -> None:
    crm: SalesforceSandbox = systems["crm"]
    crm.fail_writes(PSA_PROJECT, status=400, error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION", count=5)
    store, audit = systems["store"], systems["audit"]
    deal = envelope("01-opportunity-closed-won.json")
    body = json.dumps({"detail-type": deal.type, "detail": deal.model_dump(mode="json")})

    for delivery in range(2):  # e.g. redriven from the DLQ without fixing the cause
        # A batch whose every record failed is raised whole (Powertools), so SQS keeps the message.
        with pytest.raises(BatchProcessingError, match="All records failed"):
            consume(
                {"Records": [sqs_record(f"m-{delivery}", body)]},
                None,
                name="psa_provisioning",
                logger=Logger(service="test"),
                idempotency_table=None,
                process=lambda e: provision_psa_project(
                    e, store=store, audit=audit, salesforce=systems["salesforce"]
                ),
                on_permanent=lambda e, exc: record_event_failure(
                    e, exc, store=store, audit=audit, stage="psa_provisioning"
                ),
            )

    [exception] = store.exceptions()
    assert exception["kind"] == "psa_provisioning_failed"
    assert exception["error_type"] == "SalesforcePermanentError"
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in exception["error"]
    assert crm.records(PSA_PROJECT) == []
    assert store.crosswalk("project", PROJECT, system="certinia") is None


def sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
        "awsRegion": "us-east-1",
    }


# ---- workers, allocations and the cost forecast --------------------------------------------------


def hire(systems: dict[str, Any], event: EventEnvelope, mapping: ErpMapping | None = None) -> dict[str, Any]:
    return record_resource(
        event, store=systems["store"], audit=systems["audit"], erp=systems["netsuite"], mapping=mapping
    )


def set_up(systems: dict[str, Any]) -> None:
    set_up_project(
        envelope("01-opportunity-closed-won.json"),
        store=systems["store"],
        audit=systems["audit"],
        erp=systems["netsuite"],
    )


def records(systems: dict[str, Any], record_type: str) -> list[dict[str, Any]]:
    return list(systems["erp_sandbox"].records()[record_type])


def allocate_(systems: dict[str, Any], event: EventEnvelope) -> dict[str, Any]:
    return allocate(event, store=systems["store"], audit=systems["audit"], erp=systems["netsuite"])


def test_a_worker_becomes_an_erp_employee_with_status_cost_rate_department_and_region(
    systems: dict[str, Any],
) -> None:
    mapping = ErpMapping(
        subsidiary_id="1",
        subsidiaries={"EMEA": "3"},
        departments={"Cloud Services": "4"},
        locations={"EMEA": "2"},
    )
    result = hire(systems, worker("res-ana-costa", "Ana Maria Costa", "91.235", region="EMEA"), mapping)

    [employee] = records(systems, "employee")
    assert result["erp_employee_id"] == employee["id"]
    assert employee["externalId"] == "r2r-resource-res-ana-costa"  # what time bills reference
    assert (employee["firstName"], employee["lastName"]) == ("Ana Maria", "Costa")
    assert employee["email"] == "res-ana-costa@northwind.example"
    assert employee["isInactive"] is False
    assert Decimal(str(employee["laborCost"])) == Decimal("91.235")
    assert employee["subsidiary"] == {"id": "3"}  # by region
    assert employee["department"] == {"id": "4"} and employee["location"] == {"id": "2"}
    assert employee["title"] == "Senior Cloud Engineer"

    terminated = sample(
        "resource.terminated",
        id="res-ana-costa",
        version=4,
        name="Ana Maria Costa",
        region="EMEA",
        cost_rate={"amount": "91.235", "currency": "USD"},
    )
    hire(systems, terminated, mapping)
    [employee] = records(systems, "employee")
    assert employee["isInactive"] is True
    assert employee["releaseDate"] == terminated.data["termination_date"]
    item = systems["store"].get("RES#res-ana-costa", "HRIS")
    assert item["status"] == "terminated" and item["erp_employee_id"] == employee["id"]
    # An older extract afterwards changes neither r2r's record nor the ERP's.
    hire(systems, worker("res-ana-costa", "Ana Costa", "50.00", version=3), mapping)
    [employee] = records(systems, "employee")
    assert employee["isInactive"] is True and employee["firstName"] == "Ana Maria"


def test_assignments_allocate_hours_and_forecast_cost_at_hris_rates(systems: dict[str, Any]) -> None:
    set_up(systems)
    hire(systems, worker("res-maria-lopez", "Maria Lopez", "78.40"))
    hire(systems, worker("res-priya-sharma", "Priya Sharma", "91.235"))
    hire(systems, worker("res-tom-becker", "Tom Becker", None))  # no cost rate in the HRIS

    allocate_(systems, assignment("asg-maria", "res-maria-lopez", "480"))
    allocate_(systems, assignment("asg-priya", "res-priya-sharma", "100.5"))
    result = allocate_(systems, assignment("asg-tom", "res-tom-becker", "40"))
    allocate_(systems, assignment("asg-tom", "res-tom-becker", "40"))  # redelivered: still one allocation

    allocations = {a["externalId"]: a for a in records(systems, "resourceAllocation")}
    assert sorted(allocations) == [
        "r2r-allocation-asg-maria",
        "r2r-allocation-asg-priya",
        "r2r-allocation-asg-tom",
    ]
    maria = allocations["r2r-allocation-asg-maria"]
    [job] = records(systems, "job")
    assert maria["project"] == {"id": job["id"]}
    assert maria["allocationResource"] == {"externalId": "r2r-resource-res-maria-lopez"}
    assert Decimal(str(maria["allocationAmount"])) == Decimal("480")
    assert maria["allocationUnit"] == {"id": "H"}
    assert (maria["startDate"], maria["endDate"]) == ("2026-11-16", "2027-03-31")

    # 480 x 78.40 = 37632.00; 100.5 x 91.235 = 9169.1175 -> 9169.12 (half-up once per allocation).
    assert result["forecast_labor_cost"] == "46801.12" and result["forecast_currency"] == "USD"
    assert result["uncosted_hours"] == "40"
    assert Decimal(str(job["estimatedLaborCost"])) == Decimal("46801.12")
    assert Decimal(str(job["estimatedTime"])) == Decimal("580.5")  # costed hours only
    forecast = systems["store"].get(f"PROJ#{PROJECT}", "FORECAST")
    assert forecast["labor_cost"] == "46801.12" and forecast["uncosted_hours"] == "40"
    assert {line["amount"] for line in json.loads(forecast["lines"])} == {"37632.00", "9169.12"}


def test_a_new_cost_rate_or_planned_hours_change_the_forecast(systems: dict[str, Any]) -> None:
    set_up(systems)
    hire(systems, worker("res-maria-lopez", "Maria Lopez", "78.40"))
    allocate_(systems, assignment("asg-maria", "res-maria-lopez", "480"))

    hire(systems, worker("res-maria-lopez", "Maria Lopez", "80.00", version=4))
    [job] = records(systems, "job")
    assert Decimal(str(job["estimatedLaborCost"])) == Decimal("38400.00")

    allocate_(systems, assignment("asg-maria", "res-maria-lopez", "120.25", version=2))
    allocate_(systems, assignment("asg-maria", "res-maria-lopez", "999", version=1))  # stale: ignored
    [job] = records(systems, "job")
    [allocation] = records(systems, "resourceAllocation")
    assert Decimal(str(allocation["allocationAmount"])) == Decimal("120.25")
    assert Decimal(str(job["estimatedLaborCost"])) == Decimal("9620.00")


def test_an_assignment_waits_for_its_project_and_then_for_its_worker(systems: dict[str, Any]) -> None:
    with pytest.raises(ProjectNotInErp, match="prj-acme-cloud-2026"):  # retryable: the message waits
        allocate_(systems, assignment("asg-maria", "res-maria-lopez", "480"))
    set_up(systems)

    waiting = allocate_(systems, assignment("asg-maria", "res-maria-lopez", "480"))

    # Not failed (no DLQ, no exception): remembered until the HRIS sends the worker.
    assert waiting["action"] == "allocation_waiting_for_worker" and waiting["uncosted_hours"] == "480"
    assert records(systems, "resourceAllocation") == []
    hired = hire(systems, worker("res-maria-lopez", "Maria Lopez", "78.40"))
    assert hired["allocated"] == ["asg-maria"]
    [allocation] = records(systems, "resourceAllocation")
    assert allocation["externalId"] == "r2r-allocation-asg-maria"
    assert allocation["allocationResource"] == {"externalId": "r2r-resource-res-maria-lopez"}
    [job] = records(systems, "job")
    assert Decimal(str(job["estimatedLaborCost"])) == Decimal("37632.00")
    item = systems["store"].get(f"PROJ#{PROJECT}", "ALLOC#asg-maria")
    assert item["status"] == "allocated" and item["erp_allocation_id"] == allocation["id"]
    # The worker again (a redelivery): nothing allocated twice.
    assert hire(systems, worker("res-maria-lopez", "Maria Lopez", "78.40"))["allocated"] == []
    assert len(records(systems, "resourceAllocation")) == 1


def test_cost_rates_in_two_currencies_are_refused(systems: dict[str, Any]) -> None:
    set_up(systems)
    hire(systems, worker("res-maria-lopez", "Maria Lopez", "78.40", "USD"))
    hire(systems, worker("res-ana-costa", "Ana Costa", "70.00", "EUR"))
    allocate_(systems, assignment("asg-maria", "res-maria-lopez", "10"))
    with pytest.raises(CostCurrencyConflict, match="EUR, USD"):
        allocate_(systems, assignment("asg-ana", "res-ana-costa", "10"))
