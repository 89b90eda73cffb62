"""The Change Data Capture intake with fakes: bad and hostile events, waiting records, Salesforce trouble."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from r2r_core.connectors.base import NotReady
from r2r_core.connectors.directory import MemoryDirectory
from r2r_core.crm.salesforce import SalesforcePermanentError, SalesforceTransientError
from r2r_core.flows.connector_exceptions import REJECTED, WAITING
from r2r_core.flows.salesforce_cdc import ChangeIntake, accept_change, rest_reader
from r2r_core.model.events import EventEnvelope

ROOT = Path(__file__).resolve().parents[2]
CDC = ROOT / "events" / "salesforce" / "cdc"
WON = (CDC / "01-opportunity-update-closed-won.json").read_bytes()
OPP_ID = "0065g00000Gx7bQAAS"


def _record(stem: str, record_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (CDC / "rest" / stem / f"{record_id}.json").read_text(), parse_float=Decimal
    )
    return document


class Harness:
    def __init__(
        self, records: dict[str, dict[str, Any]] | None = None, read_error: Exception | None = None
    ) -> None:
        self.archived: dict[str, bytes] = {}
        self.published: list[EventEnvelope] = []
        self.exceptions: list[dict[str, Any]] = []
        self.resolved: list[str] = []
        self.audit: list[dict[str, Any]] = []
        self.records = dict(records or {})
        self.read_error = read_error
        self.reads: list[tuple[str, str]] = []
        self.done: dict[tuple[str, ...], dict[str, Any]] = {}
        self.directory = MemoryDirectory()
        harness = self

        class Archive:
            def put(
                self, *, source: str, delivery_id: str, body: bytes, content_type: str, received_at: Any
            ) -> str:
                key = f"raw/{source}/{received_at:%Y/%m/%d}/{delivery_id}"
                harness.archived[key] = body
                return key

        class Publisher:
            def publish(self, envelope: EventEnvelope) -> None:
                harness.published.append(envelope)

        class Audit:
            def append(self, **entry: Any) -> None:
                harness.audit.append(entry)

        def read(sobject: str, record_id: str) -> dict[str, Any] | None:
            self.reads.append((sobject, record_id))
            if self.read_error is not None:
                raise self.read_error
            return self.records.get(record_id)

        def accept_once(*, data: dict[str, Any]) -> dict[str, Any]:
            key = (data["channel"], data["entity"], data["record_id"], data["change_key"])
            if key not in self.done:
                self.done[key] = accept_change(
                    data, directory=self.directory, publisher=Publisher(), read_record=read, audit=Audit()
                )
            return self.done[key]

        def record_exception(**kwargs: Any) -> bool:
            self.exceptions.append(kwargs)
            return True

        self.intake = ChangeIntake(
            archive=Archive(),
            accept_once=accept_once,
            record_exception=record_exception,
            resolve_waiting=self.resolved.append,
            now=lambda: datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
        )


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(WON)
    header = event["detail"]["payload"]["ChangeEventHeader"]
    for key, value in changes.items():
        if key in header:
            header[key] = value
        else:
            event[key] = value
    return event


def _body(event: Any) -> bytes:
    return json.dumps(event).encode()


def test_an_update_re_reads_the_record_and_publishes_the_closed_won_deal() -> None:
    h = Harness({OPP_ID: _record("01-opportunity-update-closed-won", OPP_ID)})
    h.intake.handle(WON)
    assert h.reads == [("Opportunity", OPP_ID)]
    assert [e.type for e in h.published] == ["opportunity.closed_won"]
    assert list(h.archived.values()) == [WON]


def test_a_redelivery_with_a_new_message_id_publishes_nothing_new() -> None:
    h = Harness({OPP_ID: _record("01-opportunity-update-closed-won", OPP_ID)})
    h.intake.handle(WON)
    h.intake.handle(WON.decode())  # e.g. redriven from the DLQ
    assert len(h.published) == 1 and len(h.reads) == 1


def test_an_update_whose_record_is_gone_is_an_audited_ignore() -> None:
    h = Harness({})
    h.intake.handle(WON)
    assert h.published == [] and h.exceptions == []
    [entry] = h.audit
    assert entry["entity_id"] == f"Opportunity#{OPP_ID}" and "no longer exists" in entry["detail"]["note"]


def test_transient_salesforce_trouble_propagates_and_marks_nothing_done() -> None:
    h = Harness(read_error=SalesforceTransientError("REQUEST_LIMIT_EXCEEDED", status=403))
    with pytest.raises(SalesforceTransientError):
        h.intake.handle(WON)
    assert h.done == {} and h.published == [] and len(h.archived) == 1


def test_a_refused_re_read_is_an_exception_and_the_message_fails_for_its_dlq() -> None:
    h = Harness(
        read_error=SalesforcePermanentError("INSUFFICIENT_ACCESS", status=403, code="INSUFFICIENT_ACCESS")
    )
    with pytest.raises(SalesforcePermanentError):
        h.intake.handle(WON)
    [exc] = h.exceptions
    assert exc["kind"] == REJECTED and exc["error"].field == "(REST re-read)"
    assert OPP_ID in exc["error"].record


def test_the_rest_reader_turns_not_found_into_none_and_keeps_other_errors() -> None:
    class Client:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def get(self, sobject: str, record_id: str) -> dict[str, Any]:
            raise self.error

    assert (
        rest_reader(Client(SalesforcePermanentError("gone", status=404, code="NOT_FOUND")))("X", "1") is None
    )
    with pytest.raises(SalesforcePermanentError):
        rest_reader(Client(SalesforcePermanentError("no", status=403)))("X", "1")


def test_a_waiting_record_fails_the_message_until_its_project_is_known() -> None:
    stem = "04-timecard-update-approved"
    card = "a1D5g000000Tc02AAC"
    body = (CDC / f"{stem}.json").read_bytes()
    h = Harness({card: _record(stem, card)})
    with pytest.raises(NotReady):
        h.intake.handle(body)
    assert [e["kind"] for e in h.exceptions] == [WAITING]
    for name in ("02-project-create", "03-assignments-update-two-records"):
        for rest in (CDC / "rest" / name).glob("*.json"):
            h.records[rest.stem] = _record(name, rest.stem)
        h.intake.handle((CDC / f"{name}.json").read_bytes())
    h.intake.handle(body)  # the queue's retry
    assert [e.type for e in h.published].count("time_entry.approved") == 5
    assert any(key.endswith(f"/{card}/00004a1b-2c3d-4e5f-6a7b-000000000004#1") for key in h.resolved)


# --- bad and hostile input: rejected, kept, recorded; never a crash loop ---------------------------

_DEEP = b'{"id": "x", "source": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
_HUGE = _event()
_HUGE["detail"]["payload"]["Description"] = "A" * 200_000
_OVERSIZED = _event()
_OVERSIZED["detail"]["payload"]["Description"] = "A" * (1024 * 1024)
_LIST_VALUE = _event()
_LIST_VALUE["detail"]["payload"]["StageName"] = ["Closed Won", {"$where": "1"}]
_BAD_NAME = _event()
_BAD_NAME["detail"]["payload"]["../../etc/passwd"] = "x"
_NO_KEYS = _event(transactionKey=None, sequenceNumber=None)
_RELAY_WITHOUT_PAYLOAD_OBJECT = _event()
_RELAY_WITHOUT_PAYLOAD_OBJECT["detail"]["payload"] = "StageName=Closed Won"

BAD: dict[str, tuple[bytes, str, str]] = {
    "truncated-json": (WON[: len(WON) // 2], "(document)", "not valid JSON"),
    "not-an-object": (b"[1, 2, 3]", "(document)", "must be a JSON object"),
    "nan-constant": (WON.replace(b"1794582245000", b"NaN"), "(document)", "not a number r2r accepts"),
    "nested-too-deeply": (_DEEP, "(document)", "not valid JSON"),
    "oversized": (_body(_OVERSIZED), "(document)", "the limit is 1048576"),
    "unknown-namespace": (_body(_event(source="aws.partner/example.com/x/y")), "source", "not a Salesforce"),
    "relay-source-without-org": (
        _body(_event(source="aws.partner/salesforce.com/not-an-org/0YL5g0000000R2RAAA")),
        "source",
        "<orgId>/<relayId>",
    ),
    "platform-event-not-a-change": (
        _body(_event(**{"detail-type": "My_Event__e"})),
        "detail-type",
        "change event",
    ),
    "unknown-entity": (_body(_event(entityName="Account")), "entityName", "not mapped by r2r"),
    "entity-not-a-name": (_body(_event(entityName="<script>")), "entityName", "not an object name"),
    "wrong-type-change-type": (_body(_event(changeType=7)), "changeType", "is not one of"),
    "wrong-type-record-ids": (_body(_event(recordIds=OPP_ID)), "recordIds", "must be a list"),
    "injected-record-id": (_body(_event(recordIds=["0065g' OR 1=1 --"])), "recordIds[0]", "not a Salesforce"),
    "empty-record-ids": (_body(_event(recordIds=[])), "recordIds", "is empty"),
    "wrong-type-commit-timestamp": (_body(_event(commitTimestamp="yesterday")), "commitTimestamp", "epoch"),
    "float-commit-timestamp": (_body(_event(commitTimestamp=1.5e12)), "commitTimestamp", "epoch"),
    "no-dedupe-key": (_body(_NO_KEYS), "transactionKey", "required"),
    "payload-not-an-object": (_body(_RELAY_WITHOUT_PAYLOAD_OBJECT), "detail.payload", "must be an object"),
    "huge-field-value": (_body(_HUGE), "Description", "longer than"),
    "list-field-value": (_body(_LIST_VALUE), "StageName", "scalar"),
    "hostile-field-name": (_body(_BAD_NAME), "../../etc/passwd", "not a field name"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_event_is_rejected_kept_and_recorded_without_failing_the_message(name: str) -> None:
    body, field, problem = BAD[name]
    h = Harness({OPP_ID: _record("01-opportunity-update-closed-won", OPP_ID)})
    outcome = h.intake.handle(body)  # returns: the message is done, never retried into a crash loop
    assert outcome["rejected"]["field"].endswith(field) or field in outcome["rejected"]["field"]
    assert list(h.archived.values()) == [body]  # the raw event is kept, whatever it was
    [exc] = h.exceptions
    assert exc["kind"] == REJECTED and exc["archived_as"] in h.archived
    assert field in exc["error"].field and problem in exc["error"].problem
    assert "change event" in exc["error"].record  # names the event (its EventBridge id when it has one)
    assert h.published == [] and h.reads == []
