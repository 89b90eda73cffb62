"""File drops: Workday Core Connector: Worker extracts (CSV and XML) and managed CSVs of time and expenses.

Every row is its own record: a bad row is reported with its line number, field and problem, and the
good rows proceed. Versions come from a last-updated column (epoch milliseconds), so a file dropped
twice, or an older extract after a newer one, changes nothing downstream.

Columns (header names, case-sensitive; Core Connector output is configurable, so the Workday column
names below are what the connector must be set up to produce — *shape unconfirmed*):

- Workday workers: ``Employee_ID``, ``Legal_First_Name``, ``Legal_Last_Name``, ``Email_Address``,
  ``Active`` (1/0), ``Termination_Date``, ``Job_Profile``, ``Role`` (else the job profile), ``Cost_Center``,
  ``Region``, ``Business_Unit``, ``Cost_Rate``, ``Cost_Rate_Currency``, ``Last_Updated`` (ISO 8601).
  XML: ``wd:Worker`` elements (namespace ``urn:com.workday/bsvc``) whose children carry the same names.
- Time entries: ``entry_id``, ``engagement_id``, ``project_id``, ``resource_id``, ``assignment_id``, ``role``,
  ``region``, ``work_date``, ``hours``, ``billable``, ``status`` (approved/unapproved), ``approved_at``,
  ``updated_at``, ``notes``.
- Expenses: ``expense_id``, ``engagement_id``, ``project_id``, ``resource_id``, ``expense_date``,
  ``category``, ``amount``, ``currency``, ``billable``, ``receipt_attached``, ``status``, ``approved_at``,
  ``updated_at``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml
from defusedxml import ElementTree as SafeET

from r2r_core.connectors.base import Fields, MappingError, envelope, version_of
from r2r_core.model.events import EventEnvelope

WORKDAY_NS = "urn:com.workday/bsvc"
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_ROWS = 50_000
MAX_CELL_CHARS = 4000


@dataclass
class FileResult:
    """What one file gave: events for the good rows, and one error per bad row."""

    envelopes: list[EventEnvelope] = field(default_factory=list)
    row_errors: list[MappingError] = field(default_factory=list)
    rows: int = 0
    error_lines: list[int] = field(default_factory=list)  # the line (XML: worker) of each row error


class FileRejected(MappingError):
    """The file as a whole cannot be read (not CSV/XML, too big, missing columns)."""


def _csv_rows(name: str, body: bytes, required: set[str]) -> Iterator[tuple[int, dict[str, str]]]:
    if len(body) > MAX_FILE_BYTES:
        raise FileRejected(name, "(file)", f"is {len(body)} bytes; the limit is {MAX_FILE_BYTES}")
    if b"\x00" in body:
        raise FileRejected(name, "(file)", "holds NUL bytes: not a text CSV")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRejected(name, "(file)", f"is not UTF-8 (byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise FileRejected(name, "(header)", f"not a CSV header: {exc}") from None
    missing = sorted(required - set(header))
    if missing:
        raise FileRejected(name, "(header)", f"missing columns {missing}")
    count = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FileRejected(name, f"line {reader.line_num}", f"not valid CSV: {exc}") from None
        count += 1
        if count > MAX_ROWS:
            raise FileRejected(name, "(file)", f"more than {MAX_ROWS} rows")
        yield reader.line_num, row


def _each_row(
    name: str,
    rows: Iterator[tuple[int, Mapping[str, Any]]],
    map_row: Callable[[Fields, str], list[EventEnvelope]],
    delivery: str,
) -> FileResult:
    result = FileResult()
    for line, row in rows:
        result.rows += 1
        fields = Fields(f"{name} line {line}", row)
        try:
            if None in row or any(isinstance(v, list) for v in row.values()):
                raise fields.fail("(row)", "has more cells than the header")
            too_long = next(
                (k for k, v in row.items() if isinstance(v, str) and len(v) > MAX_CELL_CHARS), None
            )
            if too_long is not None:
                raise fields.fail(too_long, f"is longer than {MAX_CELL_CHARS} characters")
            result.envelopes.extend(map_row(fields, f"{delivery}/{line}"))
        except MappingError as exc:
            result.row_errors.append(exc)
            result.error_lines.append(line)
    return result


# --- Workday ------------------------------------------------------------------------------------

WORKER_COLUMNS = {"Employee_ID", "Legal_First_Name", "Legal_Last_Name", "Active", "Region", "Last_Updated"}


def map_worker(fields: Fields, delivery_id: str) -> list[EventEnvelope]:
    employee_id = fields.req_text("Employee_ID", max_length=64)
    changed = fields.req_timestamp("Last_Updated")
    active = fields.flag("Active")
    termination = fields.day("Termination_Date", required=False)
    if not active and termination is None:
        raise fields.fail("Termination_Date", "is required for a worker who is not active")
    job_profile = fields.text("Job_Profile", required=False)
    role = fields.text("Role", required=False) or job_profile
    if role is None:
        raise fields.fail("Role", "is required (or Job_Profile)")
    rate = fields.decimal("Cost_Rate", required=False)
    currency = fields.text("Cost_Rate_Currency", required=rate is not None)
    first = fields.req_text("Legal_First_Name", max_length=100)
    name = f"{first} {fields.req_text('Legal_Last_Name', max_length=100)}"
    data = {
        "id": f"wd-{employee_id}",
        "version": version_of(changed),
        "name": name,
        "email": fields.text("Email_Address", required=False),
        "role": role,
        "region": fields.req_text("Region"),
        "business_unit": fields.text("Business_Unit", required=False),
        "cost_rate": {"amount": str(rate), "currency": currency} if rate is not None else None,
        "status": "active" if active else "terminated",
        "termination_date": termination.isoformat() if termination else None,
        "job_profile": job_profile,
        "cost_center": fields.text("Cost_Center", required=False),
    }
    return [
        envelope(
            type_name="resource.upserted" if active else "resource.terminated",
            source_system="workday",
            delivery_id=delivery_id,
            occurred_at=changed,
            data=data,
            record=fields.record,
        )
    ]


def parse_workday_workers(name: str, body: bytes) -> FileResult:
    """A Core Connector: Worker extract, CSV or XML (by content)."""
    if body.lstrip()[:1] == b"<":
        rows: Iterator[tuple[int, Mapping[str, Any]]] = _xml_workers(name, body)
    else:
        rows = _csv_rows(name, body, WORKER_COLUMNS)
    return _each_row(name, rows, map_worker, f"workday/{name}")


def _xml_workers(name: str, body: bytes) -> Iterator[tuple[int, dict[str, str]]]:
    if len(body) > MAX_FILE_BYTES:
        raise FileRejected(name, "(file)", f"is {len(body)} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise FileRejected(name, "(document)", f"refused unsafe XML: {type(exc).__name__}") from None
    except ParseError as exc:
        raise FileRejected(name, "(document)", f"not well-formed XML: {exc}") from None
    workers = root.findall(f"{{{WORKDAY_NS}}}Worker")
    if not workers:
        raise FileRejected(name, "(document)", f"no Worker element in namespace {WORKDAY_NS}")
    if len(workers) > MAX_ROWS:
        raise FileRejected(name, "(document)", f"more than {MAX_ROWS} workers")
    for index, worker in enumerate(workers, start=1):
        values = {}
        for child in worker:
            tag = child.tag.rpartition("}")[2]
            values[tag] = (child.text or "").strip()
        yield index, values


# --- managed file exchange: time entries and expenses ----------------------------------------------

TIME_COLUMNS = {
    "entry_id",
    "engagement_id",
    "project_id",
    "resource_id",
    "role",
    "region",
    "work_date",
    "hours",
}
EXPENSE_COLUMNS = {
    "expense_id",
    "engagement_id",
    "project_id",
    "resource_id",
    "expense_date",
    "category",
    "amount",
}


def _status(fields: Fields) -> str:
    status = (fields.text("status", required=False) or "approved").lower()
    if status not in ("approved", "unapproved"):
        raise fields.fail("status", f"{status!r} is not approved or unapproved")
    return status


def map_time_row(fields: Fields, delivery_id: str) -> list[EventEnvelope]:
    changed = fields.req_timestamp("updated_at")
    approved_at = fields.timestamp("approved_at", required=False) or changed
    data = {
        "id": fields.req_text("entry_id", max_length=128),
        "version": version_of(changed),
        "engagement_id": fields.req_text("engagement_id", max_length=128),
        "project_id": fields.req_text("project_id", max_length=128),
        "resource_id": fields.req_text("resource_id", max_length=128),
        "assignment_id": fields.text("assignment_id", required=False, max_length=128),
        "role": fields.req_text("role"),
        "region": fields.req_text("region"),
        "work_date": fields.req_day("work_date").isoformat(),
        "hours": str(fields.req_decimal("hours")),
        "billable": fields.flag("billable", default=True),
        "status": _status(fields),
        "approved_at": approved_at.isoformat(),
        "notes": fields.text("notes", required=False, max_length=2000),
    }
    return [
        envelope(
            type_name="time_entry.approved",
            source_system="file_exchange",
            delivery_id=delivery_id,
            occurred_at=changed,
            data=data,
            record=fields.record,
        )
    ]


def map_expense_row(fields: Fields, delivery_id: str) -> list[EventEnvelope]:
    changed = fields.req_timestamp("updated_at")
    approved_at = fields.timestamp("approved_at", required=False) or changed
    data = {
        "id": fields.req_text("expense_id", max_length=128),
        "version": version_of(changed),
        "engagement_id": fields.req_text("engagement_id", max_length=128),
        "project_id": fields.req_text("project_id", max_length=128),
        "resource_id": fields.req_text("resource_id", max_length=128),
        "expense_date": fields.req_day("expense_date").isoformat(),
        "category": fields.req_text("category"),
        "amount": {"amount": str(fields.req_decimal("amount")), "currency": fields.req_text("currency")},
        "billable": fields.flag("billable", default=True),
        "receipt_attached": fields.flag("receipt_attached", default=False),
        "status": _status(fields),
        "approved_at": approved_at.isoformat(),
    }
    return [
        envelope(
            type_name="expense.approved",
            source_system="file_exchange",
            delivery_id=delivery_id,
            occurred_at=changed,
            data=data,
            record=fields.record,
        )
    ]


def parse_timesheets(name: str, body: bytes) -> FileResult:
    return _each_row(name, _csv_rows(name, body, TIME_COLUMNS | {"updated_at"}), map_time_row, f"time/{name}")


def parse_expenses(name: str, body: bytes) -> FileResult:
    return _each_row(
        name,
        _csv_rows(name, body, EXPENSE_COLUMNS | {"updated_at", "currency"}),
        map_expense_row,
        f"exp/{name}",
    )


# Raw-bucket prefix → parser.
PARSERS: dict[str, Callable[[str, bytes], FileResult]] = {
    "inbound/workday/": parse_workday_workers,
    "inbound/timesheets/": parse_timesheets,
    "inbound/expenses/": parse_expenses,
}


def parser_for(key: str) -> Callable[[str, bytes], FileResult] | None:
    return next((parser for prefix, parser in PARSERS.items() if key.startswith(prefix)), None)
