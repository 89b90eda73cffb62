"""The last writes of time and expense posting, batched per SQS batch (``flows.batch_tail``).

The time_posting and expense_posting functions run on moto (DynamoDB, EventBridge) with an in-memory ERP.
Per batch, the revenue events go out 10 per PutEvents call and the audit records 25 per BatchWriteItem call,
each audit record only after its entry's events; whatever the bus or DynamoDB refuses fails exactly the
messages that need it, and their redelivery completes them once.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from r2r_core import state
from r2r_core.bus import EventPublisher
from r2r_core.erp.mapping import ErpMapping
from r2r_core.flows.project_setup import set_up_project
from r2r_core.model.events import EventEnvelope, WebhookPayload, build_envelope, event_type
from r2r_core.runtime import aws_client, reset_clients, use_environ
from r2r_core.state import AuditLog, AuditRecord, StateStore
from tests.conftest import create_state_and_audit_tables, load_handler
from tests.integration.test_billing_flows import FakeErp, envelope

ROOT = Path(__file__).resolve().parents[2]
TIME_ENTRY = ROOT / "events" / "scenarios" / "sold-to-billed" / "02-time-priya-sharma-2026-11-16.json"
EXPENSE = ROOT / "events" / "samples" / "expense.approved.json"
BUS = "canonical"
MAX_RECEIVE_COUNT = 3


@dataclass
class Context:
    function_name: str = "time-posting"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:time-posting"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class Bus:
    """The events client the publisher uses: moto's, refusing the events of chosen source records."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.refuse: set[str] = set()  # source record ids (of the event's data.source_ids)
        self.calls = 0
        self.put: list[str] = []  # event ids EventBridge took, in order
        self.records: list[str] = []  # the ids of their records (a revenue event's own id)
        self.refused: list[str] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # boto3's parameter name
        self.calls += 1
        assert len(Entries) <= 10
        refused = [set(json.loads(e["Detail"])["data"]["source_ids"]) & self.refuse for e in Entries]
        taken = [e for e, no in zip(Entries, refused, strict=True) if not no]
        answer = iter(self.real.put_events(Entries=taken)["Entries"] if taken else [])
        entries = []
        for entry, no in zip(Entries, refused, strict=True):
            detail = json.loads(entry["Detail"])
            if no:
                self.refused.append(detail["event_id"])
                entries.append({"ErrorCode": "InternalFailure", "ErrorMessage": "injected"})
            else:
                self.put.append(detail["event_id"])
                self.records.append(detail["data"]["id"])
                entries.append(next(answer))
        return {"FailedEntryCount": sum(1 for no in refused if no), "Entries": entries}


class DynamoCalls:
    """Counts the DynamoDB calls by operation and table; can leave chosen audit records unprocessed."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.unprocessed: Callable[[dict[str, Any]], bool] = lambda item: False
        self._withheld: list[dict[str, Any]] = []
        self._skip_call = False
        client.meta.events.register("before-parameter-build.dynamodb", self._before)
        client.meta.events.register("before-call.dynamodb.BatchWriteItem", self._call)
        client.meta.events.register("after-call.dynamodb.BatchWriteItem", self._after)

    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        tables = params.get("RequestItems") or {params.get("TableName"): None}
        for table in tables:
            self.calls[(model.name, str(table))] += 1
        if model.name == "BatchWriteItem":
            [(table, requests)] = params["RequestItems"].items()
            self._table = table
            self._withheld = [r for r in requests if self.unprocessed(r["PutRequest"]["Item"])]
            # DynamoDB processes none of them: the call is answered here (a request cannot be empty).
            self._skip_call = len(self._withheld) == len(requests)
            if not self._skip_call:
                params["RequestItems"][table] = [r for r in requests if r not in self._withheld]

    def _call(self, **_: Any) -> tuple[Any, dict[str, Any]] | None:
        if not self._skip_call:
            return None
        self._skip_call = False
        return SimpleNamespace(status_code=200, headers={}), {"UnprocessedItems": {}}

    def _after(self, parsed: dict[str, Any], **_: Any) -> None:
        if self._withheld:
            parsed.setdefault("UnprocessedItems", {})[self._table] = self._withheld
            self._withheld = []

    def count(self, operation: str, table: str = "audit") -> int:
        return self.calls[(operation, table)]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        reset_clients()
        ddb = boto3.client("dynamodb")
        create_state_and_audit_tables(ddb)
        boto3.client("events").create_event_bus(Name=BUS)
        env = {
            "STATE_TABLE_NAME": "state",
            "AUDIT_TABLE_NAME": "audit",
            "EVENT_BUS_NAME": BUS,
            "MAX_RECEIVE_COUNT": str(MAX_RECEIVE_COUNT),
            "AWS_REGION": "us-east-1",
        }
        erp = FakeErp()
        with use_environ(env):
            store, audit = StateStore("state"), AuditLog("audit")
            set_up_project(envelope("01-opportunity-closed-won.json"), store=store, audit=audit, erp=erp)
            bus = Bus(aws_client("events"))
            dynamo = DynamoCalls(aws_client("dynamodb"))
            monkeypatch.setattr(state, "BATCH_WRITE_BACKOFF_S", 0.0)
            handlers = {}
            for name in ("time_posting", "expense_posting"):
                handler = load_handler(name)
                monkeypatch.setattr(handler, "erp_client", lambda *_: erp)
                monkeypatch.setattr(handler, "erp_mapping", lambda *_: ErpMapping())
                if hasattr(handler, "EventPublisher"):
                    monkeypatch.setattr(handler, "EventPublisher", lambda name: EventPublisher(name, bus))
                handlers[name] = handler.handler
            yield {"store": store, "audit": audit, "erp": erp, "bus": bus, "dynamo": dynamo, **handlers}
        reset_clients()


def time_entry(n: int, *, billable: bool = True) -> EventEnvelope:
    """The n-th approved entry (its own id and webhook delivery) of the scenario's engagement."""
    delivery = json.loads(TIME_ENTRY.read_text())
    body = delivery["body"]
    body["data"].update(id=f"te-tail-{n:03d}", hours=str(1 + n % 8), billable=billable)
    return _envelope(body, delivery_id=f"msg_psa_te-tail-{n:03d}_v1")


def expense(n: int) -> EventEnvelope:
    body = json.loads(EXPENSE.read_text())
    body["data"].update(id=f"exp-tail-{n:03d}")
    return _envelope(body, delivery_id=f"msg_expense_tail_{n:03d}")


def _envelope(body: dict[str, Any], *, delivery_id: str) -> EventEnvelope:
    payload = WebhookPayload.model_validate(body)
    record = event_type(payload.type).data_model.model_validate(payload.data)
    return build_envelope(source_system="psa", delivery_id=delivery_id, payload=payload, record=record)


def sqs_record(
    envelope: EventEnvelope, *, receive_count: int = 1, message_id: str | None = None
) -> dict[str, Any]:
    """An SQS record as the queue delivers it: the EventBridge event whose detail is the envelope."""
    event = {
        "detail-type": envelope.type,
        "source": "r2r.canonical",
        "detail": envelope.model_dump(mode="json"),
    }
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "rh",
        "body": json.dumps(event),
        "attributes": {"ApproximateReceiveCount": str(receive_count)},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:time-posting",
        "awsRegion": "us-east-1",
    }


def failed(answer: dict[str, Any]) -> set[str]:
    return {failure["itemIdentifier"] for failure in answer["batchItemFailures"]}


def syncs(capsys: pytest.CaptureFixture[str]) -> Counter[str]:
    """The sync KPIs printed (EMF) since the last call: SyncSuccess / SyncFailure, counted."""
    counted: Counter[str] = Counter()
    for line in capsys.readouterr().out.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            counted.update(name for name in ("SyncSuccess", "SyncFailure") if name in document)
    return counted


def audited(world: dict[str, Any], envelope: EventEnvelope, kind: str = "time_entry") -> bool:
    return any(
        a["action"].startswith("charge_") and a["event_id"] == envelope.event_id
        for a in world["audit"].history(kind, envelope.source_record_id)
    )


def test_a_batch_puts_its_events_10_and_writes_its_audit_records_25_per_call(world: dict[str, Any]) -> None:
    # Given 60 approved entries in one SQS batch, 57 billable (one revenue event each) and 3 not billable
    entries = [time_entry(n, billable=n % 20 != 0) for n in range(60)]
    dynamo, bus = world["dynamo"], world["bus"]

    # When time_posting processes the batch
    answer = world["time_posting"]({"Records": [sqs_record(e) for e in entries]}, Context())

    # Then every message succeeded, each entry has its charge audited and its revenue event on the bus
    assert answer == {"batchItemFailures": []}
    assert all(audited(world, e) for e in entries)
    assert len(bus.put) == len(set(bus.put)) == 57
    # in ceil(57 / 10) PutEvents calls and ceil(60 / 25) BatchWriteItem calls, no audit PutItem per entry
    assert bus.calls == math.ceil(57 / 10) == 6
    assert dynamo.count("BatchWriteItem") == math.ceil(60 / 25) == 3
    assert dynamo.count("PutItem") == 0
    # and the audit record carries what the single write did: the decision and the revenue event
    [record] = world["audit"].history("time_entry", entries[1].source_record_id)
    detail = json.loads(record["detail"])
    assert record["action"] == "charge_invoiceable" and detail["version"] == 1
    assert (
        detail["amount"] == "420.00" and detail["revenue_event_id"] in world["bus"].records
    )  # 2 h at 210.00


def test_an_event_the_bus_refuses_fails_only_its_message_and_the_redelivery_completes_it_once(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch of 12 entries whose 4th entry's revenue event EventBridge refuses
    entries = [time_entry(n) for n in range(1, 13)]
    records = [sqs_record(e) for e in entries]
    bad = entries[3]
    world["bus"].refuse = {bad.source_record_id}
    syncs(capsys)

    # When time_posting processes the batch
    answer = world["time_posting"]({"Records": records}, Context())

    # Then the sync KPI counts the 11 entries done, not the one whose last writes failed (SQS retries it)
    assert syncs(capsys) == Counter({"SyncSuccess": 11})

    # Then only that entry's message is reported failed, its audit record is absent and the others' present
    assert failed(answer) == {records[3]["messageId"]}
    assert not audited(world, bad)
    assert all(audited(world, e) for e in entries if e is not bad)
    [refused] = world["bus"].refused
    erp_requests = world["erp"].calls

    # When SQS delivers that message again and the bus takes the event
    world["bus"].refuse = set()
    again = world["time_posting"]({"Records": [sqs_record(bad, receive_count=2)]}, Context())

    # Then it completes: the same event (same id) put once more, the audit record written, nothing re-posted
    assert again == {"batchItemFailures": []}
    assert syncs(capsys) == Counter({"SyncSuccess": 1})  # counted now that it is done
    assert world["bus"].put.count(refused) == 1
    assert len(world["bus"].put) == len(set(world["bus"].put)) == 12
    assert audited(world, bad)
    assert world["erp"].calls == erp_requests

    # And a further delivery of it finds it done: nothing published or written again
    world["time_posting"]({"Records": [sqs_record(bad, receive_count=1)]}, Context())
    assert len(world["bus"].put) == 12


def test_audit_records_dynamodb_leaves_unprocessed_are_sent_again(world: dict[str, Any]) -> None:
    # Given DynamoDB leaves two audit records of a 10-entry batch unprocessed once
    entries = [time_entry(n) for n in range(10)]
    dynamo = world["dynamo"]
    left = {f"time_entry#{entries[2].source_record_id}", f"time_entry#{entries[7].source_record_id}"}
    withheld: list[str] = []

    def once(item: dict[str, Any]) -> bool:
        pk = item["pk"]["S"]
        if pk in left and pk not in withheld:
            withheld.append(pk)
            return True
        return False

    dynamo.unprocessed = once

    # When time_posting processes the batch
    answer = world["time_posting"]({"Records": [sqs_record(e) for e in entries]}, Context())

    # Then they are written by a second BatchWriteItem call and every message succeeds
    assert sorted(withheld) == sorted(left)
    assert answer == {"batchItemFailures": []}
    assert dynamo.count("BatchWriteItem") == 2
    assert all(audited(world, e) for e in entries)


def test_audit_records_dynamodb_keeps_refusing_fail_exactly_their_messages(world: dict[str, Any]) -> None:
    # Given DynamoDB keeps two audit records of a 10-entry batch unprocessed
    entries = [time_entry(n) for n in range(10)]
    records = [sqs_record(e) for e in entries]
    dynamo = world["dynamo"]
    stuck = {f"time_entry#{entries[0].source_record_id}", f"time_entry#{entries[5].source_record_id}"}
    dynamo.unprocessed = lambda item: item["pk"]["S"] in stuck

    # When time_posting processes the batch
    answer = world["time_posting"]({"Records": records}, Context())

    # Then after the bounded retries exactly those two messages are reported failed, the rest is done
    assert failed(answer) == {records[0]["messageId"], records[5]["messageId"]}
    assert dynamo.count("BatchWriteItem") == state.BATCH_WRITE_ATTEMPTS
    assert [audited(world, e) for e in entries] == [n not in {0, 5} for n in range(10)]
    assert not world["store"].exceptions()  # retried by SQS, not yet an exception

    # When they are delivered again once DynamoDB takes them
    dynamo.unprocessed = lambda item: False
    again = world["time_posting"](
        {"Records": [sqs_record(entries[0], receive_count=2), sqs_record(entries[5], receive_count=2)]},
        Context(),
    )

    # Then they complete, their revenue events put again under the same ids, nothing else twice
    assert again == {"batchItemFailures": []}
    assert all(audited(world, e) for e in entries)
    assert len(set(world["bus"].put)) == 10 and len(world["bus"].put) == 12


def test_last_writes_failing_on_the_last_receive_become_an_exception_for_finance(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an entry on its last receive whose revenue event the bus refuses
    entry = time_entry(1)
    world["bus"].refuse = {entry.source_record_id}
    record = sqs_record(entry, receive_count=MAX_RECEIVE_COUNT)
    syncs(capsys)

    # When time_posting processes it
    answer = world["time_posting"]({"Records": [record, sqs_record(time_entry(2))]}, Context())

    # Then the sync KPI counts it failed (it goes to the DLQ) and the other entry succeeded
    assert syncs(capsys) == Counter({"SyncSuccess": 1, "SyncFailure": 1})

    # Then it goes to the DLQ recorded as an exception that names the event and why
    assert failed(answer) == {record["messageId"]}
    [exception] = world["store"].exceptions()
    assert exception["kind"] == "time_posting_failed" and exception["error_type"] == "TailNotWritten"
    assert exception["source_record_id"] == entry.source_record_id
    assert "not put: InternalFailure: injected" in exception["error"]


def test_two_deliveries_of_one_entry_in_a_batch_share_its_last_writes(world: dict[str, Any]) -> None:
    # Given a batch carrying one entry twice (a duplicate delivery) beside another entry
    entry, other = time_entry(1), time_entry(2)
    records = [sqs_record(entry), sqs_record(other), sqs_record(entry)]

    # When time_posting processes it
    answer = world["time_posting"]({"Records": records}, Context())

    # Then the event is put once and the audit record written once, and both deliveries succeed
    assert answer == {"batchItemFailures": []}
    assert len(world["bus"].put) == 2
    assert world["dynamo"].count("BatchWriteItem") == 1
    charges = [
        a
        for a in world["audit"].history("time_entry", entry.source_record_id)
        if a["action"] == "charge_invoiceable"
    ]
    assert len(charges) == 1

    # And when the bus refuses an entry's event, both deliveries of it fail, the other entry does not
    entry3 = time_entry(3)
    world["bus"].refuse = {entry3.source_record_id}
    records = [sqs_record(entry3), sqs_record(time_entry(4)), sqs_record(entry3)]
    answer = world["time_posting"]({"Records": records}, Context())
    assert failed(answer) == {records[0]["messageId"], records[2]["messageId"]}
    assert not audited(world, entry3) and audited(world, time_entry(4))


def test_expense_posting_writes_a_batchs_audit_records_together(world: dict[str, Any]) -> None:
    # Given 30 approved expenses in one batch
    expenses = [expense(n) for n in range(30)]

    # When expense_posting processes it
    answer = world["expense_posting"]({"Records": [sqs_record(e) for e in expenses]}, Context())

    # Then every expense is audited, by ceil(30 / 25) BatchWriteItem calls and no audit PutItem
    assert answer == {"batchItemFailures": []}
    assert all(audited(world, e, kind="expense") for e in expenses)
    assert world["dynamo"].count("BatchWriteItem") == 2
    assert world["dynamo"].count("PutItem") == 0

    # And a redelivery of one finds it done and writes nothing more
    world["expense_posting"]({"Records": [sqs_record(expenses[0], receive_count=2)]}, Context())
    assert world["dynamo"].count("BatchWriteItem") == 2
    assert world["dynamo"].count("PutItem") == 1  # the stale_or_duplicate_ignored record


def test_append_many_overwrites_nothing_it_was_not_given_and_reports_what_it_could_not_write() -> None:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_and_audit_tables(ddb)
        audit = AuditLog("audit", ddb, sleep=lambda _: None)
        records = [
            AuditRecord("expense", f"exp-{n}", "charge_invoiceable", f"ev-{n}", "c-1", {"n": n})
            for n in range(30)
        ]
        # the same key twice in one list is written once (one call cannot carry a key twice)
        assert audit.append_many([*records, records[0]]) == []
        assert [json.loads(a["detail"]) for a in audit.history("expense", "exp-7")] == [{"n": 7}]

        missing = AuditLog("no-such-table", ddb, sleep=lambda _: None).append_many(records[:2])
        assert [m.record for m in missing] == records[:2]
        assert "ResourceNotFoundException" in missing[0].why


def test_a_batch_reads_its_workers_hris_status_together_and_still_refuses_a_terminated_one(
    world: dict[str, Any],
) -> None:
    # Given 12 entries of 4 workers in one batch, one of them terminated the day before the entries' day
    entries = []
    for n in range(12):
        entry = time_entry(n)
        data = {**entry.data, "resource_id": f"res-tail-{n % 4}"}
        entries.append(entry.model_copy(update={"data": data}))
    world["store"].put(
        {
            "pk": "RES#res-tail-3",
            "sk": "HRIS",
            "version": 1,
            "status": "terminated",
            "termination_date": "2026-11-15",
        }
    )
    world["store"].put({"pk": "RES#res-tail-1", "sk": "HRIS", "version": 1, "status": "active"})
    read_one_by_one: list[str] = []
    aws_client("dynamodb").meta.events.register(
        "before-parameter-build.dynamodb.GetItem",
        lambda params, **_: read_one_by_one.append(params["Key"]["pk"]["S"]),
    )

    # When time_posting processes the batch
    records = [sqs_record(e) for e in entries]
    answer = world["time_posting"]({"Records": records}, Context())

    # Then the four workers' status was read in one BatchGetItem (two of them have none), not per entry
    assert world["dynamo"].count("BatchGetItem", "state") == 1
    assert not [pk for pk in read_one_by_one if pk.startswith("RES#")]
    # and the terminated worker's three entries are refused as before, exceptions for finance, the rest posted
    refused = {e.source_record_id for n, e in enumerate(entries) if n % 4 == 3}
    # (a permanent failure: recorded once, its message reported failed, so it rests in the DLQ)
    assert failed(answer) == {r["messageId"] for n, r in enumerate(records) if n % 4 == 3}
    assert {x["source_record_id"] for x in world["store"].exceptions()} == refused
    assert all(audited(world, e) for e in entries if e.source_record_id not in refused)
