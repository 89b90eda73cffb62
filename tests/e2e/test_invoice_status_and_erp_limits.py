"""Acceptance on the embedded local stack: invoice status back-sync end to end, and a 429 storm.

Back-sync: sold-to-billed → NetSuite (sandbox) marks the invoice paid → the schedule tick runs the
poller → ``invoice.status_changed`` → the write-back consumer updates the Salesforce sandbox (the
opportunity's billing fields and the Certinia billing event). A second tick changes nothing, and the
changes our write-back made in Salesforce are recognised as our own echo.

ERP limits: the sandbox admits one request at a time (``concurrency_limit``) while 24 approved time
entries arrive at once: every 429 is absorbed by the client's backoff, no write is lost, nothing
lands in a DLQ.

The Salesforce sandbox runs beside the stack: the test points the template's
``SALESFORCE_BASE_URL`` at it and puts the connected-app secret in ``SalesforceCredentials``; the
schedule tick is the ``Scheduled Event`` EventBridge would put on the poller's queue.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.local.stack import LocalStack
from infra.saas_sandbox import SalesforceSandbox
from infra.synth import ensure_synthesized
from r2r_core.flows.invoice_status import BILLING_EVENT, OPPORTUNITY, is_echo
from r2r_core.flows.psa_provisioning import PSA_PROJECT
from r2r_core.state import StateStore

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "sold-to-billed"
OPPORTUNITY_KEY = "opp-0065g00000Jk1mN"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]


def _template_with_salesforce(path: Path, salesforce_url: str) -> tuple[Path, str, str]:
    """The synthesized template, SALESFORCE_BASE_URL at the sandbox: (file, secret id, poller queue id)."""
    template = json.loads(ensure_synthesized().read_text())
    resources = template["Resources"]
    poller_fn = None
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        if "SALESFORCE_BASE_URL" in variables:
            variables["SALESFORCE_BASE_URL"] = salesforce_url
        if resource.get("Metadata", {}).get("r2r:source", "").endswith("invoice_status_poller"):
            poller_fn = logical_id
    assert poller_fn is not None
    [secret_id] = [
        lid
        for lid, r in resources.items()
        if r["Type"] == "AWS::SecretsManager::Secret" and "SalesforceCredentials" in lid
    ]
    [queue_id] = [
        r["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["FunctionName"] == {"Ref": poller_fn}
    ]
    path.write_text(json.dumps(template))
    return path, secret_id, queue_id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("backsync")
    with SalesforceSandbox() as own:
        template, secret_id, poller_queue = _template_with_salesforce(tmp / "template.json", own.url)
        with LocalStack.start(
            ROOT,
            template=template,
            erp_db=tmp / "erp.sqlite",
            secret_values={secret_id: json.dumps(own.secret_values())},
        ) as stack:
            # A local stack that starts its own Salesforce sandbox points the functions at that one.
            crm: SalesforceSandbox = getattr(stack, "salesforce", None) or own
            crm.seed(
                OPPORTUNITY,
                {"Name": "Acme cloud migration", "StageName": "Closed Won", "CloseDate": "2026-11-20",
                 "R2R_Id__c": OPPORTUNITY_KEY},
            )  # fmt: skip
            report = stack.run_scenario(SCENARIO)
            assert report["ok"], report.get("drain_error")
            yield {"stack": stack, "crm": crm, "poller_queue": poller_queue, "report": report}


def tick(world: dict[str, Any]) -> None:
    """One schedule tick (the event EventBridge puts on the rule's SQS target), then drain."""
    stack: LocalStack = world["stack"]
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": {},
    }
    stack.boto3_client("sqs").send_message(
        QueueUrl=stack.resources[world["poller_queue"]], MessageBody=json.dumps(event)
    )
    stack.drain(timeout=60)


def state_store(stack: LocalStack) -> StateStore:
    table = next(name for lid, name in stack.local.tables.items() if "State" in lid)
    return StateStore(table, stack.boto3_client("dynamodb"))


def test_paid_invoice_reaches_crm_and_psa_once_and_our_echo_is_ignored(world: dict[str, Any]) -> None:
    stack: LocalStack = world["stack"]
    crm: SalesforceSandbox = world["crm"]
    [invoice] = stack.erp_records()["invoice"]
    assert invoice["total"] == "43969.38"

    tick(world)  # first sight of the open invoice: remembered, nothing to write back
    assert (
        crm.find(BILLING_EVENT, "R2R_Invoice_Id__c", invoice["externalId"].removeprefix("r2r-invoice-"))
        is None
    )

    stack.erp.settle_invoice(external_id=invoice["externalId"], action="paid")
    tick(world)

    opportunity = crm.find(OPPORTUNITY, "R2R_Id__c", OPPORTUNITY_KEY)
    assert opportunity is not None
    assert opportunity["R2R_Invoice_Status__c"] == "paid"
    assert opportunity["R2R_Invoice_Number__c"] == invoice["tranId"]
    assert opportunity["R2R_Invoice_Amount_Due__c"] == "0.00"
    invoice_id = invoice["externalId"].removeprefix("r2r-invoice-")
    billing_event = crm.find(BILLING_EVENT, "R2R_Invoice_Id__c", invoice_id)
    assert billing_event is not None
    assert billing_event["pse__Invoiced__c"] is True
    assert billing_event["pse__Invoice_Number__c"] == invoice["tranId"]
    assert billing_event["pse__Invoice_Date__c"] == invoice["tranDate"]
    assert billing_event["pse__Summary_Amount__c"] == "43969.38"

    changes = crm.changes()
    tick(world)  # a second poll: nothing new anywhere
    assert crm.changes() == changes
    store = state_store(stack)
    assert store.get(f"INVSTATUS#{invoice_id}", "ERP")["version"] == 2

    ours = [c for c in changes if c["commitUser"].startswith("005000000000001")]
    # The PSA project of the closed-won deal (psa_provisioning), then the invoice status write-back.
    assert {c["entityName"] for c in ours} == {PSA_PROJECT, OPPORTUNITY, BILLING_EVENT}
    keys = {OPPORTUNITY: OPPORTUNITY_KEY, BILLING_EVENT: invoice_id, PSA_PROJECT: "prj-acme-cloud-2026"}
    for change in ours:
        key = keys[change["entityName"]]
        values = {k: v for k, v in change["values"].items() if k != "R2R_Invoice_Id__c"}
        assert is_echo(store, "salesforce", change["entityName"], key, values)
    assert not is_echo(store, "salesforce", OPPORTUNITY, OPPORTUNITY_KEY, {"StageName": "Closed Lost"})
    assert all(depth == 0 for depth in stack.queue_depths(dlq_only=True).values())


def test_a_429_storm_is_absorbed_and_no_time_entry_is_lost(world: dict[str, Any]) -> None:
    stack: LocalStack = world["stack"]
    before = len(stack.erp_records()["timeBill"])
    stack.erp.set_faults({"concurrency_limit": 1, "latency_ms": 250})
    template = json.loads((SCENARIO / "12-time-maria-lopez-2026-11-16.json").read_text())["body"]
    first_day = date(2026, 12, 1)
    for n in range(24):
        body = json.loads(json.dumps(template))
        day = first_day + timedelta(days=n)
        body["data"].update(
            {"id": f"te-storm-{n:02d}", "work_date": day.isoformat(), "hours": "1.5", "notes": "storm"}
        )
        delivery = stack.post_webhook("psa", body, webhook_id=f"msg_storm_{n:02d}")
        assert delivery.status == 202

    stack.drain(timeout=120)

    stats = stack.erp.stats()
    time_bills = stack.erp_records()["timeBill"]
    assert len(time_bills) == before + 24
    assert {t["externalId"] for t in time_bills} >= {f"r2r-time-te-storm-{n:02d}" for n in range(24)}
    assert stats["throttled"] > 0, stats  # the limit was hit...
    assert stats["peak_in_flight"] <= 1  # ...and held
    assert all(depth == 0 for depth in stack.queue_depths(dlq_only=True).values())
    assert stack.exceptions() == []
    stack.erp.clear_faults()
