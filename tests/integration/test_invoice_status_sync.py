"""Invoice status back-sync on real sandboxes: NetSuite (SuiteQL) → invoice.status_changed → Salesforce.

The flows run against the ERP sandbox and the Salesforce sandbox over HTTP, with moto DynamoDB for
r2r's state: a sold invoice is paid in NetSuite, the poller sees it once, the write-back lands on the
opportunity and the Certinia billing event, a second poll changes nothing, and the Salesforce change
feed entries our write-back caused are recognised as echoes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra.erp_sandbox import ErpSandbox
from infra.saas_sandbox import SalesforceSandbox
from r2r_core.crm import SalesforceClient, SalesforceCredentials, SalesforcePermanentError
from r2r_core.erp import NetSuiteClient
from r2r_core.erp.suiteql import invoice_status_query
from r2r_core.flows.invoice_status import (
    BILLING_EVENT,
    OPPORTUNITY,
    is_echo,
    poll_invoice_status,
    write_back_invoice_status,
)
from r2r_core.flows.invoicing import STEPS, InvoiceSteps
from r2r_core.flows.project_setup import set_up_project
from r2r_core.flows.time_posting import post_time
from tests.integration.test_billing_flows import (
    FakePublisher,
    envelope,
    ports,  # noqa: F401 - a fixture (moto tables)
)


@pytest.fixture
def systems(tmp_path: Path, ports: dict[str, Any]) -> Iterator[dict[str, Any]]:  # noqa: F811
    with ErpSandbox(tmp_path / "erp.sqlite") as erp, SalesforceSandbox() as crm:
        client = NetSuiteClient(erp.url, erp.tba_credentials(), sleep=lambda _: None)
        salesforce = SalesforceClient(crm.url, SalesforceCredentials.model_validate(crm.secret_values()))
        crm.seed(
            OPPORTUNITY,
            {"Name": "Acme cloud migration", "StageName": "Closed Won", "CloseDate": "2026-11-20",
             "R2R_Id__c": "opp-0065g00000Jk1mN"},
        )  # fmt: skip
        yield {**ports, "erp_sandbox": erp, "netsuite": client, "crm": crm, "salesforce": salesforce}


def invoice_sold_work(systems: dict[str, Any]) -> dict[str, Any]:
    store, audit, netsuite = systems["store"], systems["audit"], systems["netsuite"]
    set_up_project(envelope("01-opportunity-closed-won.json"), store=store, audit=audit, erp=netsuite)
    post_time(envelope("12-time-maria-lopez-2026-11-16.json"), store=store, audit=audit, erp=netsuite)
    milestone = envelope("19-milestone-completed.json")
    store.put_versioned(
        {
            "pk": f"ENG#{milestone.data['engagement_id']}",
            "sk": f"MILESTONE#{milestone.source_record_id}",
            "version": 1,
            "milestone": milestone.parsed().model_dump_json(),
            "status": "completed",
        }
    )
    steps = InvoiceSteps(
        store=store,
        audit=audit,
        erp=lambda: netsuite,
        publisher=FakePublisher,  # type: ignore[arg-type]
        today=lambda: datetime(2026, 11, 23, tzinfo=UTC),
    )
    state: dict[str, Any] = {
        "engagement_id": milestone.data["engagement_id"],
        "milestone_id": milestone.source_record_id,
        "correlation_id": "corr-1",
        "event_id": milestone.event_id,
    }
    for step in STEPS:
        state = steps.run(step, state, "exec-1")
    return state


def poll(systems: dict[str, Any]) -> tuple[dict[str, Any], FakePublisher]:
    publisher = FakePublisher()
    result = poll_invoice_status(
        erp=systems["netsuite"], store=systems["store"], audit=systems["audit"], publisher=publisher
    )
    return result, publisher


def test_paid_in_netsuite_reaches_the_opportunity_and_the_billing_event_once(systems: dict[str, Any]) -> None:
    state = invoice_sold_work(systems)
    first, nothing = poll(systems)
    assert (first["first_seen"], first["changes"], nothing.published) == (1, 0, [])

    systems["erp_sandbox"].settle_invoice(id=state["erp_invoice_id"], action="paid")
    result, publisher = poll(systems)

    assert result["changes"] == 1
    [event] = publisher.published
    assert event.type == "invoice.status_changed"
    assert event.data["status"] == "paid" and event.data["previous_status"] == "open"
    assert event.data["invoice_number"].startswith("INV")
    assert event.data["amount_remaining"] == {"amount": "0.00", "currency": "USD"}
    assert event.data["engagement_id"] == "eng-acme-cloud-2026"

    written = write_back_invoice_status(
        event, store=systems["store"], audit=systems["audit"], salesforce=systems["salesforce"]
    )
    assert written["written"] == [OPPORTUNITY, BILLING_EVENT]
    crm: SalesforceSandbox = systems["crm"]
    opportunity = crm.find(OPPORTUNITY, "R2R_Id__c", "opp-0065g00000Jk1mN")
    assert opportunity is not None
    assert opportunity["R2R_Invoice_Status__c"] == "paid"
    assert opportunity["R2R_Invoice_Number__c"] == event.data["invoice_number"]
    assert opportunity["R2R_Invoice_Amount_Due__c"] == "0.00"
    billing_event = crm.find(BILLING_EVENT, "R2R_Invoice_Id__c", event.source_record_id)
    assert billing_event is not None
    assert billing_event["pse__Invoiced__c"] is True
    assert billing_event["pse__Invoice_Number__c"] == event.data["invoice_number"]
    assert billing_event["pse__Invoice_Date__c"] == "2026-11-23"

    # A second poll changes nothing; the same event again writes nothing.
    again, quiet = poll(systems)
    assert (again["changes"], quiet.published) == (0, [])
    assert again["unchanged"] == 1  # the row at the watermark is read again and recognised
    changes_before = len(crm.changes())
    repeat = write_back_invoice_status(
        event, store=systems["store"], audit=systems["audit"], salesforce=systems["salesforce"]
    )
    assert repeat["written"] == [] and len(crm.changes()) == changes_before

    # Our write-backs come back in the change feed: each is recognised as our echo; a user's edit is not.
    ours = [c for c in crm.changes() if c["changeType"] == "UPDATE" or c["entityName"] == BILLING_EVENT]
    assert ours
    for change in ours:
        key = "opp-0065g00000Jk1mN" if change["entityName"] == OPPORTUNITY else event.source_record_id
        values = {k: v for k, v in change["values"].items() if k != "R2R_Invoice_Id__c"}
        assert is_echo(systems["store"], "salesforce", change["entityName"], key, values)
    assert not is_echo(
        systems["store"], "salesforce", OPPORTUNITY, "opp-0065g00000Jk1mN", {"R2R_Invoice_Status__c": "open"}
    )


@pytest.mark.parametrize(
    ("action", "amount", "status"),
    [("paid", "1000.00", "partially_paid"), ("voided", None, "voided"), ("credited", None, "credited")],
)
def test_each_settlement_becomes_its_canonical_status(
    systems: dict[str, Any], action: str, amount: str | None, status: str
) -> None:
    state = invoice_sold_work(systems)
    poll(systems)
    systems["erp_sandbox"].settle_invoice(id=state["erp_invoice_id"], action=action, amount=amount)

    _, publisher = poll(systems)

    [event] = publisher.published
    assert event.data["status"] == status
    if action == "credited":
        [memo] = systems["erp_sandbox"].records()["creditMemo"]
        assert memo["createdFrom"] == {"id": state["erp_invoice_id"]}


def test_suiteql_pages_and_needs_prefer_transient(systems: dict[str, Any]) -> None:
    netsuite: NetSuiteClient = systems["netsuite"]
    sandbox: ErpSandbox = systems["erp_sandbox"]
    customer = netsuite.upsert("customer", "r2r-customer-p", {"companyName": "P", "isPerson": False})
    for n in range(5):
        netsuite.upsert(
            "invoice",
            f"r2r-invoice-page-{n}",
            {"entity": {"id": customer}, "tranDate": "2026-11-30",
             "item": {"items": [{"item": {"id": "1"}, "quantity": "1", "rate": "10.00", "amount": "10.00"}]}},
        )  # fmt: skip

    rows = list(netsuite.suiteql(invoice_status_query(None), page_size=2))

    assert [r["externalid"] for r in rows] == [f"r2r-invoice-page-{n}" for n in range(5)]
    requests = {(r["method"], r["record_type"], r["status"]): r["count"] for r in sandbox.stats()["requests"]}
    assert requests[("POST", "suiteql", "200")] == 3  # 2 + 2 + 1
    with pytest.raises(ValueError, match="ISO UTC"):
        invoice_status_query("2026-11-30' OR 1=1 --")


def test_salesforce_refuses_bad_credentials_and_missing_fields(systems: dict[str, Any]) -> None:
    crm: SalesforceSandbox = systems["crm"]
    wrong = SalesforceClient(crm.url, SalesforceCredentials(client_id="x", client_secret="y"))  # type: ignore[arg-type]
    with pytest.raises(SalesforcePermanentError, match="client credentials"):
        wrong.upsert(OPPORTUNITY, "R2R_Id__c", "opp-x", {"Name": "X"})
    with pytest.raises(SalesforcePermanentError) as missing:
        systems["salesforce"].upsert(
            OPPORTUNITY, "R2R_Id__c", "opp-unknown", {"R2R_Invoice_Status__c": "paid"}
        )
    assert missing.value.code == "REQUIRED_FIELD_MISSING"
