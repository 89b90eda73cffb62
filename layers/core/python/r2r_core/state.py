"""Integration state in DynamoDB: crosswalk, engagement terms, charges, invoice drafts, exceptions, audit.

Single-table design on ``StateTable`` (``pk``/``sk``):

==============================  =====================  ==========================================
pk                              sk                     what
==============================  =====================  ==========================================
``XWALK#<kind>#<canonical id>``  ``SYS#netsuite``       ERP internal id and external id
``ENG#<engagement id>``          ``TERMS``              the closed-won deal (client, engagement, project)
``ENG#<engagement id>``          ``CHARGE#<entry id>``  one billing decision per time entry (+ its revenue)
``ENG#<engagement id>``          ``EXPENSE#<id>``       one billing decision per expense
``ENG#<engagement id>``          ``ADJUST#<kind>#<id>#v<n>``  an invoiced version to credit (changed since)
``ENG#<engagement id>``          ``REVENUE#<id>``       a revenue event recognised (milestone, invoice)
``ENG#<engagement id>``          ``CAPWARN#<id>``       a cap early warning raised (once)
``ENG#<engagement id>``          ``TIMESUM#PENDING#<p>``  summary mode: period ``p`` has changes to flush
``ENTRY#<kind>#<id>``            ``LOOKUP``             legacy: an entry's engagement (now in its audit)
``ENG#<engagement id>``          ``MILESTONE#<id>``     a completed milestone
``ENG#<engagement id>``          ``INVOICE#<ms id>``    the invoice drafted for a milestone
``EXC#<exception id>``           ``EXC``                an exception for finance
==============================  =====================  ==========================================

``AuditTable`` is append-only: ``<kind>#<id>`` / ``<event id>#<action>``, the time in ``at``.
Writes that must not happen twice are conditional; versions guard against stale updates.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from r2r_core.runtime import aws_client

# ``ENG#<engagement id>`` / ``TIMESUM#PENDING#<period>``: a period's time summaries wait for the flush
# (``flows.time_summary``); here because the period-end tick reads them too (``flows.period_close``).
SUMMARY_PENDING_SK = "TIMESUM#PENDING#"

_SER = TypeSerializer()
_DES = TypeDeserializer()


def _to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _SER.serialize(value) for key, value in values.items() if value is not None}


def _from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _DES.deserialize(value) for key, value in item.items()}


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in {
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
    }


BATCH_GET_MAX = 100  # BatchGetItem takes at most 100 keys per call
BATCH_GET_ATTEMPTS = 3  # a first call and two more for the keys DynamoDB left unprocessed


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Table:
    """A DynamoDB table by name; the boto3 client is created on first use or injected (tests)."""

    def __init__(self, table_name: str, client: Any | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("dynamodb")
        return self._client


class StateStore(_Table):
    """Typed access to ``StateTable``."""

    # -- generic ------------------------------------------------------------------
    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table_name, Key=_to_item({"pk": pk, "sk": sk}), ConsistentRead=True
        )
        item = response.get("Item")
        return _from_item(item) if item else None

    def get_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any] | None]:
        """Many :meth:`get` at once (``BatchGetItem``, ``BATCH_GET_MAX`` keys per call, consistent reads):
        each key read, with its item or None when absent.

        Keys DynamoDB leaves unprocessed are asked again (``BATCH_GET_ATTEMPTS`` calls at most, no wait:
        the caller reads what is still missing one by one); a key not read is not in the answer.
        """
        found: dict[tuple[str, str], dict[str, Any] | None] = {}
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), BATCH_GET_MAX):
            asked = wanted[start : start + BATCH_GET_MAX]
            request: dict[str, Any] = {
                "Keys": [_to_item({"pk": pk, "sk": sk}) for pk, sk in asked],
                "ConsistentRead": True,
            }
            left: set[tuple[str, str]] = set()
            for _attempt in range(BATCH_GET_ATTEMPTS):
                response = self.client.batch_get_item(RequestItems={self.table_name: request})
                for raw in (response.get("Responses") or {}).get(self.table_name, []):
                    item = _from_item(raw)
                    found[(str(item["pk"]), str(item["sk"]))] = item
                again = (response.get("UnprocessedKeys") or {}).get(self.table_name) or {}
                left = {(key["pk"]["S"], key["sk"]["S"]) for key in again.get("Keys", [])}
                if not left:
                    break
                request = {"Keys": again["Keys"], "ConsistentRead": True}
            for key in asked:
                if key not in found and key not in left:
                    found[key] = None  # read: absent
        return found

    def put(self, item: Mapping[str, Any]) -> None:
        """Put an item unconditionally (derived data that is recomputed as a whole)."""
        self.client.put_item(TableName=self.table_name, Item=_to_item(item))

    def put_new(self, item: Mapping[str, Any]) -> bool:
        """Put an item unless it exists; True when this call created it."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=_to_item(item),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def put_versioned(
        self,
        item: Mapping[str, Any],
        *,
        unless_status: str | None = None,
        if_status: str | None = None,
        replacing: int | None = None,
        expect_new: bool = False,
    ) -> bool:
        """Put an item unless a version at least as new is stored (or, with ``unless_status``,
        unless the stored item has that status; with ``if_status``, only if it still has that
        status); True when written. ``replacing`` (the version read before) or ``expect_new``
        (nothing was stored) make the write fail when another version was stored meanwhile."""
        condition = "attribute_not_exists(pk) OR #v < :v"
        names = {"#v": "version"}
        values: dict[str, Any] = {":v": item["version"]}
        if expect_new:
            condition = "attribute_not_exists(pk)"
            names = {}
            values = {}
        elif replacing is not None:
            condition = "#v = :old AND #v < :v"
            values[":old"] = replacing
            if if_status is not None:
                condition += " AND #status = :status"
                names["#status"] = "status"
                values[":status"] = if_status
        elif if_status is not None:
            condition = "attribute_not_exists(pk) OR (#v < :v AND #status = :status)"
            names["#status"] = "status"
            values[":status"] = if_status
        elif unless_status is not None:
            condition = "attribute_not_exists(pk) OR (#v < :v AND #status <> :status)"
            names["#status"] = "status"
            values[":status"] = unless_status
        kwargs: dict[str, Any] = {"ConditionExpression": condition}
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if values:
            kwargs["ExpressionAttributeValues"] = _to_item(values)
        try:
            self.client.put_item(TableName=self.table_name, Item=_to_item(item), **kwargs)
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def query_prefix(
        self, pk: str, sk_prefix: str, *, fields: Iterable[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Items of ``pk`` whose sort key starts with ``sk_prefix``; with ``fields``, only those + keys."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": _to_item({":pk": pk, ":prefix": sk_prefix}),
            "ConsistentRead": True,
        }
        if fields is not None:
            kwargs["ProjectionExpression"], kwargs["ExpressionAttributeNames"] = _projection(fields)
        return self._pages("query", kwargs)

    def scan_where(
        self,
        condition: str,
        values: Mapping[str, Any],
        *,
        fields: Iterable[str] | None = None,
        segments: int = 1,
    ) -> list[dict[str, Any]]:
        """Every item for which ``condition`` (a filter expression; ``#name`` for every attribute it
        names) holds; with ``fields``, only those and the keys. DynamoDB reads the whole table and
        returns only these: what a caller does not need never leaves it. ``segments`` > 1: a parallel
        scan, that many segments read at once (in threads, in the caller's context), in no set order."""
        names = _names_in(condition)
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": condition,
            "ExpressionAttributeValues": _to_item(dict(values)),
        }
        if fields is not None:
            kwargs["ProjectionExpression"], projected = _projection(fields)
            names |= projected
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if segments <= 1:
            return list(self._pages("scan", kwargs))
        client = self.client  # created once, before the threads (a boto3 client is thread-safe)
        context = contextvars.copy_context()

        def segment(number: int) -> list[dict[str, Any]]:
            asked = {**kwargs, "Segment": number, "TotalSegments": segments}
            return context.copy().run(lambda: list(self._pages("scan", asked, client)))

        with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="r2r-scan") as pool:
            return [item for part in pool.map(segment, range(segments)) for item in part]

    def _pages(
        self, operation: str, kwargs: dict[str, Any], client: Any | None = None
    ) -> Iterator[dict[str, Any]]:
        """The items of a ``query`` or ``scan``, page after page (the client is asked for when iterated)."""
        call = getattr(client or self.client, operation)
        asked = dict(kwargs)
        while True:
            page = call(**asked)
            for item in page.get("Items", []):
                yield _from_item(item)
            if "LastEvaluatedKey" not in page:
                return
            asked["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def scan_prefix(self, pk_prefix: str, sk_prefix: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": "begins_with(pk, :prefix)",
            "ExpressionAttributeValues": _to_item({":prefix": pk_prefix}),
        }
        if sk_prefix is not None:
            kwargs["FilterExpression"] += " AND begins_with(sk, :sk_prefix)"
            kwargs["ExpressionAttributeValues"] = _to_item({":prefix": pk_prefix, ":sk_prefix": sk_prefix})
        return self._pages("scan", kwargs)

    def update_if(
        self, pk: str, sk: str, *, set_values: Mapping[str, Any], condition: str, values: Mapping[str, Any]
    ) -> bool:
        names = {f"#{key}": key for key in set_values}
        expression = "SET " + ", ".join(f"#{key} = :set_{key}" for key in set_values)
        attribute_values = {f":set_{key}": value for key, value in set_values.items()} | dict(values)
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=_to_item({"pk": pk, "sk": sk}),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names | _names_in(condition),
                ExpressionAttributeValues=_to_item(attribute_values),
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def add_count(
        self, pk: str, sk: str, attribute: str, *, by: int = 1, set_values: Mapping[str, Any]
    ) -> int:
        """Atomically add ``by`` to a counter (created at 0), setting ``set_values`` only where absent;
        returns the new count."""
        names = {"#count": attribute} | {f"#{key}": key for key in set_values}
        sets = ", ".join(f"#{key} = if_not_exists(#{key}, :set_{key})" for key in set_values)
        response = self.client.update_item(
            TableName=self.table_name,
            Key=_to_item({"pk": pk, "sk": sk}),
            UpdateExpression="ADD #count :by" + (f" SET {sets}" if sets else ""),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_to_item(
                {":by": by} | {f":set_{key}": value for key, value in set_values.items()}
            ),
            ReturnValues="UPDATED_NEW",
        )
        return int(_from_item(response["Attributes"])[attribute])

    def delete_if(self, pk: str, sk: str, *, condition: str, values: Mapping[str, Any]) -> bool:
        """Delete the item if ``condition`` holds; True when deleted."""
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key=_to_item({"pk": pk, "sk": sk}),
                ConditionExpression=condition,
                ExpressionAttributeNames=_names_in(condition),
                ExpressionAttributeValues=_to_item(dict(values)),
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    # -- crosswalk ----------------------------------------------------------------
    def put_crosswalk(
        self,
        kind: str,
        canonical_id: str,
        *,
        internal_id: str,
        external_id: str,
        system: str = "netsuite",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """The id of a canonical record in another system (``SYS#<system>``; NetSuite by default)."""
        self.client.put_item(
            TableName=self.table_name,
            Item=_to_item(
                {
                    **(extra or {}),
                    "pk": f"XWALK#{kind}#{canonical_id}",
                    "sk": f"SYS#{system}",
                    "internal_id": internal_id,
                    "external_id": external_id,
                    "updated_at": now_iso(),
                }
            ),
        )

    def crosswalk(self, kind: str, canonical_id: str, system: str = "netsuite") -> dict[str, Any] | None:
        return self.get(f"XWALK#{kind}#{canonical_id}", f"SYS#{system}")

    # -- exceptions ---------------------------------------------------------------
    def put_exception(self, record: Mapping[str, Any]) -> bool:
        """Store an exception once (its id is derived from the failure); True when new."""
        return self.put_new({"pk": f"EXC#{record['id']}", "sk": "EXC", **record})

    def exceptions(self) -> list[dict[str, Any]]:
        return sorted(self.scan_prefix("EXC#"), key=lambda item: item.get("created_at", ""))


def _projection(fields: Iterable[str]) -> tuple[str, dict[str, str]]:
    """A ProjectionExpression of the keys and ``fields`` (each through a ``#p<n>`` name), and its names."""
    names = {f"#p{i}": name for i, name in enumerate(dict.fromkeys(["pk", "sk", *fields]))}
    return ", ".join(names), names


def _names_in(condition: str) -> dict[str, str]:
    """The ``#name`` placeholders of an expression, each standing for the attribute of its name."""
    return {token: token[1:] for token in _NAME_TOKEN.findall(condition)}


_NAME_TOKEN = re.compile(r"#[A-Za-z0-9_]+")


def exception_id(*parts: str) -> str:
    """A deterministic exception id: the same failure recorded twice is one exception."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class AuditRecord:
    """One state change to record in ``AuditTable``: ``<kind>#<entity id>`` / ``<event id>#<action>``."""

    kind: str
    entity_id: str
    action: str
    event_id: str
    correlation_id: str
    detail: Mapping[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return f"{self.kind}#{self.entity_id}", f"{self.event_id}#{self.action}"

    def item(self, at: str) -> dict[str, Any]:
        pk, sk = self.key
        return {
            "pk": pk,
            "sk": sk,
            "at": at,
            "action": self.action,
            "event_id": self.event_id,
            "correlation_id": self.correlation_id,
            "detail": json.dumps(self.detail or {}, default=_json_default, sort_keys=True),
        }


@dataclass(frozen=True)
class NotAppended:
    """An audit record :meth:`AuditLog.append_many` could not write, and why."""

    record: AuditRecord
    why: str


BATCH_WRITE_MAX = 25  # BatchWriteItem takes at most 25 requests per call
BATCH_WRITE_ATTEMPTS = 4  # a first write and three retries of what DynamoDB left unprocessed
BATCH_WRITE_BACKOFF_S = 0.05  # doubled at each retry: 0.05 + 0.1 + 0.2 s at most per call


class AuditLog(_Table):
    """Append-only audit of state changes (``AuditTable``)."""

    def __init__(
        self, table_name: str, client: Any | None = None, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        super().__init__(table_name, client)
        self._sleep = sleep

    def append(
        self,
        *,
        kind: str,
        entity_id: str,
        action: str,
        event_id: str,
        correlation_id: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Record one state change. Re-recording the same (entity, event, action) is a no-op."""
        self.record(AuditRecord(kind, entity_id, action, event_id, correlation_id, detail))

    def record(self, record: AuditRecord) -> None:
        """:meth:`append` of a built record."""
        item = record.item(now_iso())
        try:
            self.client.put_item(
                TableName=self.table_name, Item=_to_item(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    def append_many(self, records: Sequence[AuditRecord]) -> list[NotAppended]:
        """Record many state changes, ``BATCH_WRITE_MAX`` per ``BatchWriteItem`` call; what was not written.

        Same items as :meth:`append`, but BatchWriteItem cannot be conditional: a record whose
        (entity, event, action) is already stored is overwritten instead of left alone. That is harmless for
        the records written this way, the last write of a posted charge (``flows.batch_tail``): a record is
        keyed by the event that caused it, so a second write carries what the first did, built from the same
        stored charge version, but for ``at`` (seconds later) and the delivery's correlation id; and the
        redelivery path checks :meth:`has` first and writes nothing when the record exists. Only two
        deliveries of one event completing at the same moment both write it (the later one then lists no cap
        warning: each warning has its own ``cap_threshold_reached`` record).

        What DynamoDB leaves unprocessed (throttling, a partition busy; botocore does not retry those, the
        call itself succeeded) is sent again after a short backoff,
        ``BATCH_WRITE_ATTEMPTS`` times at most; what is still unprocessed then, and the records of a call
        that failed as a whole, are returned (with the error) for the caller to retry later. Records are
        written in order of the list, one per key (a later record of a key already in the list is dropped:
        one call cannot carry a key twice).
        """
        first: dict[tuple[str, str], AuditRecord] = {}
        for record in records:
            first.setdefault(record.key, record)
        unique = list(first.values())
        failed: list[NotAppended] = []
        at = now_iso()
        for start in range(0, len(unique), BATCH_WRITE_MAX):
            chunk = {record.key: record for record in unique[start : start + BATCH_WRITE_MAX]}
            requests = [{"PutRequest": {"Item": _to_item(record.item(at))}} for record in chunk.values()]
            why = f"left unprocessed by DynamoDB after {BATCH_WRITE_ATTEMPTS} attempts"
            for attempt in range(BATCH_WRITE_ATTEMPTS):
                if attempt:
                    self._sleep(BATCH_WRITE_BACKOFF_S * 2 ** (attempt - 1))
                try:
                    response = self.client.batch_write_item(RequestItems={self.table_name: requests})
                except ClientError as exc:
                    error = exc.response.get("Error", {})
                    why = f"BatchWriteItem failed: {error.get('Code')}: {error.get('Message')}"
                    break
                except BotoCoreError as exc:  # no answer (connection, timeout) after botocore's retries
                    why = f"BatchWriteItem failed: {type(exc).__name__}: {exc}"
                    break
                requests = (response.get("UnprocessedItems") or {}).get(self.table_name, [])
                if not requests:
                    break
            for request in requests:
                item = request["PutRequest"]["Item"]
                failed.append(NotAppended(chunk[(item["pk"]["S"], item["sk"]["S"])], why))
        return failed

    def has(self, *, kind: str, entity_id: str, event_id: str, action: str) -> bool:
        """Whether the state change (entity, event, action) was recorded."""
        response = self.client.get_item(
            TableName=self.table_name,
            Key=_to_item({"pk": f"{kind}#{entity_id}", "sk": f"{event_id}#{action}"}),
            ProjectionExpression="pk",
            ConsistentRead=True,
        )
        return "Item" in response

    def history(self, kind: str, entity_id: str) -> list[dict[str, Any]]:
        page = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=_to_item({":pk": f"{kind}#{entity_id}"}),
        )
        return sorted((_from_item(item) for item in page.get("Items", [])), key=lambda item: item["at"])


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
