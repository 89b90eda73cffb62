"""Project setup → time posting → milestone-to-invoice steps on moto DynamoDB with an in-memory ERP.

These pin the money invariants of the flows: an hour is billed once, duplicates and stale
versions change nothing, a repeated (redriven) step creates nothing new, and later time goes
to the next invoice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from r2r_core.errors import EngagementNotReady, TaxConfigurationMissing
from r2r_core.flows.charges import charge_of
from r2r_core.flows.expense_posting import post_expense
from r2r_core.flows.invoicing import STEPS, InvoiceSteps
from r2r_core.flows.milestones import execution_name, start_invoice_run
from r2r_core.flows.project_setup import set_up_project
from r2r_core.flows.time_posting import post_time
from r2r_core.model.events import EventEnvelope, WebhookPayload, build_envelope, event_type
from r2r_core.runtime import reset_clients
from r2r_core.state import AuditLog, StateStore, _to_item
from tests.conftest import create_state_and_audit_tables

SCENARIO = Path(__file__).resolve().parents[2] / "events" / "scenarios" / "sold-to-billed"


class FakeErp:
    """NetSuite's upsert semantics: one record per (type, external id), ids allocated per type."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls = 0

    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str:
        self.calls += 1
        key = (record_type, external_id)
        if key not in self.records:
            self.records[key] = {"id": str(sum(1 for t, _ in self.records if t == record_type) + 1)}
        self.records[key].update(body)
        return str(self.records[key]["id"])

    def of_type(self, record_type: str) -> list[dict[str, Any]]:
        return [r for (t, _), r in self.records.items() if t == record_type]


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[EventEnvelope] = []

    def publish(self, envelope: EventEnvelope) -> None:
        self.published.append(envelope)


def envelope(file_name: str, **data_overrides: Any) -> EventEnvelope:
    delivery = json.loads((SCENARIO / file_name).read_text())
    body = delivery["body"]
    body["data"].update(data_overrides)
    payload = WebhookPayload.model_validate(body)
    record = event_type(payload.type).data_model.model_validate(payload.data)
    return build_envelope(
        source_system=delivery["source"], delivery_id=delivery["webhook_id"], payload=payload, record=record
    )


@pytest.fixture
def ports() -> Iterator[dict[str, Any]]:
    with mock_aws():
        reset_clients()
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_and_audit_tables(ddb)
        store, audit, erp, publisher = (
            StateStore("state", ddb),
            AuditLog("audit", ddb),
            FakeErp(),
            FakePublisher(),
        )
        steps = InvoiceSteps(
            store=store,
            audit=audit,
            erp=lambda: erp,
            publisher=lambda: publisher,  # type: ignore[arg-type,return-value]
            today=lambda: datetime(2026, 11, 23, tzinfo=UTC),
        )
        yield {"store": store, "audit": audit, "erp": erp, "publisher": publisher, "steps": steps}
        reset_clients()


def set_up(ports: dict[str, Any]) -> None:
    set_up_project(
        envelope("01-opportunity-closed-won.json"),
        store=ports["store"],
        audit=ports["audit"],
        erp=ports["erp"],
    )


def post(ports: dict[str, Any], file_name: str, **overrides: Any) -> dict[str, Any]:
    return post_time(
        envelope(file_name, **overrides), store=ports["store"], audit=ports["audit"], erp=ports["erp"]
    )


def complete_milestone(ports: dict[str, Any]) -> dict[str, Any]:
    milestone = envelope("19-milestone-completed.json")
    ports["store"].put_versioned(
        {
            "pk": f"ENG#{milestone.data['engagement_id']}",
            "sk": f"MILESTONE#{milestone.source_record_id}",
            "version": 1,
            "milestone": milestone.parsed().model_dump_json(),
            "status": "completed",
        }
    )
    state: dict[str, Any] = {
        "engagement_id": milestone.data["engagement_id"],
        "milestone_id": milestone.source_record_id,
        "correlation_id": "corr-1",
        "event_id": milestone.event_id,
    }
    for step in STEPS:
        state = ports["steps"].run(step, state, "exec-1")
    return state


def test_closed_won_sets_up_one_customer_and_one_job_and_is_repeatable(ports: dict[str, Any]) -> None:
    set_up(ports)
    set_up(ports)
    erp = ports["erp"]
    assert len(erp.of_type("customer")) == 1 and len(erp.of_type("job")) == 1
    assert erp.of_type("job")[0]["parent"] == {"id": "1"}
    assert ports["store"].crosswalk("project", "prj-acme-cloud-2026")["internal_id"] == "1"


def test_time_before_the_engagement_is_set_up_is_retried_not_dropped(ports: dict[str, Any]) -> None:
    with pytest.raises(EngagementNotReady, match="not set up yet"):
        post(ports, "12-time-maria-lopez-2026-11-16.json")
    assert ports["erp"].calls == 0


def test_duplicate_and_stale_time_change_nothing(ports: dict[str, Any]) -> None:
    set_up(ports)
    post(ports, "12-time-maria-lopez-2026-11-16.json", version=2, hours="8")
    assert post(ports, "12-time-maria-lopez-2026-11-16.json", version=2, hours="8")["duplicate"] is True
    # version 1 arrives late (out of order): ignored as stale
    assert post(ports, "12-time-maria-lopez-2026-11-16.json", version=1)["duplicate"] is True
    charge = ports["store"].get("ENG#eng-acme-cloud-2026", "CHARGE#te-maria-lopez-2026-11-16")
    assert charge["version"] == 2 and charge["amount"] == Decimal("1300.00")  # 8 h × 162.50
    assert len(ports["erp"].of_type("timeBill")) == 1


def test_invoice_bills_each_hour_once_and_a_rerun_creates_nothing_new(ports: dict[str, Any]) -> None:
    set_up(ports)
    post(ports, "12-time-maria-lopez-2026-11-16.json")  # 7.25 h × 162.50 = 1178.125 → line rounds once
    post(ports, "02-time-priya-sharma-2026-11-16.json")  # 8 h × 210.00 = 1680.00
    post(ports, "17-time-tom-becker-training-non-billable.json")  # cost only
    state = complete_milestone(ports)
    [invoice] = ports["erp"].of_type("invoice")
    amounts = [(line["quantity"], line["rate"], line["amount"]) for line in invoice["item"]["items"]]
    assert amounts == [
        ("7.25", "162.50", "1178.13"),
        ("8", "210.00", "1680.00"),
        ("1", "25000.00", "25000.00"),
    ]
    assert state["invoice_total"] == "27858.13"  # 1178.13 + 1680.00 + 25000.00
    assert [e.type for e in ports["publisher"].published] == ["invoice.created"]

    # A redriven execution repeats every step: same invoice, nothing billed twice.
    again = complete_milestone(ports)
    assert again["erp_invoice_id"] == state["erp_invoice_id"]
    assert len(ports["erp"].of_type("invoice")) == 1
    charges = list(ports["store"].query_prefix("ENG#eng-acme-cloud-2026", "CHARGE#"))
    assert {c["source_id"]: c["status"] for c in charges} == {
        "te-maria-lopez-2026-11-16": "invoiced",
        "te-priya-sharma-2026-11-16": "invoiced",
        "te-tom-becker-2026-11-20-training": "not_billable",
    }


def test_time_approved_after_the_draft_waits_for_the_next_invoice(ports: dict[str, Any]) -> None:
    set_up(ports)
    post(ports, "12-time-maria-lopez-2026-11-16.json")
    complete_milestone(ports)
    post(ports, "13-time-maria-lopez-2026-11-17.json")
    later = ports["store"].get("ENG#eng-acme-cloud-2026", "CHARGE#te-maria-lopez-2026-11-17")
    assert later["status"] == "unbilled"


def second_milestone_deal() -> EventEnvelope:
    deal = envelope("01-opportunity-closed-won.json")
    data = json.loads(json.dumps(deal.data))
    data["engagement"]["milestones"].append(
        {"id": "ms-wave-1", "name": "Wave 1 migrated", "percent_of_contract": "10"}
    )
    return deal.model_copy(update={"data": data})


def complete_second_milestone(ports: dict[str, Any]) -> dict[str, Any]:
    first = envelope("19-milestone-completed.json")
    data = dict(first.data) | {"id": "ms-wave-1", "name": "Wave 1 migrated"}
    data["amount"] = {"amount": "12000.00", "currency": "USD"}  # 10 % of 120000.00
    ports["store"].put_versioned(
        {
            "pk": "ENG#eng-acme-cloud-2026",
            "sk": "MILESTONE#ms-wave-1",
            "version": 1,
            "milestone": json.dumps(data),
            "status": "completed",
        }
    )
    state: dict[str, Any] = {
        "engagement_id": "eng-acme-cloud-2026",
        "milestone_id": "ms-wave-1",
        "correlation_id": "corr-2",
        "event_id": "evt-2",
    }
    for step in STEPS:
        state = ports["steps"].run(step, state, "exec-2")
    return state


def test_an_invoiced_entry_that_changes_is_credited_and_rebilled_on_the_next_invoice(
    ports: dict[str, Any],
) -> None:
    set_up_project(second_milestone_deal(), store=ports["store"], audit=ports["audit"], erp=ports["erp"])
    post(ports, "12-time-maria-lopez-2026-11-16.json")  # 7.25 h × 162.50 = 1178.125 → 1178.13
    complete_milestone(ports)
    result = post(ports, "12-time-maria-lopez-2026-11-16.json", version=2, hours="6")
    assert result["credit_queued"] is True
    charge = ports["store"].get("ENG#eng-acme-cloud-2026", "CHARGE#te-maria-lopez-2026-11-16")
    assert charge["version"] == 2 and charge["status"] == "unbilled"
    assert charge["amount"] == Decimal("975.00")  # 6 h × 162.50

    state = complete_second_milestone(ports)
    invoices = ports["erp"].of_type("invoice")
    assert len(invoices) == 2
    lines = [(i["description"], i["quantity"], i["amount"]) for i in invoices[1]["item"]["items"]]
    assert lines == [
        ("Cloud Engineer (NA) — time and materials", "6", "975.00"),
        (
            "Credit: time entry te-maria-lopez-2026-11-16 v1 (7.25 h × 162.50) billed on "
            "eng-acme-cloud-2026-ms-discovery-signoff — changed to version 2",
            "-7.25",
            "-1178.13",
        ),
        ("Milestone: Wave 1 migrated", "1", "12000.00"),
    ]
    # 975.00 − 1178.13 + 12000.00; billed for the entry overall: 1178.13 − 1178.13 + 975.00 = 975.00
    assert state["invoice_total"] == "11796.87"
    adjust = ports["store"].get("ENG#eng-acme-cloud-2026", "ADJUST#time#te-maria-lopez-2026-11-16#v1")
    assert adjust["status"] == "credited"

    # Re-running the second billing run changes nothing.
    again = complete_second_milestone(ports)
    assert again["invoice_total"] == "11796.87" and len(ports["erp"].of_type("invoice")) == 2


def test_an_unapproved_invoiced_entry_is_credited_in_full(ports: dict[str, Any]) -> None:
    set_up_project(second_milestone_deal(), store=ports["store"], audit=ports["audit"], erp=ports["erp"])
    post(ports, "02-time-priya-sharma-2026-11-16.json")  # 8 h × 210.00 = 1680.00
    complete_milestone(ports)
    result = post(ports, "02-time-priya-sharma-2026-11-16.json", version=2, status="unapproved")
    assert result["decision"] == "rejected"
    state = complete_second_milestone(ports)
    assert state["invoice_total"] == "10320.00"  # −1680.00 + 12000.00
    charge = ports["store"].get("ENG#eng-acme-cloud-2026", "CHARGE#te-priya-sharma-2026-11-16")
    assert "approval was withdrawn" in charge["reason"]


def test_missing_tax_registration_stops_the_run_before_the_erp(ports: dict[str, Any]) -> None:
    deal = envelope("01-opportunity-closed-won.json")
    data = json.loads(json.dumps(deal.data))
    data["engagement"]["tax_registration"] = None
    no_tax = deal.model_copy(update={"data": data})
    set_up_project(no_tax, store=ports["store"], audit=ports["audit"], erp=ports["erp"])
    with pytest.raises(TaxConfigurationMissing, match=r"engagement\.tax_registration"):
        complete_milestone(ports)
    assert ports["erp"].of_type("invoice") == []


def test_execution_names_are_deterministic_and_valid() -> None:
    assert execution_name("eng-1", "ms-1") == "eng-1-ms-1"
    long = execution_name("e" * 70, "m/1")
    assert len(long) <= 80 and long == execution_name("e" * 70, "m/1")


def expense_envelope(**data_overrides: Any) -> EventEnvelope:
    body = json.loads((SCENARIO.parents[1] / "samples" / "expense.approved.json").read_text())
    body["data"].update(data_overrides)
    payload = WebhookPayload.model_validate(body)
    record = event_type(payload.type).data_model.model_validate(payload.data)
    return build_envelope(source_system="psa", delivery_id="msg_expense_1", payload=payload, record=record)


def test_an_approved_expense_is_posted_to_the_erp_and_billed_on_the_next_invoice(
    ports: dict[str, Any],
) -> None:
    set_up(ports)
    result = post_expense(expense_envelope(), store=ports["store"], audit=ports["audit"], erp=ports["erp"])
    assert result["decision"] == "invoiceable" and result["amount"] == "189.00"
    [report] = ports["erp"].of_type("expenseReport")
    assert report["expense"]["items"][0]["amount"] == "189.00"
    # no receipt and the contract requires one: rejected, with the reason stored
    rejected = post_expense(
        expense_envelope(id="exp-2", receipt_attached=False),
        store=ports["store"],
        audit=ports["audit"],
        erp=ports["erp"],
    )
    assert rejected["decision"] == "rejected"
    state = complete_milestone(ports)
    [invoice] = ports["erp"].of_type("invoice")
    assert [i["description"] for i in invoice["item"]["items"]] == [
        "Expense: Lodging on 2026-11-17 (res-maria-lopez)",
        "Milestone: Discovery and migration plan signed off",
    ]
    assert state["invoice_total"] == "25189.00"  # 189.00 + 25000.00
    charge = ports["store"].get("ENG#eng-acme-cloud-2026", "EXPENSE#exp-maria-lopez-2026-11-17-hotel")
    assert charge["status"] == "invoiced"


def test_a_charge_recorded_before_audit_records_named_the_engagement_is_found_by_its_lookup_item(
    ports: dict[str, Any],
) -> None:
    """Entries posted before the audit record named the engagement have an ``ENTRY#…/LOOKUP`` item and
    audit records without it: an operator still finds their charge by the entry's id."""
    set_up(ports)
    store, audit = ports["store"], ports["audit"]
    post_expense(expense_envelope(), store=store, audit=audit, erp=ports["erp"])
    expense_id = expense_envelope().source_record_id
    charge = store.get("ENG#eng-acme-cloud-2026", f"EXPENSE#{expense_id}")
    assert charge_of(store, audit, kind="expense", source_id=expense_id) == charge
    # What an older release left: the audit record without the engagement, and the lookup item.
    [record] = audit.history("expense", expense_id)
    detail = json.loads(record["detail"])
    del detail["engagement_id"]
    record["detail"] = json.dumps(detail)
    store.client.put_item(TableName=audit.table_name, Item=_to_item(record))
    assert charge_of(store, audit, kind="expense", source_id=expense_id) is None
    legacy = {"pk": f"ENTRY#expense#{expense_id}", "sk": "LOOKUP", "engagement_id": "eng-acme-cloud-2026"}
    store.put_new(legacy)
    assert charge_of(store, audit, kind="expense", source_id=expense_id) == charge


def test_an_expense_redelivered_after_a_crash_past_its_charge_write_gets_its_audit(
    ports: dict[str, Any],
) -> None:
    """No idempotency record guards expense_posting: the redelivered version completes the step after
    its charge write (the audit record, which also lets an operator find the charge by the expense's id)
    instead of returning early, and bills nothing twice."""
    set_up(ports)
    store = ports["store"]
    audit = ports["audit"]

    class DiesAtTheAudit:
        def __getattr__(self, name: str) -> Any:
            return getattr(audit, name)

        def record(self, record: Any) -> None:
            raise RuntimeError("the Lambda died")

    event = expense_envelope()
    with pytest.raises(RuntimeError, match="the Lambda died"):
        post_expense(event, store=store, audit=DiesAtTheAudit(), erp=ports["erp"])  # type: ignore[arg-type]
    assert store.get("ENG#eng-acme-cloud-2026", f"EXPENSE#{event.source_record_id}") is not None
    assert charge_of(store, audit, kind="expense", source_id=event.source_record_id) is None
    again = post_expense(expense_envelope(), store=store, audit=audit, erp=ports["erp"])
    assert again["duplicate"] is True
    found = charge_of(store, audit, kind="expense", source_id=event.source_record_id)
    assert found is not None and found["pk"] == "ENG#eng-acme-cloud-2026"
    actions = [a["action"] for a in ports["audit"].history("expense", event.source_record_id)]
    assert actions.count("charge_invoiceable") == 1
    assert len(ports["erp"].of_type("expenseReport")) == 1


def test_time_bills_carry_the_accounts_service_item_and_segments(ports: dict[str, Any]) -> None:
    from r2r_core.erp.mapping import ErpMapping

    mapping = ErpMapping.from_secret(
        {
            "mapping": {
                "service_items_by_role": {"Cloud Engineer": "501"},
                "items": {"default": "500"},
                "departments": {"NA": "12"},
                "classes": {"Cloud Services": "7"},
                "locations": {"NA": "3"},
            }
        }
    )
    set_up(ports)
    post_time(
        envelope("12-time-maria-lopez-2026-11-16.json"),
        store=ports["store"],
        audit=ports["audit"],
        erp=ports["erp"],
        mapping=mapping,
    )
    post_time(
        envelope("17-time-tom-becker-training-non-billable.json"),
        store=ports["store"],
        audit=ports["audit"],
        erp=ports["erp"],
        mapping=mapping,
    )
    billable, training = ports["erp"].of_type("timeBill")
    # Maria works in NA for the Cloud Services unit: NA department and location, Cloud Services class.
    assert billable["item"] == {"id": "501"}
    assert (billable["department"], billable["class"], billable["location"]) == (
        {"id": "12"},
        {"id": "7"},
        {"id": "3"},
    )
    # Non-billable time carries no service item; Tom's EMEA region has no department or location mapped.
    assert "item" not in training and "department" not in training and training["class"] == {"id": "7"}


def milestone_delivery(version: int, status: str) -> EventEnvelope:
    """The sold-to-billed milestone as the PSA delivers a version of it (its own webhook id)."""
    delivery = json.loads((SCENARIO / "19-milestone-completed.json").read_text())
    delivery["body"]["data"].update(version=version, status=status)
    payload = WebhookPayload.model_validate(delivery["body"])
    record = event_type(payload.type).data_model.model_validate(payload.data)
    return build_envelope(
        source_system="psa", delivery_id=f"msg_ms_v{version}", payload=payload, record=record
    )


def test_a_milestone_accepted_after_its_invoice_recognises_its_revenue_once_without_a_second_run(
    ports: dict[str, Any],
) -> None:
    set_up(ports)
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.create_state_machine(
        name="milestone-to-invoice",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]

    def deliver(version: int, status: str) -> dict[str, Any]:
        return start_invoice_run(
            milestone_delivery(version, status),
            store=ports["store"],
            audit=ports["audit"],
            sfn=sfn,
            state_machine_arn=machine,
            publisher=ports["publisher"],
        )

    assert deliver(1, "completed")["started"] is True
    complete_milestone(ports)  # the run's steps: invoice 25000.00, the milestone is only completed
    assert [e.type for e in ports["publisher"].published] == ["invoice.created"]

    # Version 2, accepted: no second run (the name is fixed per milestone), the acceptance revenue once.
    accepted = deliver(2, "accepted")
    assert accepted["started"] is False
    assert accepted["revenue_event_id"] == "rev-milestone-ms-discovery-signoff"
    [revenue] = [e for e in ports["publisher"].published if e.type == "revenue.recognized"]
    # mixed contract, recognised on acceptance: the milestone's contract amount, 25000.00
    assert revenue.data["kind"] == "milestone_accepted"
    assert revenue.data["amount"] == {"amount": "25000.00", "currency": "USD"}
    assert len(sfn.list_executions(stateMachineArn=machine)["executions"]) == 1
    milestone = ports["store"].get("ENG#eng-acme-cloud-2026", "MILESTONE#ms-discovery-signoff")
    assert milestone["status"] == "invoiced" and milestone["accepted_version"] == 2

    # A redelivery of the acceptance publishes nothing new; the invoice is untouched.
    deliver(2, "accepted")
    assert [e.type for e in ports["publisher"].published] == ["invoice.created", "revenue.recognized"]
    assert len(ports["erp"].of_type("invoice")) == 1


class InterleavingErp(FakeErp):
    """An ERP whose first timeBill write lets ``meanwhile`` run (another version of the entry processed
    completely: ERP write and charge) just before it (``after=False``) or just after it."""

    def __init__(self, meanwhile: Any, *, after: bool) -> None:
        super().__init__()
        self.meanwhile = meanwhile
        self.after = after

    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str:
        run = self.meanwhile if record_type == "timeBill" else None
        self.meanwhile = None if run else self.meanwhile
        if run and not self.after:
            run()
        result = super().upsert(record_type, external_id, body)
        if run and self.after:
            run()
        return result


def _race(ports: dict[str, Any], first: int, meanwhile: int, *, after: bool) -> dict[str, Any]:
    """Version ``first`` reads the stored charge; ``meanwhile`` is posted in full before or after
    ``first`` writes the ERP, and before ``first`` records its charge."""
    set_up(ports)
    hours = {1: "7.25", 2: "4"}
    erp = InterleavingErp(
        lambda: post_time(
            envelope("12-time-maria-lopez-2026-11-16.json", version=meanwhile, hours=hours[meanwhile]),
            store=ports["store"],
            audit=ports["audit"],
            erp=erp,
        ),
        after=after,
    )
    erp.records = ports["erp"].records
    post_time(
        envelope("12-time-maria-lopez-2026-11-16.json", version=first, hours=hours[first]),
        store=ports["store"],
        audit=ports["audit"],
        erp=erp,
    )
    [bill] = erp.of_type("timeBill")
    charge = ports["store"].get("ENG#eng-acme-cloud-2026", "CHARGE#te-maria-lopez-2026-11-16")
    return {"bill": bill, "charge": charge}


def test_a_stale_version_writing_the_erp_last_is_overwritten_by_the_version_that_stands(
    ports: dict[str, Any],
) -> None:
    # v1 read nothing, v2 was posted in full meanwhile, then v1 wrote the ERP last (4 h → 7.25 h).
    outcome = _race(ports, first=1, meanwhile=2, after=False)
    assert outcome["charge"]["version"] == 2
    assert Decimal(str(outcome["bill"]["hours"])) == Decimal("4")


def test_a_newer_version_recorded_over_one_stored_meanwhile_writes_the_erp_again(
    ports: dict[str, Any],
) -> None:
    # v2 read nothing and wrote the ERP; then v1 was posted in full (its ERP write last), then v2 recorded.
    outcome = _race(ports, first=2, meanwhile=1, after=True)
    assert outcome["charge"]["version"] == 2
    assert Decimal(str(outcome["bill"]["hours"])) == Decimal("4")


def test_a_later_deal_version_keeps_the_customer_master_the_erp_owns(ports: dict[str, Any]) -> None:
    set_up(ports)
    [customer] = ports["erp"].of_type("customer")
    finance_name = customer["companyName"] + " (as finance keeps it)"
    customer["companyName"] = finance_name  # edited in NetSuite, which owns the customer master

    second = envelope("01-opportunity-closed-won.json", version=2)
    second_deal = second.data
    second_deal["client"] = {**second_deal["client"], "legal_name": "Renamed in the CRM Ltd"}
    second_deal["project"] = {**second_deal["project"], "name": "Cloud migration, phase 2"}
    calls = ports["erp"].calls
    result = set_up_project(second, store=ports["store"], audit=ports["audit"], erp=ports["erp"])

    [customer] = ports["erp"].of_type("customer")
    [job] = ports["erp"].of_type("job")
    assert customer["companyName"] == finance_name
    assert result["erp_customer_id"] == customer["id"]
    assert ports["erp"].calls == calls + 1  # the job only: the deal still owns the project's terms
    assert job["companyName"] == "Cloud migration, phase 2"
