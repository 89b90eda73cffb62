"""Acceptance: Salesforce Outbound Messages and Certinia records, as Salesforce sends them, to an ERP invoice.

events/scenarios/salesforce-certinia, on the embedded local stack, every step a SOAP envelope posted to
``/v1/salesforce/outbound/<listener secret>``:

  Globex Data Platform reaches Closed Won (rate card and milestone in R2R_Contract_Terms__c)
  Certinia project and two assignments (Ana Reyes, Data Architect; Ben Okafor, Data Engineer)
  Ana's timecard approved: 8 + 8 + 6 + 8 + 4 = 34 h × 200.00 = 6800.00
  Ben's timecard approved (40 h), then rejected after approval, then approved again with
  8 + 8 + 8 + 8 + 6 = 38 h × 150.00 = 5700.00; the last message is delivered twice
  Ben's next week submitted, not approved: no time entry
  Ana's travel expense 312.40 (receipt attached) re-billed at cost
  Milestone "Platform design signed off" complete: 10000.00
Invoice total: 6800.00 + 5700.00 + 312.40 + 10000.00 = 22812.40
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.local import config
from infra.local.stack import LocalStack
from r2r_core.connectors.salesforce import ACK

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "salesforce-certinia"
LISTENER = f"v1/salesforce/outbound/{config.SALESFORCE_OUTBOUND_SECRET}"
SHARED_SAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <soapenv:Body>
    <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
      <OrganizationId>00D5g000004XyZaEAK</OrganizationId>
      <ActionId>04k5g000000AbCdAAK</ActionId>
      <SessionId xsi:nil="true"/>
      <Notification>
        <Id>04l5g00000QwErTAAZ</Id>
        <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
          <sf:Id>0065g00000Jk1mNAAR</sf:Id>
          <sf:Amount>120000.0</sf:Amount>
          <sf:StageName>Closed Won</sf:StageName>
        </sObject>
      </Notification>
    </notifications>
  </soapenv:Body>
</soapenv:Envelope>
"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&xxe;</soapenv:Body>
</soapenv:Envelope>"""

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    erp_db = tmp_path_factory.mktemp("erp") / "erp.sqlite"
    with LocalStack.start(ROOT, erp_db=erp_db) as stack:
        report = stack.run_scenario(SCENARIO)
        # What a curl of a hand-written message gets: the exact Ack, or a SOAP fault.
        headers = {"Content-Type": "text/xml; charset=utf-8"}
        posts = {
            name: requests.post(
                stack.api_url + LISTENER.replace(config.SALESFORCE_OUTBOUND_SECRET, secret),
                data=body,
                headers=headers,
                timeout=30,
            )
            for name, secret, body in (
                ("shared_sample", config.SALESFORCE_OUTBOUND_SECRET, SHARED_SAMPLE),
                ("external_entity", config.SALESFORCE_OUTBOUND_SECRET, XXE),
                ("wrong_secret", "not-the-secret", SHARED_SAMPLE),
            )
        }
        stack.drain(timeout=60)
        return {"report": report, "posts": posts, "exceptions": stack.exceptions()}


def test_every_message_gets_the_exact_soap_ack(run: dict[str, Any]) -> None:
    report = run["report"]
    assert report["ok"], report.get("drain_error")
    assert len(report["deliveries"]) == 11
    for delivery in report["deliveries"]:
        assert delivery["status"] == 200, delivery
        assert delivery["response"] == ACK.decode()
    assert all(depth == 0 for depth in report["dlq_depths"].values())


def test_one_invoice_with_the_corrected_hours_the_expense_and_the_milestone(run: dict[str, Any]) -> None:
    [invoice] = run["report"]["invoices"]
    lines = [
        (line["description"], Decimal(line["quantity"]), Decimal(line["amount"])) for line in invoice["lines"]
    ]
    assert lines == [
        ("Data Architect (EMEA) — time and materials", Decimal(34), Decimal("6800.00")),
        ("Data Engineer (EMEA) — time and materials", Decimal(38), Decimal("5700.00")),
        ("Expense: Travel on 2026-11-18 (0035g00000AnaR1AAJ)", Decimal(1), Decimal("312.40")),
        ("Milestone: Platform design signed off", Decimal(1), Decimal("10000.00")),
    ]
    assert Decimal(invoice["total"]) == Decimal("22812.40")
    assert invoice["currency"] == "USD"


def test_erp_time_bills_hold_the_last_approved_version_of_each_day(run: dict[str, Any]) -> None:
    records = run["report"]["erp"]["records"]
    assert [c["companyName"] for c in records["customer"]] == ["Globex Corporation Ltd"]
    assert [j["companyName"] for j in records["job"]] == ["Globex data platform"]
    bills = records["timeBill"]
    assert len(bills) == 10  # 5 days each; the rejection and re-approval updated Ben's, never added
    hours: Counter[str] = Counter()
    for bill in bills:
        hours[bill["employee"]["externalId"]] += Decimal(str(bill["hours"]))
    assert hours == {
        "r2r-resource-0035g00000AnaR1AAJ": Decimal(34),
        "r2r-resource-0035g00000BenK2AAJ": Decimal(38),
    }
    assert not [b for b in bills if str(b["tranDate"]) >= "2026-11-22"]  # the submitted week


def test_a_hand_posted_message_gets_an_ack_or_a_fault_and_every_problem_is_an_exception(
    run: dict[str, Any],
) -> None:
    posts = run["posts"]
    sample = posts["shared_sample"]
    assert sample.status_code == 200
    assert sample.headers["Content-Type"].startswith("text/xml")
    assert sample.content == ACK  # acknowledged: it can never map (no SystemModstamp), so it is an exception
    assert posts["external_entity"].status_code == 400
    assert b"soapenv:Client" in posts["external_entity"].content
    assert b"root:" not in posts["external_entity"].content
    assert posts["wrong_secret"].status_code == 401
    connector = [e for e in run["exceptions"] if str(e.get("kind", "")).startswith("connector_")]
    by_field = {e["field"]: e for e in connector}
    assert set(by_field) == {"SystemModstamp", "(document)"}
    assert "0065g00000Jk1mNAAR" in by_field["SystemModstamp"]["record"]
    assert all(e["archived_as"].startswith("raw/salesforce-outbound/") for e in connector)
