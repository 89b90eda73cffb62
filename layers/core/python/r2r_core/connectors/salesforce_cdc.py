"""Salesforce Change Data Capture on EventBridge (Event Relay, or Amazon AppFlow): read one change event.

Event Relay puts each change event on a partner event bus: ``source`` is
``aws.partner/salesforce.com/<orgId>/<relayId>``, ``detail-type`` the event name
(``OpportunityChangeEvent``, ``pse__Proj__ChangeEvent``) and the fields sit under ``detail.payload``
(``detail.schemaId`` and ``detail.id`` beside it: *shape unconfirmed*). Through AppFlow the fields sit
directly under ``detail`` and the source is ``aws.partner/appflow/salesforce.com/<account>/<flow>``
(*shape unconfirmed*). Both are accepted.

The payload's ``ChangeEventHeader`` names the object (``entityName``), the records (``recordIds``), the
``changeType`` (CREATE, UPDATE, DELETE, UNDELETE, GAP_CREATE/UPDATE/DELETE/UNDELETE, GAP_OVERFLOW),
``changedFields``, ``transactionKey`` + ``sequenceNumber`` (which identify the change: r2r deduplicates
on them per record id) and ``commitTimestamp`` (epoch ms). An UPDATE carries only the changed fields,
GAP events carry none, and no change event carries formula fields (Salesforce does not track them), so
r2r re-reads the record through the REST API before mapping it (``r2r_core.flows.salesforce_cdc``).

Anything that is not such an event raises :class:`MappingError` naming the field and the event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from r2r_core.connectors.base import MappingError
from r2r_core.connectors.salesforce import MAX_FIELD_CHARS
from r2r_core.connectors.sobjects import SUPPORTED

EVENT_RELAY_PREFIX = "aws.partner/salesforce.com/"
APPFLOW_PREFIX = "aws.partner/appflow/salesforce.com/"  # shape unconfirmed
MAX_EVENT_BYTES = 1024 * 1024  # EventBridge's and SQS's limit
MAX_RECORD_IDS = 1000
CHANGE_TYPES = frozenset(
    {
        "CREATE",
        "UPDATE",
        "DELETE",
        "UNDELETE",
        "GAP_CREATE",
        "GAP_UPDATE",
        "GAP_DELETE",
        "GAP_UNDELETE",
        "GAP_OVERFLOW",
    }
)
HEADER = "ChangeEventHeader"

_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_ORG_ID = re.compile(r"^00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")
_CHANNEL_PART = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_TRANSACTION_KEY = re.compile(r"^[A-Za-z0-9\-_:.]{1,128}$")


@dataclass(frozen=True)
class ChangeEvent:
    """One change event, validated. ``channel`` names where it came from (org/relay, or the AppFlow flow)."""

    shape: str  # "event_relay" | "appflow"
    source: str
    channel: str
    event_id: str
    detail_type: str
    entity: str
    change_type: str
    record_ids: tuple[str, ...]
    changed_fields: tuple[str, ...]
    transaction_key: str | None
    sequence_number: int | None
    replay_id: str | None
    commit_timestamp: int
    commit_user: str | None
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def change_key(self) -> str:
        """What identifies the change (same for every record it touches): transactionKey + sequenceNumber,
        else the replay id."""
        if self.transaction_key is not None and self.sequence_number is not None:
            return f"{self.transaction_key}#{self.sequence_number}"
        return f"replay#{self.replay_id}"

    @property
    def committed_at(self) -> datetime:
        return datetime.fromtimestamp(self.commit_timestamp / 1000, tz=UTC)

    @property
    def record(self) -> str:
        ids = ", ".join(self.record_ids[:3]) + (" …" if len(self.record_ids) > 3 else "")
        return f"{self.entity} {ids or '(no record id)'} ({self.change_type} change event {self.event_id})"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number r2r accepts")


def parse_change_event(body: bytes | str) -> ChangeEvent:
    """The change event of an SQS body (the whole EventBridge event a rule put on the queue)."""
    raw = body.encode() if isinstance(body, str) else body
    unknown = "change event (unparsed)"
    if len(raw) > MAX_EVENT_BYTES:
        raise MappingError(unknown, "(document)", f"is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    try:
        event = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        problem = str(exc)[:200] if isinstance(exc, ValueError) else "nested too deeply"
        raise MappingError(unknown, "(document)", f"not valid JSON: {problem}") from None
    if not isinstance(event, dict):
        raise MappingError(unknown, "(document)", f"must be a JSON object, not {type(event).__name__}")
    event_id = _text(event.get("id"), 128) or "(no id)"
    record = f"change event {event_id}"
    source = event.get("source")
    if not isinstance(source, str) or not source.startswith((EVENT_RELAY_PREFIX, APPFLOW_PREFIX)):
        raise MappingError(
            record,
            "source",
            f"{str(source)[:80]!r} is not a Salesforce partner event source "
            f"({EVENT_RELAY_PREFIX}… or {APPFLOW_PREFIX}…)",
        )
    shape, channel = _channel(source, record)
    detail_type = event.get("detail-type")
    if not isinstance(detail_type, str) or not detail_type.endswith("ChangeEvent") or len(detail_type) > 120:
        raise MappingError(
            record, "detail-type", f"{str(detail_type)[:80]!r} is not a change event (…ChangeEvent)"
        )
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise MappingError(record, "detail", "must be an object")
    if "payload" in detail:
        payload, prefix = detail["payload"], "detail.payload"
        if not isinstance(payload, dict):
            raise MappingError(record, prefix, "must be an object")
    else:
        payload, prefix = detail, "detail"
    header = payload.get(HEADER)
    if not isinstance(header, dict):
        raise MappingError(record, f"{prefix}.{HEADER}", "is missing or not an object")
    return _change_event(
        header,
        payload,
        prefix=f"{prefix}.{HEADER}",
        shape=shape,
        source=source,
        channel=channel,
        event_id=event_id,
        detail_type=detail_type,
        replay_id=_text(detail.get("replayId") or payload.get("replayId"), 64),
        record=record,
    )


def _channel(source: str, record: str) -> tuple[str, str]:
    if source.startswith(EVENT_RELAY_PREFIX):
        parts = source[len(EVENT_RELAY_PREFIX) :].split("/")
        if len(parts) != 2 or not _ORG_ID.match(parts[0]) or not _CHANNEL_PART.match(parts[1]):
            raise MappingError(
                record, "source", f"{source[:120]!r} is not …/salesforce.com/<orgId>/<relayId>"
            )
        return "event_relay", f"{parts[0]}/{parts[1]}"
    parts = source[len(APPFLOW_PREFIX) :].split("/")
    if not parts or not all(_CHANNEL_PART.match(p) for p in parts):
        raise MappingError(record, "source", f"{source[:120]!r} is not an AppFlow partner event source")
    return "appflow", "appflow/" + "/".join(parts)


def _change_event(
    header: Mapping[str, Any],
    payload: Mapping[str, Any],
    *,
    prefix: str,
    shape: str,
    source: str,
    channel: str,
    event_id: str,
    detail_type: str,
    replay_id: str | None,
    record: str,
) -> ChangeEvent:
    entity = header.get("entityName")
    if not isinstance(entity, str) or not _FIELD_NAME.match(entity):
        raise MappingError(record, f"{prefix}.entityName", f"{str(entity)[:80]!r} is not an object name")
    record = f"{entity} change event {event_id}"
    if entity not in SUPPORTED:
        raise MappingError(
            record,
            f"{prefix}.entityName",
            f"{entity!r} is not mapped by r2r (mapped: {', '.join(SUPPORTED)})",
        )
    change_type = header.get("changeType")
    if change_type not in CHANGE_TYPES:
        raise MappingError(
            record, f"{prefix}.changeType", f"{str(change_type)[:40]!r} is not one of {sorted(CHANGE_TYPES)}"
        )
    ids = header.get("recordIds")
    if not isinstance(ids, list) or len(ids) > MAX_RECORD_IDS:
        raise MappingError(record, f"{prefix}.recordIds", f"must be a list of at most {MAX_RECORD_IDS} ids")
    for index, value in enumerate(ids):
        if not isinstance(value, str) or not _SALESFORCE_ID.match(value):
            raise MappingError(
                record, f"{prefix}.recordIds[{index}]", f"{str(value)[:40]!r} is not a Salesforce record id"
            )
    if not ids and change_type != "GAP_OVERFLOW":
        raise MappingError(record, f"{prefix}.recordIds", f"is empty (a {change_type} names its records)")
    commit = header.get("commitTimestamp")
    if isinstance(commit, bool) or not isinstance(commit, int) or not 0 < commit < 32503680000000:
        raise MappingError(
            record, f"{prefix}.commitTimestamp", f"{str(commit)[:40]!r} is not epoch milliseconds"
        )
    transaction_key = header.get("transactionKey")
    sequence = header.get("sequenceNumber")
    if transaction_key is not None and (
        not isinstance(transaction_key, str) or not _TRANSACTION_KEY.match(transaction_key)
    ):
        raise MappingError(record, f"{prefix}.transactionKey", f"{str(transaction_key)[:40]!r} is not a key")
    if sequence is not None and (isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0):
        raise MappingError(record, f"{prefix}.sequenceNumber", f"{str(sequence)[:40]!r} is not a number")
    if (transaction_key is None or sequence is None) and replay_id is None:
        raise MappingError(
            record,
            f"{prefix}.transactionKey",
            "transactionKey and sequenceNumber (or a replayId) are required to recognise a redelivery",
        )
    changed = header.get("changedFields") or []
    if not isinstance(changed, list) or not all(isinstance(f, str) and len(f) <= 255 for f in changed):
        raise MappingError(record, f"{prefix}.changedFields", "must be a list of field names")
    commit_user = header.get("commitUser")
    values: dict[str, Any] = {}
    for name, value in payload.items():
        if name == HEADER:
            continue
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            raise MappingError(
                record, f"{prefix[: -len(HEADER) - 1]}.{str(name)[:80]}", "is not a field name"
            )
        _check_value(value, record, name)
        values[name] = value
    return ChangeEvent(
        shape=shape,
        source=source,
        channel=channel,
        event_id=event_id,
        detail_type=detail_type,
        entity=entity,
        change_type=str(change_type),
        record_ids=tuple(ids),
        changed_fields=tuple(changed),
        transaction_key=transaction_key,
        sequence_number=sequence,
        replay_id=replay_id,
        commit_timestamp=commit,
        commit_user=commit_user if isinstance(commit_user, str) else None,
        values=values,
    )


def _check_value(value: Any, record: str, name: str, depth: int = 0) -> None:
    """Field values are scalars, or one level of compound field (``Name``, addresses)."""
    if value is None or isinstance(value, (bool, int, Decimal)):
        return
    if isinstance(value, str):
        if len(value) > MAX_FIELD_CHARS:
            raise MappingError(record, name, f"is longer than {MAX_FIELD_CHARS} characters")
        return
    if isinstance(value, dict) and depth == 0:
        for key, inner in value.items():
            _check_value(inner, record, f"{name}.{key}", depth + 1)
        return
    raise MappingError(record, name, f"holds a {type(value).__name__}; a field value is a scalar")


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        text = str(value)
        return text[:limit] if text else None
    return None
