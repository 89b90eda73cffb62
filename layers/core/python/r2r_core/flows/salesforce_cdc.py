"""Salesforce Change Data Capture (Event Relay / AppFlow → partner bus → queue) → canonical events.

For each SQS message (one EventBridge event): archive the raw event, read it
(:func:`~r2r_core.connectors.salesforce_cdc.parse_change_event`), then accept each record it names once
(Powertools idempotency keyed on channel + object + record id + ``transactionKey#sequenceNumber``):

- CREATE, UPDATE, UNDELETE and every GAP_* event: re-read the record through the Salesforce REST API
  (an UPDATE carries only the changed fields, a GAP event none, and change events never carry the
  ``R2R_…`` formula fields the mapping reads), then map its latest values with the same per-object
  mappers as Outbound Messages (:func:`~r2r_core.connectors.sobjects.map_record`). Versions come from the
  record's ``SystemModstamp`` (the commit timestamp when the read has none), so both channels give the
  same version for the same state, and stale timecards/expenses are refused as on the SOAP path.
- DELETE (or a GAP_* whose record is gone): the canonical withdrawal where the model has one (timecard
  days and expenses → ``status: unapproved``), otherwise an audited ignore.
- GAP_OVERFLOW without record ids: an exception for an operator (``connector_resync``).

A message that can never map is not retried: the raw event is kept and an exception names the field and
the record. A record that refers to something r2r has not seen yet (``NotReady``), or a Salesforce /
AWS outage, fails the message so it returns to the queue (its DLQ after five tries), without holding up
the rest of the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.connectors.base import MappingError, NotReady
from r2r_core.connectors.certinia import withdraw
from r2r_core.connectors.directory import Directory
from r2r_core.connectors.salesforce_cdc import ChangeEvent, parse_change_event
from r2r_core.connectors.sobjects import map_record
from r2r_core.errors import Permanent
from r2r_core.flows.connector_exceptions import REJECTED, RESYNC, WAITING
from r2r_core.model.events import EventEnvelope

logger = Logger(child=True)

CONNECTOR = "salesforce_cdc"
ARCHIVE_SOURCE = "salesforce-cdc"
DELETE = "DELETE"

RecordReader = Callable[[str, str], "dict[str, Any] | None"]
"""``read(object, record id)`` → the record's fields, ``None`` when Salesforce has no such record."""


class Publisher(Protocol):
    def publish(self, envelope: EventEnvelope) -> None: ...


class Archive(Protocol):
    def put(
        self, *, source: str, delivery_id: str, body: bytes, content_type: str, received_at: datetime
    ) -> str: ...


class Audit(Protocol):
    def append(
        self,
        *,
        kind: str,
        entity_id: str,
        action: str,
        event_id: str,
        correlation_id: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None: ...


def rest_reader(client: Any) -> RecordReader:
    """A :data:`RecordReader` over :class:`~r2r_core.crm.salesforce.SalesforceClient` (404 → ``None``)."""
    from r2r_core.crm.salesforce import SalesforcePermanentError

    def read(sobject: str, record_id: str) -> dict[str, Any] | None:
        try:
            return dict(client.get(sobject, record_id))
        except SalesforcePermanentError as exc:
            if exc.status == 404:
                return None
            raise

    return read


def accept_change(
    data: dict[str, Any],
    *,
    directory: Directory,
    publisher: Publisher,
    read_record: RecordReader,
    audit: Audit,
) -> dict[str, Any]:
    """Accept one record of a change event: re-read and map it, or withdraw it; publish, remember.

    A mapping error is *returned* (the idempotency layer stores it: a redelivery does not retry it);
    ``NotReady``, Salesforce and AWS errors propagate (nothing stored: the redelivery tries again).
    """
    entity, record_id, change_type = data["entity"], data["record_id"], data["change_type"]
    committed_at = datetime.fromtimestamp(int(data["commit_timestamp"]) / 1000, tz=UTC)
    record = f"{entity} {record_id} ({change_type} {data['change_key']})"
    delivery_id = f"cdc/{data['channel']}/{record_id}/{data['change_key']}"
    try:
        if change_type == DELETE:
            mapped = withdraw(
                entity, record_id, directory, delivery_id=delivery_id, deleted_at=committed_at, record=record
            )
        else:
            values = read_record(entity, record_id)
            if values is None and change_type.startswith("GAP_"):
                # The change that was lost may have been the delete: treat a vanished record as deleted.
                mapped = withdraw(
                    entity,
                    record_id,
                    directory,
                    delivery_id=delivery_id,
                    deleted_at=committed_at,
                    record=record,
                )
            elif values is None:
                return _ignored(
                    data,
                    audit,
                    f"{entity} {record_id} no longer exists in Salesforce; its DELETE event withdraws it",
                )
            else:
                fields = {k: v for k, v in values.items() if k != "attributes"}
                fields.setdefault("Id", record_id)
                if fields.get("SystemModstamp") is None and fields.get("LastModifiedDate") is None:
                    fields["SystemModstamp"] = committed_at.isoformat()
                mapped = map_record(
                    entity, fields, directory=directory, delivery_id=delivery_id, record=record
                )
    except MappingError as exc:
        return {"rejected": exc.as_detail(), "error": str(exc), "events": []}
    for envelope in mapped.envelopes:
        publisher.publish(envelope)
    for item in mapped.remember:
        directory.put(item)
    if not mapped.envelopes and mapped.note:
        return _ignored(data, audit, mapped.note)
    return {
        "events": [
            {
                "event_id": e.event_id,
                "type": e.type,
                "source_record_id": e.source_record_id,
                "source_record_version": e.source_record_version,
            }
            for e in mapped.envelopes
        ],
        "note": mapped.note,
    }


def _ignored(data: Mapping[str, Any], audit: Audit, note: str) -> dict[str, Any]:
    audit.append(
        kind="salesforce_record",
        entity_id=f"{data['entity']}#{data['record_id']}",
        action=f"cdc_{str(data['change_type']).lower()}_ignored",
        event_id=str(data["change_key"]),
        correlation_id=str(data.get("event_id") or data["change_key"]),
        detail={"note": note, "archived_as": data.get("archived_as"), "channel": data["channel"]},
    )
    return {"events": [], "note": note}


class ChangeIntake:
    """One SQS message (an EventBridge event from the partner bus) at a time."""

    def __init__(
        self,
        *,
        archive: Archive,
        accept_once: Callable[..., dict[str, Any]],
        record_exception: Callable[..., bool],
        resolve_waiting: Callable[[str], object],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.archive = archive
        self.accept_once = accept_once
        self.record_exception = record_exception
        self.resolve_waiting = resolve_waiting
        self.now = now

    def handle(self, body: str | bytes) -> dict[str, Any]:
        raw = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
        digest = hashlib.sha256(raw).hexdigest()
        archived = self.archive.put(
            source=ARCHIVE_SOURCE,
            delivery_id=digest[:40],
            body=raw,
            content_type="application/json",
            received_at=self.now(),
        )
        try:
            event = parse_change_event(raw)
        except MappingError as exc:
            self.record_exception(
                connector=CONNECTOR, kind=REJECTED, key=f"event/{digest}", error=exc, archived_as=archived
            )
            logger.warning("change event rejected", extra={"archived_as": archived, "error": str(exc)})
            return {"rejected": exc.as_detail(), "archived_as": archived}
        context = {"channel": event.channel, "sobject": event.entity, "change_type": event.change_type}
        if not event.record_ids:  # GAP_OVERFLOW with nothing to re-read
            self.record_exception(
                connector=CONNECTOR,
                kind=RESYNC,
                key=f"{event.channel}/{event.entity}/{event.change_key}",
                error=MappingError(
                    event.record,
                    "ChangeEventHeader.recordIds",
                    f"{event.change_type}: Salesforce could not send every {event.entity} change committed "
                    f"around {event.committed_at.isoformat()} and names no record to re-read",
                ),
                archived_as=archived,
                context=context,
            )
            return {"resync": event.entity, "archived_as": archived}
        return self._records(event, archived, context)

    def _records(self, event: ChangeEvent, archived: str, context: dict[str, Any]) -> dict[str, Any]:
        waiting: list[NotReady] = []
        accepted = rejected = 0
        for record_id in event.record_ids:
            key = f"{event.channel}/{event.entity}/{record_id}/{event.change_key}"
            data = {
                "channel": event.channel,
                "entity": event.entity,
                "record_id": record_id,
                "change_type": event.change_type,
                "change_key": event.change_key,
                "commit_timestamp": event.commit_timestamp,
                "event_id": event.event_id,
                "archived_as": archived,
            }
            try:
                result = self.accept_once(data=data)
            except NotReady as exc:
                waiting.append(exc)
                self.record_exception(
                    connector=CONNECTOR,
                    kind=WAITING,
                    key=key,
                    error=exc,
                    archived_as=archived,
                    context={**context, "source_record_id": record_id},
                )
                continue
            except Permanent as exc:
                # Salesforce refused the re-read (permissions, credentials): visible now, redrivable later.
                self.record_exception(
                    connector=CONNECTOR,
                    kind=REJECTED,
                    key=key,
                    error=MappingError(f"{event.entity} {record_id}", "(REST re-read)", str(exc)),
                    archived_as=archived,
                    context={**context, "source_record_id": record_id},
                )
                raise
            if result.get("rejected"):
                rejected += 1
                self.record_exception(
                    connector=CONNECTOR,
                    kind=REJECTED,
                    key=key,
                    error=MappingError(**result["rejected"]),
                    archived_as=archived,
                    context={**context, "source_record_id": record_id},
                )
            else:
                accepted += 1
            self.resolve_waiting(key)
        outcome = {
            **context,
            "correlation_id": event.event_id,  # the change event's EventBridge id
            "records": len(event.record_ids),
            "accepted": accepted,
            "rejected": rejected,
            "waiting": len(waiting),
            "archived_as": archived,
        }
        logger.info("change event read", extra=outcome)
        if waiting:
            raise NotReady(
                event.record, f"{len(waiting)} record(s) wait for a record r2r has not seen yet: {waiting[0]}"
            )
        return outcome
