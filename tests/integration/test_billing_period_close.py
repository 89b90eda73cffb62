"""Period-end billing run on moto (DynamoDB, Step Functions) with an in-memory ERP: a contract billed monthly
in arrears, with no milestone, is invoiced once per ended month.

Scenario ``events/scenarios/tm-monthly`` (USD rate card: Cloud Engineer EMEA 145.00, Cloud Engineer NA 162.50,
Solution Architect NA 225.00), all October time approved in October, so deferred to 1 November:
  Ana Costa    Cloud Engineer     EMEA  7.5 + 8 = 15.5 h × 145.00 = 2247.50
  Carl Jensen  Cloud Engineer     NA    2.35 h   × 162.50 = 381.875 → 381.88
  Ben Okafor   Solution Architect NA    6.25 h   × 225.00 = 1406.25
October invoice: 2247.50 + 381.88 + 1406.25 = 4035.63 (three lines, no milestone line).
Ana's 4 h of 2 November (× 145.00 = 580.00, made up by the test) waits for the period ending 30 November.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from moto import mock_aws

from r2r_core.errors import ContractInvalid
from r2r_core.flows.cap_release import ReleaseRefused, release_held_time
from r2r_core.flows.exceptions import record_execution_failure
from r2r_core.flows.invoicing import STEPS, InvoiceSteps
from r2r_core.flows.period_close import (
    Tick,
    close_billing_periods,
    due_periods,
    last_ended_period,
    period_end_items,
)
from r2r_core.flows.project_setup import set_up_project
from r2r_core.flows.time_posting import post_time
from r2r_core.model.events import EventEnvelope, WebhookPayload, build_envelope, event_type
from r2r_core.runtime import reset_clients
from r2r_core.state import AuditLog, StateStore
from tests.conftest import create_state_and_audit_tables
from tests.integration.test_billing_flows import FakeErp, FakePublisher

ROOT = Path(__file__).resolve().parents[2]
TM_MONTHLY = ROOT / "events" / "scenarios" / "tm-monthly"
SOLD_TO_BILLED = ROOT / "events" / "scenarios" / "sold-to-billed"
ENG = "eng-globex-ops-2026"
OCTOBER = [
    "02-time-ana-costa-2026-10-05.json",
    "03-time-ana-costa-2026-10-06.json",
    "04-time-ben-okafor-2026-10-07.json",
    "05-time-carl-jensen-2026-10-29.json",
]
ASL = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})


def envelope(path: Path) -> EventEnvelope:
    delivery = json.loads(path.read_text())
    payload = WebhookPayload.model_validate(delivery["body"])
    record = event_type(payload.type).data_model.model_validate(payload.data)
    return build_envelope(
        source_system=delivery["source"], delivery_id=delivery["webhook_id"], payload=payload, record=record
    )


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    with mock_aws():
        reset_clients()
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_and_audit_tables(ddb)
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = sfn.create_state_machine(
            name="milestone-to-invoice", definition=ASL, roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        store, audit, erp, publisher = (
            StateStore("state", ddb),
            AuditLog("audit", ddb),
            FakeErp(),
            FakePublisher(),
        )
        for path in (
            TM_MONTHLY / "01-opportunity-closed-won.json",
            SOLD_TO_BILLED / "01-opportunity-closed-won.json",
        ):
            set_up_project(envelope(path), store=store, audit=audit, erp=erp)
        yield {
            "store": store,
            "audit": audit,
            "erp": erp,
            "publisher": publisher,
            "sfn": sfn,
            "machine": machine,
        }
        reset_clients()


def post(world: dict[str, Any], path: Path, **data: str) -> None:
    """Post a time entry of the scenario, or (``data``) another entry shaped like it."""
    delivery = envelope(path)
    if data:
        delivery = delivery.model_copy(
            update={"data": {**delivery.data, **data}, "source_record_id": data["id"]}
        )
    post_time(delivery, store=world["store"], audit=world["audit"], erp=world["erp"])


def post_november(world: dict[str, Any]) -> None:
    """Ana, 4 h on 2 November, approved on 6 November: deferred to 1 December."""
    post(
        world,
        TM_MONTHLY / "02-time-ana-costa-2026-10-05.json",
        id="te-ana-costa-2026-11-02",
        work_date="2026-11-02",
        hours="4",
        approved_at="2026-11-06T16:00:00Z",
    )


def tick(world: dict[str, Any], on: date) -> list[dict[str, Any]]:
    """One daily tick on ``on``; every execution it started then runs its steps (as the state machine)."""
    before = {e["name"] for e in world["sfn"].list_executions(stateMachineArn=world["machine"])["executions"]}
    close_billing_periods(
        store=world["store"],
        audit=world["audit"],
        sfn=world["sfn"],
        state_machine_arn=world["machine"],
        tick=Tick(event_id=f"tick-{on.isoformat()}", at=datetime(on.year, on.month, on.day, 6, tzinfo=UTC)),
    )
    steps = InvoiceSteps(
        store=world["store"],
        audit=world["audit"],
        erp=lambda: world["erp"],
        publisher=lambda: world["publisher"],
        today=lambda: datetime(on.year, on.month, on.day, 6, 5, tzinfo=UTC),
    )
    finished = []
    for execution in world["sfn"].list_executions(stateMachineArn=world["machine"])["executions"]:
        if execution["name"] in before:
            continue
        state = json.loads(world["sfn"].describe_execution(executionArn=execution["executionArn"])["input"])
        for step in STEPS:
            state = steps.run(step, state, execution["executionArn"])
        finished.append(state)
    return finished


def lines(invoice: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [
        (line["description"], line["quantity"], line["rate"], line["amount"])
        for line in invoice["item"]["items"]
    ]


def test_last_ended_period_is_the_previous_months_last_day() -> None:
    assert last_ended_period(date(2026, 11, 1)) == date(2026, 10, 31)
    assert last_ended_period(date(2026, 11, 30)) == date(2026, 10, 31)
    assert last_ended_period(date(2026, 3, 2)) == date(2026, 2, 28)
    assert last_ended_period(date(2027, 1, 1)) == date(2026, 12, 31)


def test_an_ended_month_is_invoiced_once_with_its_lines_and_later_time_waits(world: dict[str, Any]) -> None:
    for name in OCTOBER:
        post(world, TM_MONTHLY / name)
    post_november(world)
    # The milestone contract (sold-to-billed: bills with its next invoice) is never a period run.
    post(world, SOLD_TO_BILLED / "12-time-maria-lopez-2026-11-16.json")

    # Still October: the period has not ended, nothing starts.
    assert tick(world, date(2026, 10, 31)) == []

    [october] = tick(world, date(2026, 11, 1))
    assert october["period_end"] == "2026-10-31"
    assert october["invoice_total"] == "4035.63"  # 2247.50 + 381.88 + 1406.25
    [invoice] = world["erp"].of_type("invoice")
    assert lines(invoice) == [
        ("Cloud Engineer (EMEA) — time and materials", "15.5", "145.00", "2247.50"),
        ("Cloud Engineer (NA) — time and materials", "2.35", "162.50", "381.88"),
        ("Solution Architect (NA) — time and materials", "6.25", "225.00", "1406.25"),
    ]
    assert [key for key in world["erp"].records if key[0] == "invoice"] == [
        ("invoice", f"r2r-invoice-{ENG}-period-2026-10-31")
    ]
    assert [e.type for e in world["publisher"].published] == ["invoice.created"]
    assert world["publisher"].published[0].data["milestone_id"] is None
    executions = world["sfn"].list_executions(stateMachineArn=world["machine"])["executions"]
    assert [e["name"] for e in executions] == [f"{ENG}-period-2026-10-31"]

    store = world["store"]
    status = {c["source_id"]: c["status"] for c in store.query_prefix(f"ENG#{ENG}", "CHARGE#")}
    assert status == {
        "te-ana-costa-2026-10-05": "invoiced",
        "te-ana-costa-2026-10-06": "invoiced",
        "te-ben-okafor-2026-10-07": "invoiced",
        "te-carl-jensen-2026-10-29": "invoiced",
        "te-ana-costa-2026-11-02": "unbilled",  # deferred to 1 December
    }
    draft = store.get(f"ENG#{ENG}", "INVOICE#PERIOD#2026-10-31")
    assert draft["status"] == "created" and draft["total"] == Decimal("4035.63")
    lookup = store.get(f"INVOICE#{ENG}-period-2026-10-31", "LOOKUP")
    assert lookup["draft_sk"] == "INVOICE#PERIOD#2026-10-31" and "milestone_id" not in lookup

    # Later ticks in November start nothing: the November time waits, October is billed.
    assert tick(world, date(2026, 11, 2)) == []
    assert tick(world, date(2026, 11, 30)) == []
    assert len(world["erp"].of_type("invoice")) == 1

    # After November ends, its time is invoiced on its own invoice.
    [november] = tick(world, date(2026, 12, 1))
    assert november["period_end"] == "2026-11-30"
    assert november["invoice_total"] == "580.00"  # 4 h × 145.00
    assert len(world["erp"].of_type("invoice")) == 2
    assert lines(world["erp"].records[("invoice", f"r2r-invoice-{ENG}-period-2026-11-30")]) == [
        ("Cloud Engineer (EMEA) — time and materials", "4", "145.00", "580.00"),
    ]


def test_a_second_tick_in_the_period_starts_nothing_and_a_rerun_bills_nothing_twice(
    world: dict[str, Any],
) -> None:
    for name in OCTOBER:
        post(world, TM_MONTHLY / name)
    [first] = tick(world, date(2026, 11, 3))
    # Time of October approved late (after the month): billable at once, but the October run already exists.
    post(
        world,
        TM_MONTHLY / "02-time-ana-costa-2026-10-05.json",
        id="te-ana-costa-2026-10-30",
        work_date="2026-10-30",
        approved_at="2026-11-04T10:00:00Z",
    )
    result = close_billing_periods(
        store=world["store"],
        audit=world["audit"],
        sfn=world["sfn"],
        state_machine_arn=world["machine"],
        tick=Tick(event_id="tick-2", at=datetime(2026, 11, 5, 6, tzinfo=UTC)),
    )
    assert result == {"started": [], "already_started": [f"{ENG}-period-2026-10-31"]}
    assert len(world["sfn"].list_executions(stateMachineArn=world["machine"])["executions"]) == 1

    # A redriven execution repeats every step: same invoice, same total, nothing billed twice.
    steps = InvoiceSteps(
        store=world["store"],
        audit=world["audit"],
        erp=lambda: world["erp"],
        publisher=lambda: world["publisher"],
        today=lambda: datetime(2026, 11, 6, tzinfo=UTC),
    )
    state = {k: first[k] for k in ("engagement_id", "period_end", "correlation_id", "event_id")}
    for step in STEPS:
        state = steps.run(step, state, "redrive")
    assert state["erp_invoice_id"] == first["erp_invoice_id"] and state["invoice_total"] == "4035.63"
    assert len(world["erp"].of_type("invoice")) == 1
    # The late October entry goes on the next period's invoice.
    [november] = tick(world, date(2026, 12, 1))
    assert november["invoice_total"] == "1087.50"  # 7.5 h × 145.00
    assert world["store"].get(f"ENG#{ENG}", "CHARGE#te-ana-costa-2026-10-30")["status"] == "invoiced"


def test_a_period_run_for_a_contract_not_billed_monthly_is_refused(world: dict[str, Any]) -> None:
    post(world, SOLD_TO_BILLED / "12-time-maria-lopez-2026-11-16.json")
    assert due_periods(world["store"], today=date(2026, 12, 1)) == []
    steps = InvoiceSteps(
        store=world["store"],
        audit=world["audit"],
        erp=lambda: world["erp"],
        publisher=lambda: world["publisher"],
    )
    state = {
        "engagement_id": "eng-acme-cloud-2026",
        "period_end": "2026-11-30",
        "correlation_id": "c",
        "event_id": "e",
    }
    with pytest.raises(ContractInvalid, match="not billed monthly"):
        steps.run("validate_contract", state, "x")


def test_a_failed_period_run_is_an_exception_with_the_amount_of_its_draft(world: dict[str, Any]) -> None:
    for name in OCTOBER:
        post(world, TM_MONTHLY / name)
    steps = InvoiceSteps(
        store=world["store"],
        audit=world["audit"],
        erp=lambda: world["erp"],
        publisher=lambda: world["publisher"],
    )
    state = {"engagement_id": ENG, "period_end": "2026-10-31", "correlation_id": "c", "event_id": "e"}
    for step in ("validate_contract", "confirm_approved_charges"):
        state = steps.run(step, state, "exec")
    event = {
        "detail": {
            "executionArn": f"arn:aws:states:us-east-1:123456789012:execution:m:{ENG}-period-2026-10-31",
            "status": "FAILED",
            "error": "ErpPermanentError",
            "cause": "{}",
            "input": json.dumps(
                {k: state[k] for k in ("engagement_id", "period_end", "correlation_id", "event_id")}
            ),
        }
    }
    assert record_execution_failure(event, store=world["store"], audit=world["audit"])
    [record] = world["store"].exceptions()
    assert record["period_end"] == "2026-10-31" and record["amount_at_risk"] == Decimal("4035.63")


# -- r2r billing release: time held over a cap for approval --------------------------------------------
# The same October, on a contract capped at 20 h (hold for approval):
#   Ana 7.5 + 8 = 15.5 h fit; Ben 6.25 h: 4.5 h fit, 1.75 h held; Carl 2.35 h: nothing fits, all held.
CAPPED = "eng-globex-capped-2026"


def set_up_capped(world: dict[str, Any]) -> None:
    delivery = envelope(TM_MONTHLY / "01-opportunity-closed-won.json")
    data = json.loads(json.dumps(delivery.data))
    data["id"] = "opp-globex-capped"
    data["engagement"].update(
        {"id": CAPPED, "opportunity_id": "opp-globex-capped", "billing_type": "capped_time_and_materials"}
    )
    data["engagement"]["cap_hours"] = "20"
    data["project"].update({"id": "prj-globex-capped-2026", "engagement_id": CAPPED})
    capped = delivery.model_copy(update={"data": data, "source_record_id": "opp-globex-capped"})
    set_up_project(capped, store=world["store"], audit=world["audit"], erp=world["erp"])
    for name in OCTOBER:
        entry = json.loads((TM_MONTHLY / name).read_text())["body"]["data"]
        post(
            world,
            TM_MONTHLY / name,
            id=f"{entry['id']}-capped",
            engagement_id=CAPPED,
            project_id="prj-globex-capped-2026",
        )


def charge(world: dict[str, Any], entry_id: str) -> dict[str, Any]:
    item = world["store"].get(f"ENG#{CAPPED}", f"CHARGE#{entry_id}")
    assert item is not None
    return dict(item)


def test_released_time_is_billed_over_the_cap_by_the_next_run(world: dict[str, Any]) -> None:
    set_up_capped(world)
    ben, carl = "te-ben-okafor-2026-10-07-capped", "te-carl-jensen-2026-10-29-capped"
    assert (charge(world, ben)["billable_hours"], charge(world, ben)["held_hours"]) == (
        Decimal("4.5"),
        Decimal("1.75"),
    )
    assert (charge(world, carl)["status"], charge(world, carl)["held_hours"]) == (
        "not_billable",
        Decimal("2.35"),
    )

    released = release_held_time(
        world["store"], world["audit"], ben, released_by="finance@northwind", note="CO-7"
    )
    assert released["billable_hours"] == Decimal("6.25") and released["amount"] == Decimal("1406.25")
    assert (
        released["status"] == "unbilled" and released["held_hours"] == 0 and released["cap_released"] is True
    )
    history = world["audit"].history("time_entry", ben)
    assert [h["action"] for h in history][-1] == "cap_hold_released"

    # The October run bills Ben in full although it takes the contract to 21.75 h; Carl stays held.
    [october] = tick(world, date(2026, 11, 1))
    assert october["invoice_total"] == "3653.75"  # 15.5 × 145.00 = 2247.50 + 6.25 × 225.00 = 1406.25
    invoice = world["erp"].records[("invoice", f"r2r-invoice-{CAPPED}-period-2026-10-31")]
    assert lines(invoice) == [
        ("Cloud Engineer (EMEA) — time and materials", "15.5", "145.00", "2247.50"),
        ("Solution Architect (NA) — time and materials", "6.25", "225.00", "1406.25"),
    ]
    assert charge(world, carl)["status"] == "not_billable"

    # Released later, Carl's 2.35 h go on the next period's invoice: 2.35 × 162.50 = 381.875 → 381.88.
    release_held_time(world["store"], world["audit"], carl, released_by="finance@northwind")
    [november] = tick(world, date(2026, 12, 1))
    assert november["invoice_total"] == "381.88"
    assert charge(world, carl)["status"] == "invoiced"


def test_release_refuses_what_is_not_held(world: dict[str, Any]) -> None:
    set_up_capped(world)
    with pytest.raises(ReleaseRefused, match="no hours held"):
        release_held_time(world["store"], world["audit"], "te-ana-costa-2026-10-05-capped", released_by="f")
    with pytest.raises(ReleaseRefused, match="no billing decision"):
        release_held_time(world["store"], world["audit"], "te-nobody", released_by="f")
    ben = "te-ben-okafor-2026-10-07-capped"
    release_held_time(world["store"], world["audit"], ben, released_by="f")
    with pytest.raises(ReleaseRefused, match="no hours held"):  # a second release changes nothing
        release_held_time(world["store"], world["audit"], ben, released_by="f")
    tick(world, date(2026, 11, 1))
    assert charge(world, ben)["status"] == "invoiced"


def test_hours_capped_again_at_the_run_add_to_those_held_at_posting(world: dict[str, Any]) -> None:
    set_up_capped(world)
    ben = "te-ben-okafor-2026-10-07-capped"
    assert (charge(world, ben)["billable_hours"], charge(world, ben)["held_hours"]) == (
        Decimal("4.5"),
        Decimal("1.75"),
    )
    # A posting that raced Ana's and Ben's (it saw none of their consumption): 2 h on 6 Oct, billable
    # in full. The run admits it before Ben's 7 Oct entry, so Ben now fits 20 - 15.5 - 2 = 2.5 h.
    race = dict(charge(world, "te-ana-costa-2026-10-06-capped"))
    race_id = "te-race-2026-10-06-capped"
    race.update(
        sk=f"CHARGE#{race_id}",
        source_id=race_id,
        time_entry_id=race_id,
        hours=Decimal(2),
        billable_hours=Decimal(2),
        amount=Decimal("290.00"),
        held_hours=Decimal(0),
    )
    world["store"].client.put_item(
        TableName=world["store"].table_name,
        Item={k: TypeSerializer().serialize(v) for k, v in race.items() if v is not None},
    )

    tick(world, date(2026, 11, 1))

    after = charge(world, ben)
    # 4.5 h billable at posting, 2.5 h fit at the run: 2 h more held, on top of the 1.75 h held at posting.
    assert after["billable_hours"] == Decimal("2.5")
    assert after["held_hours"] == Decimal("3.75")


# -- contracts billed with the next invoice and without an open milestone --------------------------------
NEXT = "eng-globex-next-2026"


def set_up_next_invoice(world: dict[str, Any], milestones: list[dict[str, str]]) -> None:
    """The tm-monthly contract billed ``with_next_invoice`` (time invoiceable when decided), with
    ``milestones``; the October time of the scenario posted to it."""
    delivery = envelope(TM_MONTHLY / "01-opportunity-closed-won.json")
    data = json.loads(json.dumps(delivery.data))
    data["id"] = "opp-globex-next"
    data["engagement"].update(
        {
            "id": NEXT,
            "opportunity_id": "opp-globex-next",
            "billing_schedule": "with_next_invoice",
            "milestones": milestones,
        }
    )
    data["project"].update({"id": "prj-globex-next-2026", "engagement_id": NEXT})
    deal = delivery.model_copy(update={"data": data, "source_record_id": "opp-globex-next"})
    set_up_project(deal, store=world["store"], audit=world["audit"], erp=world["erp"])
    for name in OCTOBER:
        entry = json.loads((TM_MONTHLY / name).read_text())["body"]["data"]
        post(
            world,
            TM_MONTHLY / name,
            id=f"{entry['id']}-next",
            engagement_id=NEXT,
            project_id="prj-globex-next-2026",
        )


def test_a_contract_billed_with_the_next_invoice_and_no_milestone_is_billed_at_period_end(
    world: dict[str, Any],
) -> None:
    set_up_next_invoice(world, milestones=[])
    # Time in November (work 2 Nov): billable from its work date, after the period ending 31 October.
    post(
        world,
        TM_MONTHLY / "02-time-ana-costa-2026-10-05.json",
        id="te-ana-costa-2026-11-02-next",
        work_date="2026-11-02",
        hours="4",
        approved_at="2026-11-06T16:00:00Z",
        engagement_id=NEXT,
        project_id="prj-globex-next-2026",
    )
    [october] = tick(world, date(2026, 11, 7))
    # The same October lines as the monthly contract: 2247.50 + 381.88 + 1406.25 = 4035.63
    assert october["engagement_id"] == NEXT and october["invoice_total"] == "4035.63"
    invoice = world["erp"].records[("invoice", f"r2r-invoice-{NEXT}-period-2026-10-31")]
    assert [line[3] for line in lines(invoice)] == ["2247.50", "381.88", "1406.25"]
    # The 2 November entry waits for the period ending 30 November: 4 h × 145.00 = 580.00
    [november] = tick(world, date(2026, 12, 1))
    assert november["invoice_total"] == "580.00"


def test_a_contract_billed_with_the_next_invoice_waits_for_its_open_milestone(world: dict[str, Any]) -> None:
    set_up_next_invoice(
        world,
        milestones=[
            {"id": "ms-go-live", "name": "Go live", "amount": {"amount": "5000.00", "currency": "USD"}}
        ],
    )
    # The milestone is open: its invoice will carry the time, no period run.
    assert due_periods(world["store"], today=date(2026, 11, 7)) == []
    steps = InvoiceSteps(
        store=world["store"],
        audit=world["audit"],
        erp=lambda: world["erp"],
        publisher=lambda: world["publisher"],
    )
    state = {"engagement_id": NEXT, "period_end": "2026-10-31", "correlation_id": "c", "event_id": "e"}
    with pytest.raises(ContractInvalid, match="open milestones"):
        steps.run("validate_contract", state, "x")
    # Once the last milestone is completed, time left unbilled goes on the period-end invoice.
    world["store"].put_versioned(
        {
            "pk": f"ENG#{NEXT}",
            "sk": "MILESTONE#ms-go-live",
            "version": 1,
            "milestone": "{}",
            "status": "invoiced",
        }
    )
    [due] = due_periods(world["store"], today=date(2026, 11, 7))
    assert due.engagement_id == NEXT and len(due.charges) == 4


# -- credits larger than the charges: a credit memo, never a negative invoice ------------------------------
def unapprove(world: dict[str, Any], entry_id: str, path: Path) -> None:
    """Version 2 of an entry of the NEXT contract with its approval withdrawn."""
    delivery = envelope(path)
    data = {**delivery.data, "id": entry_id, "version": 2, "status": "unapproved"}
    data |= {"engagement_id": NEXT, "project_id": "prj-globex-next-2026"}
    post_time(
        delivery.model_copy(update={"data": data, "source_record_id": entry_id, "source_record_version": 2}),
        store=world["store"],
        audit=world["audit"],
        erp=world["erp"],
    )


@pytest.mark.parametrize("with_november_time", [False, True])
def test_credits_larger_than_the_charges_go_on_a_credit_memo(
    world: dict[str, Any], with_november_time: bool
) -> None:
    set_up_next_invoice(world, milestones=[])
    [october] = tick(world, date(2026, 11, 1))
    assert october["invoice_total"] == "4035.63" and october["document"] == "invoice"
    # Ben's 6.25 h × 225.00 = 1406.25 lose their approval in November: credited in full on the next run.
    unapprove(world, "te-ben-okafor-2026-10-07-next", TM_MONTHLY / "04-time-ben-okafor-2026-10-07.json")
    if with_november_time:  # Ana, 4 h on 2 November × 145.00 = 580.00
        post(
            world,
            TM_MONTHLY / "02-time-ana-costa-2026-10-05.json",
            id="te-ana-costa-2026-11-02-next",
            work_date="2026-11-02",
            hours="4",
            engagement_id=NEXT,
            project_id="prj-globex-next-2026",
        )
    published_before = len(world["publisher"].published)

    [november] = tick(world, date(2026, 12, 1))
    # The run nets 580.00 − 1406.25 = −826.25 (or −1406.25 without November time): below zero, so the
    # credit goes on a NetSuite credit memo of 1406.25 (a positive line) and only the charges on an invoice.
    assert november["invoice_total"] == ("-826.25" if with_november_time else "-1406.25")
    [memo] = world["erp"].of_type("creditMemo")
    assert memo["entity"] == {"id": world["store"].get(f"ENG#{NEXT}", "TERMS")["erp_customer_id"]}
    assert [(i["quantity"], i["rate"], i["amount"]) for i in memo["item"]["items"]] == [
        ("6.25", "225.00", "1406.25")
    ]
    assert november["credit_memo_total"] == "1406.25"
    assert november["credit_memo_external_id"] == f"r2r-credit-memo-{NEXT}-period-2026-11-30"
    adjust = world["store"].get(f"ENG#{NEXT}", "ADJUST#time#te-ben-okafor-2026-10-07-next#v1")
    assert adjust["status"] == "credited"
    assert adjust["credit_memo_external_id"] == november["credit_memo_external_id"]
    invoices = world["erp"].of_type("invoice")
    assert all(Decimal(i["item"]["items"][0]["amount"]) > 0 for i in invoices)  # never a negative line
    new_events = world["publisher"].published[published_before:]
    if with_november_time:
        assert november["document"] == "invoice_and_credit_memo"
        assert len(invoices) == 2
        november_invoice = world["erp"].records[("invoice", f"r2r-invoice-{NEXT}-period-2026-11-30")]
        assert lines(november_invoice) == [
            ("Cloud Engineer (EMEA) — time and materials", "4", "145.00", "580.00")
        ]
        [created] = new_events
        assert created.type == "invoice.created" and created.data["total"]["amount"] == "580.00"
    else:
        assert november["document"] == "credit_memo" and november["erp_invoice_id"] is None
        assert len(invoices) == 1 and new_events == []


def test_the_tick_reads_only_what_its_two_steps_use_in_one_scan(world: dict[str, Any]) -> None:
    store = world["store"]
    # Given an engagement's items of every kind beside its terms (set up by the fixture)
    pk = "ENG#eng-globex-ops-2026"
    kept = {
        ("MILESTONE#ms-1", "completed"),
        ("CHARGE#te-open", "unbilled"),
        ("EXPENSE#exp-open", "unbilled"),
        ("ADJUST#time#te-old#v1", "pending"),
        ("TIMESUM#PENDING#2026-10", None),
    }
    left = {
        ("CHARGE#te-billed", "invoiced"),
        ("CHARGE#te-cost", "not_billable"),
        ("EXPENSE#exp-billed", "invoiced"),
        ("ADJUST#time#te-older#v1", "credited"),
        ("TIMESUM#GROUP#x", None),
        ("REVENUE#rev-1", None),
        ("INVOICE#ms-1", "created"),
    }
    for sk, status in kept | left:
        store.put(
            {
                "pk": pk,
                "sk": sk,
                "status": status,
                "engagement_id": "eng-globex-ops-2026",
                "period": "2026-10",
                "billable_from": "2026-11-01",
                "notes": "x" * 500,
            }
        )
    store.put({"pk": "XWALK#customer#c-1", "sk": "SYS#netsuite", "internal_id": "7", "status": "unbilled"})
    scans: list[dict[str, Any]] = []
    store.client.meta.events.register(
        "before-parameter-build.dynamodb.Scan", lambda params, **_: scans.append(params)
    )

    # When the tick reads StateTable
    items = period_end_items(store)

    # Then in one parallel scan (its four segments, one page each here) it gets its terms, completed
    # milestones, unbilled charges, pending credits and pending summaries, with only the attributes its
    # steps use, and nothing else, each item once
    assert sorted((p.get("Segment"), p.get("TotalSegments")) for p in scans) == [(n, 4) for n in range(4)]
    assert len({(i["pk"], i["sk"]) for i in items}) == len(items)
    mine = {item["sk"] for item in items if item["pk"] == pk}
    assert mine == {sk for sk, _ in kept} | {"TERMS"}
    assert {item["pk"] for item in items} == {
        pk,
        "ENG#eng-acme-cloud-2026",  # the other engagement's terms
    }
    assert all("notes" not in item for item in items)
    # and both steps decide from them as from their own reads
    today = date(2026, 12, 1)
    assert due_periods(store, today=today, items=items) == due_periods(store, today=today)
    assert [i for i in items if i["sk"].startswith("TIMESUM#PENDING#")] == [
        {
            "pk": pk,
            "sk": "TIMESUM#PENDING#2026-10",
            "engagement_id": "eng-globex-ops-2026",
            "period": "2026-10",
            "billable_from": "2026-11-01",
        }
    ]
