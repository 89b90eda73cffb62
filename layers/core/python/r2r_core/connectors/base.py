"""What every connector shares: field readers that name the field and the record, and the outcome types.

A connector turns one source record (a Salesforce notification, a CDC change, a CSV row, a Kantata
time entry) into zero or more canonical :class:`~r2r_core.model.events.EventEnvelope` s. Input it can
never map raises :class:`MappingError` (permanent: the raw payload is kept and an exception is recorded);
input that needs something r2r does not hold *yet* (events arrive out of order) raises
:class:`NotReady` (retryable: the sender retries, or the message returns to its queue).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from pydantic import ValidationError

from r2r_core.errors import Permanent, Retryable
from r2r_core.model.entities import SourceRecord
from r2r_core.model.events import EventEnvelope, event_id_for, event_type

FieldValues = Mapping[str, Any]

_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
MAX_DECIMAL_DIGITS = 18


class MappingError(Permanent):
    """A source record r2r can never map as it is: names the record and the field."""

    def __init__(self, record: str, field: str, problem: str) -> None:
        super().__init__(f"{record}: field {field}: {problem}")
        self.record = record
        self.field = field
        self.problem = problem

    def as_detail(self) -> dict[str, str]:
        return {"record": self.record, "field": self.field, "problem": self.problem}


class NotReady(Retryable):
    """The record refers to something r2r has not seen yet (e.g. a timecard before its project)."""

    def __init__(self, record: str, message: str) -> None:
        super().__init__(f"{record}: {message}")
        self.record = record


class FieldMapping(NamedTuple):
    """One row of a connector's declarative field map (``FIELD_MAP``): source field → canonical field.

    ``target`` is a dot path in the event's ``data``; ``how`` says what the mapper does with the value:
    ``copy`` (the text as is), ``decimal``, ``date``, ``flag`` (Salesforce ``true``/``false``), ``id`` (the
    source id inside a canonical id, e.g. ``opp-<Id>``), ``lookup`` (resolved through a table or what r2r
    remembers) or ``derived`` (computed, e.g. per-day hours). ``tests/unit/test_field_maps.py`` proves the
    map consistent with the mapping output on the fixtures in ``events/salesforce`` and ``events/certinia``.
    """

    source: str
    event_type: str
    target: str
    how: str


@dataclass(frozen=True)
class Fields:
    """A source record's field values with readers that report problems by field name.

    ``record`` names the record in errors (``pse__Timecard_Header__c a0B…``, ``row 7``).
    Empty strings and ``None`` are "absent".
    """

    record: str
    values: FieldValues

    def raw(self, name: str) -> Any:
        value = self.values.get(name)
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    def has(self, name: str) -> bool:
        return self.raw(name) is not None

    def fail(self, name: str, problem: str) -> MappingError:
        return MappingError(self.record, name, problem)

    def text(self, name: str, *, required: bool = True, max_length: int = 200) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise self.fail(name, "is required")
            return None
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise self.fail(name, f"must be text, not {type(value).__name__}")
        text = str(value)
        if len(text) > max_length:
            raise self.fail(name, f"is longer than {max_length} characters")
        return text

    def req_text(self, name: str, *, max_length: int = 200) -> str:
        value = self.text(name, max_length=max_length)
        assert value is not None
        return value

    def salesforce_id(self, name: str, *, required: bool = True) -> str | None:
        value = self.text(name, required=required, max_length=18)
        if value is not None and not _SALESFORCE_ID.match(value):
            raise self.fail(name, f"{value!r} is not a Salesforce record id (15 or 18 letters and digits)")
        return value

    def req_salesforce_id(self, name: str) -> str:
        value = self.salesforce_id(name)
        assert value is not None
        return value

    def decimal(self, name: str, *, required: bool = True) -> Decimal | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise self.fail(name, "is required")
            return None
        if isinstance(value, float):
            raise self.fail(name, "is a binary float; send the number as text")
        if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
            raise self.fail(name, f"must be a number, not {type(value).__name__}")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(name, f"{str(value)[:40]!r} is not a number") from None
        if not number.is_finite() or len(number.as_tuple().digits) > MAX_DECIMAL_DIGITS:
            raise self.fail(name, f"{str(value)[:40]!r} is not a finite number of at most 18 digits")
        return number

    def req_decimal(self, name: str) -> Decimal:
        value = self.decimal(name)
        assert value is not None
        return value

    def day(self, name: str, *, required: bool = True) -> date | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise self.fail(name, "is required")
            return None
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        text = str(value)
        try:
            if len(text) != 10:
                raise ValueError(text)
            return date.fromisoformat(text)
        except ValueError:
            raise self.fail(name, f"{str(value)[:40]!r} is not a date (YYYY-MM-DD)") from None

    def req_day(self, name: str) -> date:
        value = self.day(name)
        assert value is not None
        return value

    def timestamp(self, name: str, *, required: bool = True) -> datetime | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise self.fail(name, "is required")
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            # CDC commitTimestamp: epoch milliseconds.
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        text = str(value)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(name, f"{text[:40]!r} is not an ISO 8601 date-time") from None
        if parsed.tzinfo is None:
            raise self.fail(name, f"{text[:40]!r} has no time zone")
        return parsed

    def req_timestamp(self, name: str) -> datetime:
        value = self.timestamp(name)
        assert value is not None
        return value

    def flag(self, name: str, *, default: bool | None = None) -> bool:
        value = self.raw(name)
        if value is None:
            if default is None:
                raise self.fail(name, "is required")
            return default
        if isinstance(value, bool):
            return value
        lowered = str(value).lower()
        if lowered in ("true", "1", "yes", "y"):
            return True
        if lowered in ("false", "0", "no", "n"):
            return False
        raise self.fail(name, f"{str(value)[:40]!r} is not true or false")


def version_of(moment: datetime) -> int:
    """A source version from a last-modified time: epoch milliseconds (monotonic per record)."""
    return int(moment.timestamp() * 1000)


def envelope(
    *,
    type_name: str,
    source_system: str,
    delivery_id: str,
    occurred_at: datetime,
    data: dict[str, Any],
    correlation_id: str | None = None,
    record: str,
) -> EventEnvelope:
    """A canonical envelope for ``data`` validated against the event type's model.

    A validation failure names the record and the canonical field (a MappingError).
    """
    kind = event_type(type_name)
    try:
        model: SourceRecord = kind.data_model.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        location = ".".join(str(part) for part in problem["loc"]) or "(record)"
        raise MappingError(record, f"{type_name}.{location}", problem["msg"]) from None
    event_id = event_id_for(source_system, delivery_id)
    return EventEnvelope(
        type=kind.name,
        schema_version=kind.schema_version,
        event_id=event_id,
        source_system=source_system,
        source_record_id=model.id,
        source_record_version=model.version,
        correlation_id=correlation_id or event_id,
        occurred_at=occurred_at,
        data=model.model_dump(mode="json"),
    )
