"""Publishing canonical events: PutEvents batches of at most ten, in order, failures named."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from r2r_core.bus import EventPublisher, PublishFailed
from r2r_core.model.events import EventEnvelope


def envelope(n: int) -> EventEnvelope:
    return EventEnvelope(
        type="rate_card.upserted",
        schema_version="1.0",
        event_id=f"evt-{n}",
        source_system="psa",
        source_record_id=f"rc-{n}",
        source_record_version=1,
        correlation_id=f"corr-{n}",
        occurred_at=datetime(2026, 11, 1, tzinfo=UTC),
        data={"id": f"rc-{n}"},
    )


class FakeEvents:
    def __init__(self, refuse: str | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.refuse = refuse

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        results = [
            {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
            if self.refuse and self.refuse in entry["Detail"]
            else {"EventId": "x"}
            for entry in Entries
        ]
        return {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": results}


def test_events_go_out_in_batches_of_ten_in_order() -> None:
    client = FakeEvents()
    EventPublisher("bus", client).publish_many([envelope(n) for n in range(23)])
    assert [len(call) for call in client.calls] == [10, 10, 3]
    assert [e["EventBusName"] for call in client.calls for e in call] == ["bus"] * 23
    assert '"evt-22"' in client.calls[2][2]["Detail"]


def test_a_refused_event_is_named() -> None:
    client = FakeEvents(refuse='"evt-12"')
    with pytest.raises(PublishFailed, match=r"event evt-12 \(rate_card.upserted\): InternalFailure"):
        EventPublisher("bus", client).publish_many([envelope(n) for n in range(15)])


def test_publish_is_one_event() -> None:
    client = FakeEvents()
    EventPublisher("bus", client).publish(envelope(1))
    assert [len(call) for call in client.calls] == [1]


def test_publish_each_says_per_event_what_was_refused_and_makes_every_call() -> None:
    client = FakeEvents(refuse='"evt-3"')
    errors = EventPublisher("bus", client).publish_each([envelope(n) for n in range(23)])
    # every call is made despite the refusal in the first one; one answer per event, in order
    assert [len(call) for call in client.calls] == [10, 10, 3]
    assert [n for n, error in enumerate(errors) if error] == [3]
    assert errors[3] == "InternalFailure: try again"


def test_publish_each_fails_the_events_of_a_call_that_failed_as_a_whole() -> None:
    class Throttled(FakeEvents):
        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # boto3's parameter name
            if len(self.calls) == 1:
                self.calls.append(Entries)
                raise ClientError(
                    {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "PutEvents"
                )
            return super().put_events(Entries)

    answer = EventPublisher("bus", Throttled()).publish_each([envelope(n) for n in range(25)])
    assert [n for n, error in enumerate(answer) if error] == list(range(10, 20))
    assert "ThrottlingException" in str(answer[10])
