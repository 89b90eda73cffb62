"""Acceptance: Kantata OX by polling, on the embedded local stack with the Kantata sandbox.

sold-to-billed's closed-won deal sets up engagement eng-acme-cloud-2026; its Kantata workspace is linked
with `r2r kantata link` (the crosswalk). Kantata then holds 25 approved time entries (three pages: the
poller reads 10 per page here, ``KANTATA_PAGE_SIZE``) and a travel expense. One tick of the poller's
schedule → every entry is a NetSuite timeBill and the expense an expenseReport, exactly once, at the rate
card's rates; a second tick changes nothing (the watermark); a burst of 429s (three without Retry-After,
one with it) is ridden out.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.local.stack import LocalStack, write_json
from tests.e2e.kantata_seed import CLOSED_WON, ENGAGEMENT, MINUTES, seed_week

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = 25
PAGE_SIZE = 10  # three pages (the default of 100 would need 101 entries: slow on a busy machine)
RATES = {"Solution Architect": Decimal("210.00"), "Cloud Engineer": Decimal("145.00")}

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]


def kantata_records(records: dict[str, list[dict[str, Any]]], kind: str, marker: str) -> list[dict[str, Any]]:
    return [r for r in records.get(kind, []) if marker in str(r.get("externalId"))]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    state = tmp_path_factory.mktemp("kantata")
    with LocalStack.start(
        ROOT, erp_db=state / "erp.sqlite", function_env={"KANTATA_PAGE_SIZE": str(PAGE_SIZE)}
    ) as stack:
        assert stack.kantata is not None, "the template's poller calls Kantata: its sandbox runs"
        closed_won = stack.post_webhook("crm", CLOSED_WON["body"], webhook_id=CLOSED_WON["webhook_id"])
        stack.drain(timeout=120)
        local_json = state / "local.json"
        write_json(local_json, stack.describe())
        workspace = stack.kantata.seed(
            "workspaces", {"title": "Acme cloud migration", "currency": "USD", "start_date": "2026-11-16"}
        )
        link = CliRunner().invoke(
            app, ["kantata", "link", workspace, ENGAGEMENT, "--local-json", str(local_json)]
        )
        seeded = seed_week(stack.kantata, workspace, entries=ENTRIES)

        stack.tick("kantata_poller")
        stack.drain(timeout=300)
        first = stack.erp_records()
        kantata_gets_first = stack.kantata.stats().get("GET time_entries", 0)

        stack.tick("kantata_poller")
        stack.drain(timeout=120)
        second = stack.erp_records()

        stack.kantata.throttle(3)  # Kantata's 429: no Retry-After
        stack.kantata.throttle(1, retry_after=1)
        late = stack.kantata.seed(
            "time_entries",
            {
                "date_performed": "2026-11-20",
                "time_in_minutes": 45,
                "billable": True,
                "approved": True,
                "workspace_id": workspace,
                "user_id": "77002",
                "role_id": "502",
            },
        )
        stack.tick("kantata_poller")
        stack.drain(timeout=180)
        third = stack.erp_records()
        return {
            "closed_won": closed_won.status,
            "link": link,
            "seeded": seeded,
            "late": late,
            "first": first,
            "second": second,
            "third": third,
            "kantata_gets_first": kantata_gets_first,
            "kantata_stats": stack.kantata.stats(),
            "exceptions": stack.exceptions(),
            "dlqs": stack.queue_depths(dlq_only=True),
            "saas": stack.saas_records(),
        }


def test_the_workspace_is_linked_to_the_closed_won_engagement(outcome: dict[str, Any]) -> None:
    assert outcome["closed_won"] == 202
    assert outcome["link"].exit_code == 0, outcome["link"].output
    linked = json.loads(outcome["link"].output)
    assert (linked["engagement_id"], linked["project_id"], linked["region"]) == (
        ENGAGEMENT,
        "prj-acme-cloud-2026",
        "EMEA",
    )


def test_every_approved_entry_is_one_time_bill_at_the_rate_card(outcome: dict[str, Any]) -> None:
    bills = kantata_records(outcome["first"], "timeBill", "kantata-te-")
    ids = [b["externalId"] for b in bills]
    assert len(ids) == len(set(ids)) == ENTRIES
    assert set(ids) == {f"r2r-time-kantata-te-{i}" for i in outcome["seeded"]["time_entries"]}
    assert outcome["kantata_gets_first"] == 3  # three pages of 10, 10 and 5
    by_entry = {b["externalId"].removeprefix("r2r-time-kantata-te-"): b for b in bills}
    for index, entry_id in enumerate(outcome["seeded"]["time_entries"]):
        minutes = MINUTES[index % len(MINUTES)]
        bill = by_entry[entry_id]
        assert Decimal(str(bill["hours"])) == (Decimal(minutes) / 60).quantize(Decimal("0.01"))
        assert (
            Decimal(str(bill["rate"])) == RATES["Solution Architect" if index % 2 == 0 else "Cloud Engineer"]
        )


def test_the_expense_is_one_expense_report_in_exact_money(outcome: dict[str, Any]) -> None:
    [report] = kantata_records(outcome["first"], "expenseReport", "kantata-exp-")
    [line] = report["expense"]["items"]
    assert Decimal(str(line["amount"])) == Decimal("412.70")


def test_a_second_tick_changes_nothing(outcome: dict[str, Any]) -> None:
    assert outcome["second"] == outcome["first"]


def test_a_burst_of_429s_is_ridden_out(outcome: dict[str, Any]) -> None:
    assert outcome["kantata_stats"]["429"] == 4
    new = [
        b
        for b in kantata_records(outcome["third"], "timeBill", "kantata-te-")
        if b["externalId"] not in {x["externalId"] for x in outcome["first"]["timeBill"]}
    ]
    assert [(b["externalId"], Decimal(str(b["hours"]))) for b in new] == [
        (f"r2r-time-kantata-te-{outcome['late']}", Decimal("0.75"))
    ]
    assert len(kantata_records(outcome["third"], "timeBill", "kantata-te-")) == ENTRIES + 1


def test_nothing_went_wrong_on_the_way(outcome: dict[str, Any]) -> None:
    assert [e for e in outcome["exceptions"] if e.get("status") == "open"] == []
    assert all(depth == 0 for depth in outcome["dlqs"].values())
    assert len(outcome["saas"]["kantata"]["time_entries"]) == ENTRIES + 1
