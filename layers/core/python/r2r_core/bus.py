"""Publishing canonical events to the EventBridge bus."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from r2r_core.runtime import aws_client

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
        from r2r_core.model.events import EVENT_SOURCE

        response = self.client.put_events(
            Entries=[
                {
                    "EventBusName": self.bus_name,
                    "Source": EVENT_SOURCE,
                    "DetailType": envelope.type,
                    "Detail": envelope.model_dump_json(),
                    "Resources": [],
                }
            ]
        )
        if response.get("FailedEntryCount"):
            entry = response["Entries"][0]
            raise PublishFailed(f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
