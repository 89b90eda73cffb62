"""Acceptance: file drops in the raw archive bucket on the embedded local stack (S3 → EventBridge → intake).

After the sold-to-billed set-up, a Workday worker extract terminates Nora Quist (wd-31001) on 2026-11-30.
A timesheet CSV then brings, for the same engagement (Cloud Engineer EMEA, 145.00):
  line 2  Nora  2026-11-27  8 h   → a timeBill (before her termination)
  line 3  Nora  2026-12-01  6 h   → an exception (after her termination), no timeBill
  line 4  Olaf  2026-11-27  hours "eight" → a row exception naming line 4 and the hours field
  line 5  Olaf  2026-11-30  7.5 h → a timeBill
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infra.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "sold-to-billed"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]

WORKERS = (
    "Employee_ID,Legal_First_Name,Legal_Last_Name,Email_Address,Active,Termination_Date,Job_Profile,Role,"
    "Region,Last_Updated\n"
    "31001,Nora,Quist,nora@acme.example,0,2026-11-30,Cloud Engineer,Cloud Engineer,EMEA,"
    "2026-11-26T08:00:00Z\n"
    "31002,Olaf,Berg,olaf@acme.example,1,,Cloud Engineer,Cloud Engineer,EMEA,2026-11-26T08:00:00Z\n"
)
HEADER = (
    "entry_id,engagement_id,project_id,resource_id,role,region,work_date,hours,billable,status,updated_at\n"
)
ROW = "{id},eng-acme-cloud-2026,prj-acme-cloud-2026,{who},Cloud Engineer,EMEA,{day},{hours},true,approved,"
ROW += "{at}\n"
AT = "2026-12-02T09:00:00Z"
TIMESHEET = HEADER + "".join(
    ROW.format(id=i, who=who, day=day, hours=hours, at=AT)
    for i, who, day, hours in [
        ("fx-nora-1127", "wd-31001", "2026-11-27", "8"),
        ("fx-nora-1201", "wd-31001", "2026-12-01", "6"),
        ("fx-olaf-1127", "wd-31002", "2026-11-27", "eight"),
        ("fx-olaf-1130", "wd-31002", "2026-11-30", "7.5"),
    ]
)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    erp_db = tmp_path_factory.mktemp("erp") / "erp.sqlite"
    with LocalStack.start(ROOT, erp_db=erp_db) as stack:
        setup = stack.run_scenario(SCENARIO)
        before = {t["externalId"] for t in stack.erp_records()["timeBill"]}
        workers = stack.put_file("inbound/workday/workers-2026-11-26.csv", WORKERS.encode())
        timesheet = stack.put_file("inbound/timesheets/week-48.csv", TIMESHEET.encode())
        stack.drain(timeout=120)
        after = stack.erp_records()["timeBill"]
        return {
            "setup_ok": setup["ok"],
            "workers": workers,
            "timesheet": timesheet,
            "new_time_bills": [t for t in after if t["externalId"] not in before],
            "exceptions": stack.exceptions(),
        }


def test_the_set_up_ran_and_the_drops_were_versioned_objects(outcome: dict[str, Any]) -> None:
    assert outcome["setup_ok"]
    assert outcome["workers"]["version_id"] and outcome["timesheet"]["version_id"]


def test_good_rows_become_time_bills_and_time_after_termination_does_not(outcome: dict[str, Any]) -> None:
    bills = {t["externalId"]: Decimal(str(t["hours"])) for t in outcome["new_time_bills"]}
    assert bills == {"r2r-time-fx-nora-1127": Decimal("8"), "r2r-time-fx-olaf-1130": Decimal("7.5")}


def test_time_after_termination_is_an_exception_for_finance(outcome: dict[str, Any]) -> None:
    [terminated] = [e for e in outcome["exceptions"] if e.get("error_type") == "ResourceTerminated"]
    assert terminated["source_record_id"] == "fx-nora-1201"
    assert "terminated on 2026-11-30" in terminated["error"]


def test_the_bad_row_is_one_exception_naming_line_and_field(outcome: dict[str, Any]) -> None:
    rows = [e for e in outcome["exceptions"] if e.get("connector") == "file_drop"]
    assert [(r["line"], r["field"], r["object_key"]) for r in rows] == [
        (4, "hours", "inbound/timesheets/week-48.csv")
    ]
