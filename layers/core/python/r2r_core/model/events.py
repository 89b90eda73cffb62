"""Canonical events: the envelope every event travels in, and the registry of event types.

Webhook bodies follow the Standard Webhooks payload convention ``{type, timestamp, data}``;
the ingest function turns them into an :class:`EventEnvelope` (adding the event id,
source system, source record id and version, and the correlation id) and puts it on the
bus with ``DetailType`` = the event type.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model

from r2r_core.model.entities import (
    Assignment,
    CanonicalId,
    CapThresholdReached,
    Client,
    ClosedWonDeal,
    Expense,
    Invoice,
    InvoiceStatusChange,
    Milestone,
    OpportunityUpdate,
    Project,
    RateCard,
    Resource,
    RevenueEvent,
    SourceRecord,
    TimeEntry,
)

EVENT_SOURCE = "r2r.canonical"
# Namespace for deterministic event ids: the same delivery always gets the same event id.
_EVENT_ID_NAMESPACE = uuid.UUID("6f1c2f4e-8a59-4f7e-9d0b-2f1f3c1a7b10")


@dataclass(frozen=True)
class EventType:
    name: str
    data_model: type[SourceRecord]
    schema_version: str
    description: str


EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType("client.upserted", Client, "1.0", "A client (customer account) was created or changed."),
        EventType(
            "opportunity.closed_won",
            ClosedWonDeal,
            "1.0",
            "An opportunity reached Closed Won: client, engagement (contract) and project to set up.",
        ),
        EventType(
            "opportunity.updated",
            OpportunityUpdate,
            "1.0",
            "An opportunity changed in the CRM (stage, amount, close date) without reaching Closed Won.",
        ),
        EventType("project.upserted", Project, "1.0", "A project was created or changed in the PSA."),
        EventType("resource.upserted", Resource, "1.0", "A worker was created or changed in the HRIS."),
        EventType(
            "resource.terminated",
            Resource,
            "1.0",
            "A worker left: status terminated with the termination date (time after it is refused).",
        ),
        EventType("assignment.upserted", Assignment, "1.0", "A resource was assigned to a project."),
        EventType("rate_card.upserted", RateCard, "1.0", "A rate card was created or changed."),
        EventType("time_entry.approved", TimeEntry, "1.0", "Time was approved in the PSA."),
        EventType("expense.approved", Expense, "1.0", "An expense was approved in the PSA."),
        EventType("milestone.completed", Milestone, "1.0", "A project milestone was completed."),
        EventType("invoice.created", Invoice, "1.0", "An invoice was created in the ERP."),
        EventType(
            "invoice.status_changed",
            InvoiceStatusChange,
            "1.0",
            "An invoice was paid (in part or in full), voided or credited in the ERP.",
        ),
        EventType("revenue.recognized", RevenueEvent, "1.0", "Revenue was recognised."),
        EventType(
            "billing.cap_threshold_reached",
            CapThresholdReached,
            "1.0",
            "Billable work reached 80 % or 100 % of a contract or budget cap.",
        ),
    )
}


class UnknownEventType(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown event type {name!r}; known types: {', '.join(sorted(EVENT_TYPES))}")
        self.name = name


def event_type(name: str) -> EventType:
    try:
        return EVENT_TYPES[name]
    except KeyError:
        raise UnknownEventType(name) from None


class WebhookPayload(BaseModel):
    """The body of a delivery to the generic signed webhook (Standard Webhooks convention)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    type: str = Field(description="Canonical event type, e.g. time_entry.approved.")
    timestamp: AwareDatetime = Field(description="When the change happened in the source system.")
    data: dict[str, Any]
    correlation_id: str | None = Field(default=None, max_length=128)


@cache
def delivery_model(name: str) -> type[BaseModel]:
    """:class:`WebhookPayload` with ``data`` typed as the event type's record: a body of that type is
    validated in one pass (built on first use, for the types a function actually receives)."""
    kind = event_type(name)
    fields: dict[str, Any] = {
        field: (info.annotation, info) for field, info in WebhookPayload.model_fields.items()
    }
    fields["type"] = (Literal[name], WebhookPayload.model_fields["type"])
    fields["data"] = (kind.data_model, ...)
    model: type[BaseModel] = create_model(
        "".join(part.capitalize() for part in name.replace(".", "_").split("_")) + "Delivery",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"A webhook body carrying one {name} record.",
        **fields,
    )
    return model


class EventEnvelope(BaseModel):
    """A canonical event as it travels on the bus and through the queues."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    type: str
    schema_version: str
    event_id: str
    source_system: str
    source_record_id: CanonicalId
    source_record_version: int
    correlation_id: str
    occurred_at: AwareDatetime
    data: dict[str, Any]

    def parsed(self) -> SourceRecord:
        """The data validated against its event type's model."""
        return event_type(self.type).data_model.model_validate(self.data)


def event_id_for(source_system: str, delivery_id: str) -> str:
    """Deterministic event id for a delivery, so a duplicate delivery maps to the same event."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{source_system}/{delivery_id}"))


def build_envelope(
    *, source_system: str, delivery_id: str, payload: WebhookPayload, record: SourceRecord
) -> EventEnvelope:
    return envelope_for(
        source_system=source_system,
        delivery_id=delivery_id,
        type_name=payload.type,
        occurred_at=payload.timestamp,
        correlation_id=payload.correlation_id,
        record=record,
    )


def envelope_for(
    *,
    source_system: str,
    delivery_id: str,
    type_name: str,
    occurred_at: datetime,
    correlation_id: str | None,
    record: SourceRecord,
) -> EventEnvelope:
    """The envelope of a validated record (its fields validated already: the envelope is not validated
    again, only its ``source_system`` and ids are checked the way the model checks them)."""
    kind = event_type(type_name)
    event_id = event_id_for(source_system, delivery_id)
    if not isinstance(record, kind.data_model):
        raise TypeError(
            f"a {type_name} envelope needs a {kind.data_model.__name__}, not {type(record).__name__}"
        )
    if occurred_at.tzinfo is None or (correlation_id is not None and len(correlation_id) > 128):
        raise ValueError("occurred_at must be timezone-aware and correlation_id at most 128 characters")
    return EventEnvelope.model_construct(
        type=kind.name,
        schema_version=kind.schema_version,
        event_id=event_id,
        source_system=str(source_system),
        source_record_id=record.id,
        source_record_version=record.version,
        correlation_id=correlation_id or event_id,
        occurred_at=occurred_at,
        data=record.model_dump(mode="json"),
    )


@cache
def typed_envelope_model(name: str) -> type[BaseModel]:
    """An envelope model whose ``type`` and ``data`` are pinned to one event type (for JSON Schema)."""
    kind = event_type(name)
    model_name = "".join(part.capitalize() for part in name.replace(".", "_").split("_")) + "Event"
    pinned_type: Any = Literal[name]
    pinned_version: Any = Literal[kind.schema_version]
    model: type[BaseModel] = create_model(
        model_name,
        __base__=EventEnvelope,
        __doc__=f"{kind.description} (schema version {kind.schema_version}).",
        type=(pinned_type, ...),
        schema_version=(pinned_version, ...),
        data=(kind.data_model, ...),
    )
    return model
