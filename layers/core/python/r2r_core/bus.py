"""Publishing canonical events to the EventBridge bus."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from r2r_core.runtime import aws_client

MAX_ENTRIES = 10  # PutEvents takes at most 10 entries (and 256 KB) per call

if TYPE_CHECKING:
    # Not imported at run time: a handler that imports the bus before r2r_core.consumer must not load
    # pydantic before Powertools' batch utility (see r2r_core.consumer).
    from r2r_core.model.events import EventEnvelope


class PublishFailed(Exception):
    """EventBridge refused the event; the caller must fail so the delivery is retried."""


class EventPublisher:
    def __init__(self, bus_name: str, client: Any | None = None) -> None:
        self.bus_name = bus_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("events")
        return self._client

    def publish(self, envelope: EventEnvelope) -> None:
        self.publish_many([envelope])

    def publish_many(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Put the events on the bus, up to ``MAX_ENTRIES`` per PutEvents call, in order.

        Raises :class:`PublishFailed` naming the first event EventBridge refused; the events before it
        (and others of its call) may have been put, so a caller retries from its last saved progress:
        every event id is deterministic and consumers are idempotent on the business key.
        """
        for start in range(0, len(envelopes), MAX_ENTRIES):
            chunk = envelopes[start : start + MAX_ENTRIES]
            response = self.client.put_events(Entries=self._entries(chunk))
            if response.get("FailedEntryCount"):
                index, entry = next(
                    (i, e)
                    for i, e in enumerate(response["Entries"])
                    if e.get("ErrorCode") or not e.get("EventId")
                )
                raise PublishFailed(
                    f"event {chunk[index].event_id} ({chunk[index].type}): "
                    f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}"
                )

    def publish_each(self, envelopes: Sequence[EventEnvelope]) -> list[str | None]:
        """Put the events on the bus, up to ``MAX_ENTRIES`` per PutEvents call; per event, why it was not put.

        Unlike :meth:`publish_many` every call is made whatever an earlier one refused: the answer has one
        item per event, in order, None when EventBridge took it, else its error (the entry's error code and
        message, or the error of a call that failed as a whole), so a caller can retry exactly those.
        """
        errors: list[str | None] = []
        for start in range(0, len(envelopes), MAX_ENTRIES):
            chunk = envelopes[start : start + MAX_ENTRIES]
            try:
                response = self.client.put_events(Entries=self._entries(chunk))
            except (ClientError, BotoCoreError) as exc:
                errors.extend([f"PutEvents failed: {type(exc).__name__}: {exc}"] * len(chunk))
                continue
            entries = response.get("Entries") or []
            for index in range(len(chunk)):
                entry = entries[index] if index < len(entries) else {}
                if entry.get("EventId") and not entry.get("ErrorCode"):
                    errors.append(None)
                else:
                    errors.append(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
        return errors

    def _entries(self, envelopes: Sequence[EventEnvelope]) -> list[dict[str, Any]]:
        from r2r_core.model.events import EVENT_SOURCE

        return [
            {
                "EventBusName": self.bus_name,
                "Source": EVENT_SOURCE,
                "DetailType": envelope.type,
                "Detail": envelope.model_dump_json(),
                "Resources": [],
            }
            for envelope in envelopes
        ]
