"""File drops → canonical events on moto DynamoDB: good rows published once per (key, version, row), one
exception per bad row (with its line, field and record) and per unreadable file; the HRIS status a worker
extract leaves behind turns time worked after a termination into a permanent error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from r2r_core.connectors.files import MAX_FILE_BYTES, parse_workday_workers
from r2r_core.flows.file_intake import DroppedFile, dropped_file, take_in_file
from r2r_core.flows.resource_status import ResourceTerminated, record_resource, refuse_time_after_termination
from r2r_core.model.entities import TimeEntry
from r2r_core.model.events import EventEnvelope
from r2r_core.runtime import reset_clients
from r2r_core.state import AuditLog, StateStore
from tests.conftest import create_state_and_audit_tables

ROOT = Path(__file__).resolve().parents[2]
TIMESHEETS = (ROOT / "events" / "file_exchange" / "01-timesheets.csv").read_bytes()
WORKERS = (ROOT / "events" / "workday" / "01-workers.csv").read_bytes()


class FakePublisher:
    def __init__(self, fail_after: int | None = None) -> None:
        self.published: list[EventEnvelope] = []
        self.fail_after = fail_after

    def publish(self, envelope: EventEnvelope) -> None:
        if self.fail_after is not None and len(self.published) >= self.fail_after:
            raise RuntimeError("EventBridge unavailable")
        self.published.append(envelope)


@pytest.fixture
def ports() -> Iterator[dict[str, Any]]:
    with mock_aws():
        reset_clients()
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_and_audit_tables(ddb)
        yield {"store": StateStore("state", ddb), "audit": AuditLog("audit", ddb)}
        reset_clients()


def s3_event(key: str, *, version_id: str | None = "v1", size: int | None = 100) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key, "eTag": "abc123"}
    if version_id:
        obj["version-id"] = version_id
    if size is not None:
        obj["size"] = size
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": "raw"}, "object": obj},
    }


def reader(body: bytes, calls: list[int] | None = None) -> Any:
    def read(_file: DroppedFile, limit: int) -> bytes:
        if calls is not None:
            calls.append(limit)
        return body[:limit]

    return read


def test_good_rows_become_events_and_bad_rows_one_exception_each_with_line(ports: dict[str, Any]) -> None:
    file = dropped_file(s3_event("inbound/timesheets/week-48.csv"))
    publisher = FakePublisher()
    outcome = take_in_file(file, read=reader(TIMESHEETS), publisher=publisher, **ports)
    assert [e.data["id"] for e in publisher.published] == ["fx-te-ana-2026-11-23", "fx-te-ana-2026-11-26"]
    assert {e.type for e in publisher.published} == {"time_entry.approved"}
    assert (outcome["rows"], outcome["published"], outcome["row_errors"]) == (4, 2, 2)
    exceptions = ports["store"].exceptions()
    assert sorted((e["kind"], e["connector"], e["line"], e["field"], e["record"]) for e in exceptions) == [
        (
            "connector_rejected",
            "file_drop",
            3,
            "time_entry.approved.hours",
            "inbound/timesheets/week-48.csv@v1 line 3",
        ),
        ("connector_rejected", "file_drop", 4, "work_date", "inbound/timesheets/week-48.csv@v1 line 4"),
    ]
    exc = exceptions[0]
    assert exc["archived_as"] == "s3://raw/inbound/timesheets/week-48.csv?versionId=v1"


def test_the_same_version_again_publishes_nothing_and_records_no_second_exception(
    ports: dict[str, Any],
) -> None:
    file = dropped_file(s3_event("inbound/timesheets/week-48.csv"))
    first, again = FakePublisher(), FakePublisher()
    take_in_file(file, read=reader(TIMESHEETS), publisher=first, **ports)
    outcome = take_in_file(file, read=reader(TIMESHEETS), publisher=again, **ports)
    assert again.published == []
    assert (outcome["published"], outcome["already_published"]) == (0, 2)
    assert len(ports["store"].exceptions()) == 2
    # A new version of the same key is a new file: its rows go out (with other event ids).
    newer = FakePublisher()
    take_in_file(
        dropped_file(s3_event("inbound/timesheets/week-48.csv", version_id="v2")),
        read=reader(TIMESHEETS),
        publisher=newer,
        **ports,
    )
    assert len(newer.published) == 2
    assert not {e.event_id for e in newer.published} & {e.event_id for e in first.published}


def test_a_retry_after_a_failure_mid_file_publishes_only_the_rest(ports: dict[str, Any]) -> None:
    rows = [TIMESHEETS.splitlines()[0]] + [
        f"fx-te-{n},eng-1,prj-1,res-1,,Data Engineer,EMEA,2026-11-{n % 28 + 1:02d},1,true,approved,,"
        f"2026-11-28T09:00:00Z,".encode()
        for n in range(60)
    ]
    body = b"\n".join(rows) + b"\n"
    file = dropped_file(s3_event("inbound/timesheets/big.csv"))
    failing = FakePublisher(fail_after=30)
    with pytest.raises(RuntimeError):
        take_in_file(file, read=reader(body), publisher=failing, **ports)
    retry = FakePublisher()
    take_in_file(file, read=reader(body), publisher=retry, **ports)
    # Progress is saved every 25 rows: rows 26-30 go out again (same event ids; consumers dedupe).
    ids = [e.data["id"] for e in retry.published]
    assert ids == [f"fx-te-{n}" for n in range(25, 60)]


def test_hostile_and_oversized_files_are_one_exception_and_the_object_is_only_read(
    ports: dict[str, Any],
) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
        b'<wd:Workers xmlns:wd="urn:com.workday/bsvc">&a;</wd:Workers>'
    )
    publisher = FakePublisher()
    outcome = take_in_file(
        dropped_file(s3_event("inbound/workday/evil.xml")), read=reader(bomb), publisher=publisher, **ports
    )
    assert outcome["rejected"] and publisher.published == []

    calls: list[int] = []
    big = dropped_file(s3_event("inbound/expenses/huge.csv", size=MAX_FILE_BYTES + 1))
    outcome = take_in_file(big, read=reader(b"", calls), publisher=publisher, **ports)
    assert outcome["rejected"] and calls == []  # never read

    # A size the event does not state: at most the limit + 1 bytes are read, and the parser refuses them.
    unknown = dropped_file(s3_event("inbound/expenses/unknown.csv", size=None))
    outcome = take_in_file(
        unknown, read=reader(b"x" * (MAX_FILE_BYTES + 10), calls), publisher=publisher, **ports
    )
    assert outcome["rejected"] and calls == [MAX_FILE_BYTES + 1]

    problems = sorted((e["object_key"], e["field"]) for e in ports["store"].exceptions())
    assert problems == [
        ("inbound/expenses/huge.csv", "(file)"),
        ("inbound/expenses/unknown.csv", "(file)"),
        ("inbound/workday/evil.xml", "(document)"),
    ]
    assert all(e.get("line") is None for e in ports["store"].exceptions())


def test_an_event_without_bucket_or_key_is_refused() -> None:
    with pytest.raises(ValueError):
        dropped_file({"detail": {"bucket": {"name": "raw"}, "object": {}}})


def _time(resource_id: str, work_date: date) -> TimeEntry:
    return TimeEntry.model_validate(
        {
            "id": "te-1",
            "version": 1,
            "engagement_id": "eng-1",
            "project_id": "prj-1",
            "resource_id": resource_id,
            "role": "Data Engineer",
            "region": "EMEA",
            "work_date": work_date.isoformat(),
            "hours": str(Decimal("8")),
            "billable": True,
            "status": "approved",
            "approved_at": datetime(2026, 12, 2, tzinfo=UTC).isoformat(),
        }
    )


def test_a_terminated_worker_blocks_time_after_the_termination_date_only(ports: dict[str, Any]) -> None:
    workers = {e.data["id"]: e for e in parse_workday_workers("w.csv", WORKERS).envelopes}
    for envelope in workers.values():
        record_resource(envelope, **ports)
    store = ports["store"]
    refuse_time_after_termination(store, _time("wd-21003", date(2026, 11, 30)))  # the last day is fine
    refuse_time_after_termination(store, _time("wd-21001", date(2026, 12, 1)))  # active
    refuse_time_after_termination(store, _time("someone-else", date(2026, 12, 1)))  # unknown to the HRIS
    with pytest.raises(ResourceTerminated, match="terminated on 2026-11-30"):
        refuse_time_after_termination(store, _time("wd-21003", date(2026, 12, 1)))
    # An older extract (an earlier version saying active) does not undo the termination.
    older = workers["wd-21003"].model_copy(
        update={
            "data": {**workers["wd-21003"].data, "version": 1, "status": "active", "termination_date": None}
        }
    )
    assert record_resource(older, **ports)["written"] is False
    with pytest.raises(ResourceTerminated):
        refuse_time_after_termination(store, _time("wd-21003", date(2026, 12, 1)))


class BatchingPublisher(FakePublisher):
    """A publisher that puts events in batches (PutEvents): the intake hands it chunks."""

    def __init__(self, fail_on_batch: int | None = None) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.fail_on_batch = fail_on_batch

    def publish_many(self, envelopes: list[EventEnvelope]) -> None:
        if self.fail_on_batch is not None and len(self.batches) + 1 == self.fail_on_batch:
            self.fail_on_batch = None
            raise RuntimeError("EventBridge unavailable")
        self.batches.append(len(envelopes))
        self.published.extend(envelopes)


def bulk_timesheet(rows: int) -> bytes:
    header = "entry_id,engagement_id,project_id,resource_id,role,region,work_date,hours,updated_at\n"
    return (
        header
        + "".join(
            f"bulk-{i:03d},eng-1,prj-1,res-{i % 3},Cloud Engineer,EMEA,2026-11-23,8,2026-11-28T09:00:00Z\n"
            for i in range(rows)
        )
    ).encode()


def test_a_bulk_file_is_published_in_batches_of_ten_in_file_order(ports: dict[str, Any]) -> None:
    publisher = BatchingPublisher()
    file = dropped_file(s3_event("inbound/timesheets/bulk.csv"))
    outcome = take_in_file(
        file, read=reader(bulk_timesheet(43)), store=ports["store"], audit=ports["audit"], publisher=publisher
    )
    assert outcome["published"] == 43
    assert publisher.batches == [10, 10, 10, 10, 3]
    assert [e.source_record_id for e in publisher.published] == [f"bulk-{i:03d}" for i in range(43)]


def test_a_failed_batch_is_retried_from_the_last_saved_progress_and_nothing_is_lost(
    ports: dict[str, Any],
) -> None:
    file = dropped_file(s3_event("inbound/timesheets/bulk.csv"))
    failing = BatchingPublisher(fail_on_batch=4)  # rows 31-40: progress was saved after row 30
    with pytest.raises(RuntimeError):
        take_in_file(
            file,
            read=reader(bulk_timesheet(43)),
            store=ports["store"],
            audit=ports["audit"],
            publisher=failing,
        )
    retry = BatchingPublisher()
    outcome = take_in_file(
        file, read=reader(bulk_timesheet(43)), store=ports["store"], audit=ports["audit"], publisher=retry
    )
    assert (outcome["already_published"], outcome["published"]) == (30, 13)
    ids = [e.source_record_id for e in failing.published + retry.published]
    assert ids == [f"bulk-{i:03d}" for i in range(43)]
