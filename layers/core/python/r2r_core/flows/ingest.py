"""Webhook ingest: authenticate, archive the raw body, validate, deduplicate, publish.

Order matters: nothing is validated before the raw body is safe in S3, so whatever an
authenticated sender delivered, valid or not, is kept. Unauthenticated requests are
answered 401 and not stored (they are not a customer system's data).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyValidationError
from pydantic import ValidationError

from r2r_core import ownership, webhooks
from r2r_core.flows.ownership_guard import Audit, record_ignored
from r2r_core.model.events import EVENT_TYPES, WebhookPayload, delivery_model, envelope_for, event_type
from r2r_core.runtime import aws_client

logger = Logger(child=True)
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


class Rejected(Exception):
    """A request r2r refuses; ``status``/``code`` choose the HTTP answer, ``details`` name the fields."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


class RawArchive:
    def __init__(self, bucket: str, client: Any | None = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("s3")
        return self._client

    def put(
        self, *, source: str, delivery_id: str, body: bytes, content_type: str, received_at: datetime
    ) -> str:
        safe = _KEY_UNSAFE.sub("_", delivery_id)
        if safe != delivery_id or len(safe) > 200:
            safe = f"{safe[:100]}-{hashlib.sha256(delivery_id.encode()).hexdigest()[:16]}"
        key = f"raw/{source}/{received_at:%Y/%m/%d}/{safe}"
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType=content_type or "application/octet-stream",
            Metadata={"source": source, "delivery-id": safe, "received-at": received_at.isoformat()},
        )
        return key


def validation_details(error: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    details = []
    for problem in error.errors(include_url=False):
        path = prefix
        for part in problem["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
        details.append({"field": path or "(body)", "problem": problem["msg"]})
    return details


class Ingest:
    def __init__(
        self,
        *,
        secrets: Callable[[], Mapping[str, list[str]]],
        archive: RawArchive,
        publish_once: Callable[..., dict[str, Any]],
        max_body_bytes: int,
        audit: Callable[[str, str, dict[str, Any]], None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        ownership_audit: Audit | None = None,
    ) -> None:
        self.ownership_audit = ownership_audit
        self.secrets = secrets
        self.archive = archive
        self.publish_once = publish_once
        self.max_body_bytes = max_body_bytes
        self.audit = audit
        self.now = now

    def handle(self, *, source: str, headers: Mapping[str, str], body: bytes) -> Reply:
        archived: str | None = None
        received_at = self.now()
        try:
            configured = self.secrets()
            if source not in configured:
                raise Rejected(404, "unknown_source", f"no webhook source named {source!r} is configured")
            try:
                delivery_id = webhooks.verify(configured[source], headers, body)
            except webhooks.WebhookAuthError as exc:
                raise Rejected(401, "unauthenticated", str(exc)) from exc
            archived = self.archive.put(
                source=source,
                delivery_id=delivery_id,
                body=body,
                content_type=_header(headers, "content-type"),
                received_at=received_at,
            )
            if len(body) > self.max_body_bytes:
                raise Rejected(
                    413, "payload_too_large", f"body is {len(body)} bytes; the limit is {self.max_body_bytes}"
                )
            envelope = self._envelope(source, delivery_id, body)
            verdict = ownership.check(envelope.type, source, envelope.data, external=True)
            if not verdict.accepted:
                return self._ignored(verdict, envelope, archived)
            result = self.publish_once(
                data={
                    "source": source,
                    "webhook_id": delivery_id,
                    "body_sha256": hashlib.sha256(body).hexdigest(),
                    "received_at": received_at.isoformat(),
                    "envelope": envelope.model_dump(mode="json"),
                }
            )
        except Rejected as rejection:
            if archived is not None:
                self.audit("rejected", archived, {"status": rejection.status, "error": rejection.message})
            logger.warning(
                "webhook rejected",
                extra={
                    "source": source,
                    "status": rejection.status,
                    "code": rejection.code,
                    "archived_as": archived,
                },
            )
            body_out: dict[str, Any] = {"error": rejection.code, "message": rejection.message}
            if rejection.details:
                body_out["details"] = rejection.details
            if archived:
                body_out["archived_as"] = archived
            return Reply(rejection.status, body_out)
        except IdempotencyValidationError:
            logger.warning("webhook id reused with a different body", extra={"source": source})
            return Reply(
                409,
                {
                    "error": "webhook_id_reused",
                    "message": "this webhook-id was already delivered with a different body",
                    "archived_as": archived,
                },
            )
        # A repeated webhook-id gets the first delivery's stored result back.
        duplicate = result["accepted_at"] != received_at.isoformat()
        logger.info(
            "webhook accepted",
            extra={
                "source": source,
                "event_id": result["event_id"],
                "event_type": result["type"],
                "duplicate": duplicate,
            },
        )
        return Reply(
            202,
            {
                "event_id": result["event_id"],
                "type": result["type"],
                "duplicate": duplicate,
                "archived_as": archived,
            },
        )

    def _ignored(self, verdict: ownership.Verdict, envelope: Any, archived: str) -> Reply:
        """Authentic and valid, but the source does not own it: kept in the archive, audited, not
        published. Answered 202 (a 4xx would only make the sender retry what will never be applied)."""
        record_ignored(
            verdict,
            source_record_id=envelope.source_record_id,
            event_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
            audit=self.ownership_audit,
            path="webhook",
        )
        return Reply(
            202,
            {
                "event_id": envelope.event_id,
                "type": envelope.type,
                "duplicate": False,
                "archived_as": archived,
                "ignored": "not_owner",
                "message": verdict.reason,
            },
        )

    def _envelope(self, source: str, delivery_id: str, body: bytes) -> Any:
        delivery = parse_delivery(body)
        return envelope_for(
            source_system=source,
            delivery_id=delivery_id,
            type_name=delivery.type,
            occurred_at=delivery.timestamp,
            correlation_id=delivery.correlation_id,
            record=delivery.data,
        )


def parse_delivery(body: bytes) -> Any:
    """A webhook body ``{type, timestamp, data, correlation_id?}`` validated in one pass.

    Returns the delivery (``type``, ``timestamp``, ``correlation_id`` and ``data``: the event type's
    record); raises :class:`Rejected` naming what is wrong. The usual body (a known ``type``, every
    number an integer: decimals travel as strings) is validated straight from the JSON bytes by
    pydantic-core against the event type's delivery model, once. Anything else takes the exact path:
    a JSON number with a fraction or exponent (pydantic-core reads those through a float, which would
    turn ``7.10`` into ``7.1``), or a body with any problem at all, whose errors are then named as
    they always were (``json.loads`` with ``Decimal``, the body, then the record: ``data.hours``).
    """
    found = _TYPE_FIELD.search(body)
    if found is not None and not _has_fractional_number(body):
        validate = _validate_json(found[1])
        if validate is not None:
            try:
                return validate(body)
            except ValueError:
                pass  # the exact path below names the problem the way it always has
    return _parse_delivery_exact(body)


@lru_cache(maxsize=64)  # bounded: a sender may name any number of unknown types
def _validate_json(name: bytes) -> Callable[[bytes], Any] | None:
    """The JSON validation of a known event type's delivery model, by the type's name as sent."""
    text = name.decode("ascii", "replace")
    if text not in EVENT_TYPES:
        return None
    # What ``model_validate_json`` calls (without its per-call argument checks, a tenth of the call);
    # the first attribute access builds the deferred validator.
    validate: Callable[[bytes], Any] = delivery_model(text).__pydantic_validator__.validate_json
    return validate


# The first ``"type": "<name>"`` in the body; if it is not the top-level one, the delivery model (whose
# ``type`` is that name only) refuses the body and the exact path decides.
_TYPE_FIELD = re.compile(rb'"type"[ \t\r\n]*:[ \t\r\n]*"([a-z0-9_.]{1,100})"')
# A JSON number with a fraction or an exponent, found without a regular expression (which would cost half
# the validation) and with one substring search. Digits, whitespace and ``-`` are deleted, ``.``/``e``/``E``
# become ``\x01`` (never raw in valid JSON) and ``,``/``[`` become ``:``. A JSON number inside an object or
# array follows ``:``, ``,`` or ``[`` (whitespace between), perhaps with a ``-``, and its first character is
# a digit, so one with a fraction or an exponent (``7.10``, ``-1.5``, ``1e3``) becomes ``:\x01``; a
# string's digits follow its opening quote, so ``"7.10"`` becomes ``"\x01"`` and never matches. Text that
# happens to match (``"wave 1, extra"``) only sends the body the exact way.
_NUMBER_SHAPE = bytes.maketrans(b".eE,[", b"\x01\x01\x01::")
_NUMBER_NOISE = b"0123456789 \t\r\n-"
# The two bytes found by a compiled pattern: half what ``in`` costs for a two-byte needle here.
_FRACTION_MARK = re.compile(b":\x01").search


def _has_fractional_number(body: bytes) -> bool:
    return _FRACTION_MARK(body.translate(_NUMBER_SHAPE, _NUMBER_NOISE)) is not None


def _parse_delivery_exact(body: bytes) -> Any:
    try:
        raw = json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise Rejected(400, "malformed_json", f"body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise Rejected(400, "malformed_json", "body must be a JSON object {type, timestamp, data}")
    try:
        payload = WebhookPayload.model_validate(raw)
    except ValidationError as exc:
        raise Rejected(
            400, "invalid_payload", "body does not match {type, timestamp, data}", validation_details(exc)
        ) from exc
    if payload.type not in EVENT_TYPES:
        raise Rejected(
            422,
            "unknown_event_type",
            f"event type {payload.type!r} is unknown; known types: {', '.join(sorted(EVENT_TYPES))}",
        )
    try:
        record = event_type(payload.type).data_model.model_validate(payload.data)
    except ValidationError as exc:
        raise Rejected(
            400,
            "invalid_data",
            f"data is not a valid {payload.type} record",
            validation_details(exc, "data"),
        ) from exc
    # Both parts are validated: the delivery is put together, not validated a third time.
    return delivery_model(payload.type).model_construct(
        type=payload.type, timestamp=payload.timestamp, data=record, correlation_id=payload.correlation_id
    )


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""
