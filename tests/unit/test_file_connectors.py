"""File drops (Workday worker extracts, managed CSVs of time and expenses): every fixture, row by row.

Bad rows are reported with their line, field and record; good rows proceed; whole-file problems
(hostile XML, not CSV, missing columns, oversized) reject the file naming what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from r2r_core.connectors import files
from r2r_core.connectors.files import FileRejected, parse_expenses, parse_timesheets, parse_workday_workers
from r2r_core.model.events import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[2]
WORKDAY = ROOT / "events" / "workday"
EXCHANGE = ROOT / "events" / "file_exchange"


def _valid(result: files.FileResult) -> None:
    for envelope in result.envelopes:
        version = EVENT_TYPES[envelope.type].schema_version
        schema = json.loads((ROOT / "events" / "schemas" / f"{envelope.type}.v{version}.json").read_text())
        jsonschema.validate(json.loads(envelope.model_dump_json()), schema)


def _errors(result: files.FileResult) -> list[tuple[str, str]]:
    return [(e.record, e.field) for e in result.row_errors]


def test_every_file_fixture_is_read_row_by_row() -> None:
    fixtures = sorted([*WORKDAY.iterdir(), *EXCHANGE.iterdir()])
    assert len(fixtures) == 4
    for path in fixtures:
        parser = {"workday": parse_workday_workers, "file_exchange": None}[path.parent.name] or (
            parse_timesheets if "timesheets" in path.name else parse_expenses
        )
        result = parser(path.name, path.read_bytes())
        _valid(result)
        assert result.rows == len(result.envelopes) + len(result.row_errors)
        assert result.envelopes and result.row_errors, path.name  # each fixture holds good and bad rows


def test_workday_csv_workers_terminations_and_bad_rows_by_line() -> None:
    result = parse_workday_workers("01-workers.csv", (WORKDAY / "01-workers.csv").read_bytes())
    by_id = {e.data["id"]: e for e in result.envelopes}
    assert sorted(by_id) == ["wd-21001", "wd-21002", "wd-21003"]
    ana = by_id["wd-21001"].data
    assert ana["cost_rate"] == {"amount": "96.50", "currency": "USD"}
    assert (ana["role"], ana["job_profile"], ana["cost_center"], ana["region"]) == (
        "Data Architect",
        "Principal Data Architect",
        "CC-5120-EMEA",
        "EMEA",
    )
    chloe = by_id["wd-21003"]
    assert chloe.type == "resource.terminated"
    assert (chloe.data["status"], chloe.data["termination_date"]) == ("terminated", "2026-11-30")
    assert _errors(result) == [
        ("01-workers.csv line 5", "Cost_Rate"),
        ("01-workers.csv line 6", "Termination_Date"),
    ]
    assert "not a number" in result.row_errors[0].problem


def test_workday_xml_variant() -> None:
    result = parse_workday_workers("02-workers.xml", (WORKDAY / "02-workers.xml").read_bytes())
    assert [(e.type, e.data["id"]) for e in result.envelopes] == [
        ("resource.upserted", "wd-21006"),
        ("resource.terminated", "wd-21002"),
    ]
    assert _errors(result) == [("02-workers.xml line 3", "Legal_Last_Name")]


def test_timesheet_and_expense_csvs_report_each_bad_row() -> None:
    time = parse_timesheets("01-timesheets.csv", (EXCHANGE / "01-timesheets.csv").read_bytes())
    assert [e.data["id"] for e in time.envelopes] == ["fx-te-ana-2026-11-23", "fx-te-ana-2026-11-26"]
    assert time.envelopes[0].data["hours"] == "7.5"
    assert time.envelopes[1].data["billable"] is False
    assert _errors(time) == [
        ("01-timesheets.csv line 3", "time_entry.approved.hours"),
        ("01-timesheets.csv line 4", "work_date"),
    ]
    expenses = parse_expenses("02-expenses.csv", (EXCHANGE / "02-expenses.csv").read_bytes())
    assert [e.data["amount"] for e in expenses.envelopes] == [{"amount": "189.00", "currency": "USD"}]
    assert _errors(expenses) == [
        ("02-expenses.csv line 3", "expense.approved.(record)"),
        ("02-expenses.csv line 4", "receipt_attached"),
    ]


HOSTILE_XML = {
    "entity-expansion": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    b'<wd:Workers xmlns:wd="urn:com.workday/bsvc"><wd:Worker><wd:Employee_ID>&b;</wd:Employee_ID>'
    b"</wd:Worker></wd:Workers>",
    "external-entity": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    b'<wd:Workers xmlns:wd="urn:com.workday/bsvc"><wd:Worker><wd:Employee_ID>&e;</wd:Employee_ID>'
    b"</wd:Worker></wd:Workers>",
    "truncated": (WORKDAY / "02-workers.xml").read_bytes()[:400],
    "wrong-namespace": (WORKDAY / "02-workers.xml")
    .read_bytes()
    .replace(b"urn:com.workday/bsvc", b"urn:evil"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_XML))
def test_hostile_or_malformed_worker_xml_rejects_the_file(name: str) -> None:
    with pytest.raises(FileRejected) as caught:
        parse_workday_workers("w.xml", HOSTILE_XML[name])
    assert caught.value.record == "w.xml" and caught.value.field == "(document)"
    assert "root:" not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        (b"entry_id,hours\nx,1\n", "(header)", "missing columns"),
        (b"\xff\xfe\x00a", "(file)", "NUL"),
        (b"\xff\xfeab", "(file)", "not UTF-8"),
        (b"x" * (files.MAX_FILE_BYTES + 1), "(file)", "the limit is"),
    ],
)
def test_a_file_that_is_not_the_csv_is_rejected_naming_the_problem(
    body: bytes, field: str, problem: str
) -> None:
    with pytest.raises(FileRejected) as caught:
        parse_timesheets("t.csv", body)
    assert caught.value.field == field and problem in caught.value.problem


def test_wrong_type_and_oversized_cells_and_extra_cells_are_row_errors() -> None:
    header = (EXCHANGE / "01-timesheets.csv").read_bytes().splitlines()[0]
    good = (EXCHANGE / "01-timesheets.csv").read_bytes().splitlines()[1]
    rows = [
        good.replace(b",7.5,", b",seven,"),
        good.replace(b",workshop", b"," + b"n" * 5000),
        good + b",extra",
        good,
    ]
    result = parse_timesheets("t.csv", b"\n".join([header, *rows]) + b"\n")
    assert [(e.record, e.field) for e in result.row_errors] == [
        ("t.csv line 2", "hours"),
        ("t.csv line 3", "notes"),
        ("t.csv line 4", "(row)"),
    ]
    assert len(result.envelopes) == 1


def test_the_prefix_chooses_the_parser() -> None:
    assert files.parser_for("inbound/workday/2026-11-26.csv") is parse_workday_workers
    assert files.parser_for("inbound/timesheets/a.csv") is parse_timesheets
    assert files.parser_for("inbound/expenses/a.csv") is parse_expenses
    assert files.parser_for("raw/crm/x") is None
