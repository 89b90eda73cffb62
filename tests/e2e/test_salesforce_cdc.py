"""Acceptance: Salesforce Change Data Capture through Event Relay on the embedded local stack.

The partner event bus, its rule, the intake's queue (+DLQ) and ``salesforce_events`` come from the
synthesized template; the test plays Salesforce: it changes records in the Salesforce sandbox, then puts the
change events Event Relay would send on the partner bus.

  1. Globex Data Platform is in negotiation; a user sets it to Closed Won. The CDC UPDATE carries only
     ``StageName``: the intake re-reads the opportunity through the REST API (sandbox), publishes
     ``opportunity.closed_won``, and project setup creates the ERP customer and job.
  2. A GAP_UPDATE for a second deal (no field values): re-read, and its customer and job appear too.
  3. The same UPDATE delivered again (same transactionKey/sequenceNumber): nothing new.
  4. An event for an object r2r does not map: kept in the raw archive, one exception, no DLQ message.
  5. Outbound Messages with basic auth (POST /v1/salesforce/outbound): the SOAP Ack, or 401 when wrong.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.local import config
from infra.local.stack import LocalStack
from r2r_core.connectors.salesforce import ACK

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = (
    ROOT
    / "events"
    / "salesforce"
    / "cdc"
    / "rest"
    / "01-opportunity-update-closed-won"
    / "0065g00000Gx7bQAAS.json"
)
GLOBEX = "0065g00000Gx7bQAAS"
INITECH = "0065g00000In1tEAAK"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]


def _basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"{config.SALESFORCE_OUTBOUND_ORG_ID}:{secret}".encode()).decode()


def _deal(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(FIXTURE.read_text())
    for key in ("attributes", "SystemModstamp"):
        record.pop(key)
    record.update(changes)
    return record


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    erp_db = tmp_path_factory.mktemp("erp") / "erp.sqlite"
    with LocalStack.start(ROOT, erp_db=erp_db) as stack:
        crm = stack.salesforce
        crm.seed("Opportunity", _deal(StageName="Negotiation/Review", IsWon=False, IsClosed=False))
        crm.update("Opportunity", GLOBEX, {"StageName": "Closed Won", "IsWon": True, "IsClosed": True})
        update = {
            "values": {"StageName": "Closed Won"},
            "transaction_key": "0001a1b2-globex-won",
            "drain": False,
        }
        stack.put_change_event("Opportunity", [GLOBEX], "UPDATE", **update)
        stack.drain(timeout=120)
        after_update = stack.erp_records()

        crm.seed(
            "Opportunity",
            _deal(
                Id=INITECH,
                AccountId="0015g00000In1tEAAK",
                Name="Initech Payroll Migration",
                R2R_Client_Name__c="Initech",
                R2R_Client_Legal_Name__c="Initech Inc.",
                R2R_Project_Name__c="Initech payroll migration",
            ),
        )
        gap = stack.put_change_event("Opportunity", [INITECH], "GAP_UPDATE", drain=False)
        stack.drain(timeout=120)
        reads_before_duplicate = crm.stats().get("GET Opportunity", 0)
        stack.put_change_event("Opportunity", [GLOBEX], "UPDATE", **update)
        stack.drain(timeout=60)
        stack.put_change_event("Account", ["0015g00000Gl0bXAAS"], "UPDATE", values={"Name": "Globex"})
        stack.drain(timeout=60)
        records = stack.erp_records()
        # Outbound Messages' basic-auth variant on the same local API (an opportunity.updated: no ERP effect).
        message = (
            ROOT / "events" / "salesforce" / "02-opportunity-amount-changed-negotiation.xml"
        ).read_bytes()
        basic = {
            name: requests.post(
                stack.api_url + "v1/salesforce/outbound",
                data=message,
                headers={"Content-Type": "text/xml; charset=utf-8", "Authorization": _basic(secret)},
                timeout=30,
            )
            for name, secret in (("right", config.SALESFORCE_OUTBOUND_SECRET), ("wrong", "not-the-secret"))
        }
        stack.drain(timeout=60)
        bucket = stack.local.bucket_for_env("RAW_BUCKET_NAME") if stack.local else None
        archived = stack.boto3_client("s3").list_objects_v2(Bucket=bucket, Prefix="raw/salesforce-cdc/")
        return {
            "after_update": after_update,
            "records": records,
            "basic": basic,
            "gap": gap,
            "reads_before_duplicate": reads_before_duplicate,
            "reads": crm.stats().get("GET Opportunity", 0),
            "exceptions": stack.exceptions(),
            "dlq_depths": stack.queue_depths(dlq_only=True),
            "archived": [o["Key"] for o in archived.get("Contents", [])],
            "description": stack.describe(),
        }


def test_the_partner_bus_comes_from_the_template(outcome: dict[str, Any]) -> None:
    sources = outcome["description"]["partner_event_sources"]
    assert list(sources.values()) == ["aws.partner/salesforce.com/00D5g000004XyZaEAK/0YL5g0000000R2RAAA"]
    assert outcome["gap"]["source"] in sources.values()


def test_a_cdc_update_to_closed_won_sets_up_the_customer_and_job_in_the_erp(outcome: dict[str, Any]) -> None:
    records = outcome["after_update"]
    assert [c["companyName"] for c in records["customer"]] == ["Globex Corporation Ltd"]
    assert [(j["companyName"], j["externalId"]) for j in records["job"]] == [
        ("Globex data platform", f"r2r-job-prj-{GLOBEX}")
    ]


def test_a_gap_event_re_reads_the_record_and_sets_it_up_too(outcome: dict[str, Any]) -> None:
    records = outcome["records"]
    assert sorted(c["companyName"] for c in records["customer"]) == ["Globex Corporation Ltd", "Initech Inc."]
    assert sorted(j["companyName"] for j in records["job"]) == [
        "Globex data platform",
        "Initech payroll migration",
    ]
    assert outcome["reads_before_duplicate"] == 2  # one re-read per change: the UPDATE and the GAP_UPDATE


def test_a_redelivered_change_is_not_read_or_published_again(outcome: dict[str, Any]) -> None:
    assert outcome["reads"] == outcome["reads_before_duplicate"]
    assert len(outcome["records"]["job"]) == 2


def test_an_unmapped_object_is_kept_and_recorded_and_no_message_rests_in_a_dlq(
    outcome: dict[str, Any],
) -> None:
    cdc = [e for e in outcome["exceptions"] if e.get("connector") == "salesforce_cdc"]
    [unmapped] = cdc
    assert unmapped["kind"] == "connector_rejected"
    assert unmapped["field"].endswith("ChangeEventHeader.entityName") and "Account" in unmapped["record"]
    assert unmapped["archived_as"] in outcome["archived"]
    assert (
        len(outcome["archived"]) == 4
    )  # every event kept (the duplicate has the same body hash only if equal)
    assert all(depth == 0 for depth in outcome["dlq_depths"].values())


def test_outbound_messages_with_basic_auth_get_the_ack_or_a_401(outcome: dict[str, Any]) -> None:
    right, wrong = outcome["basic"]["right"], outcome["basic"]["wrong"]
    assert right.status_code == 200 and right.content == ACK
    assert wrong.status_code == 401 and b"soapenv:Client" in wrong.content
    assert wrong.headers["WWW-Authenticate"].startswith("Basic realm=")
