"""POST /v1/salesforce/outbound/{secret} (or /v1/salesforce/outbound with basic auth): Salesforce Outbound
Messages in, SOAP Ack out.

Order: authenticate (listener secret in the path → the organisations it belongs to; or
``Authorization: Basic`` with user = the OrganizationId and password = one of that organisation's listener
secrets), archive the raw body, read the message (defusedxml), check its ``OrganizationId`` is one the
secret belongs to, then accept each notification once (Powertools idempotency keyed on org + notification
``Id``): map it, publish its canonical events, remember what the mapping needs next time. Answers:

- ``200`` ``notificationsResponse``/``Ack`` ``true`` once every notification is accepted (published, or
  rejected for good: a record that can never be mapped is an exception for finance, not a retry loop);
- ``500`` SOAP ``Server`` fault (Salesforce retries) on transient trouble, or when a notification refers
  to a record r2r has not seen yet (recorded as a ``connector_waiting`` exception, closed once it passes);
- ``400`` SOAP ``Client`` fault for a body that is not an Outbound Message (malformed, hostile XML, wrong
  namespace, oversized, an organisation the secret does not belong to): archived, exception recorded;
- ``401`` SOAP ``Client`` fault for an unknown listener secret or wrong basic credentials (with
  ``WWW-Authenticate: Basic``; not archived: not a customer's data).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core import echo
from r2r_core.connectors.base import MappingError, NotReady
from r2r_core.connectors.directory import Directory, Remember
from r2r_core.connectors.salesforce import ACK, MESSAGE, XML_CONTENT_TYPE, parse_outbound_message, soap_fault
from r2r_core.connectors.sobjects import map_record
from r2r_core.flows.connector_exceptions import REJECTED, WAITING
from r2r_core.flows.ownership_guard import Audit, owned_only
from r2r_core.kpis import echo_kpi
from r2r_core.model.events import EventEnvelope
from r2r_core.telemetry import emit

logger = Logger(child=True)

CONNECTOR = "salesforce_outbound"
ARCHIVE_SOURCE = "salesforce-outbound"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_BASIC_HEADER_CHARS = 1024
BASIC_CHALLENGE = 'Basic realm="r2r salesforce outbound", charset="UTF-8"'


class Publisher(Protocol):
    def publish(self, envelope: EventEnvelope) -> None: ...


class Archive(Protocol):
    def put(
        self, *, source: str, delivery_id: str, body: bytes, content_type: str, received_at: datetime
    ) -> str: ...


@dataclass
class SoapReply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": XML_CONTENT_TYPE})


ExceptionSink = Callable[..., bool]


def accept_notification(
    data: dict[str, Any],
    *,
    directory: Directory,
    publisher: Publisher,
    integration_users: frozenset[str] = frozenset(),
    last_write: Callable[[str], Mapping[str, Any] | None] | None = None,
    audit: Audit | None = None,
) -> dict[str, Any]:
    """Map one notification, publish its events, then remember what the mapping needs next time.

    A mapping error is *returned* (stored by the idempotency layer: redeliveries do not retry it);
    ``NotReady`` and AWS errors propagate (nothing stored: the redelivery tries again).

    r2r's own writes coming back (``r2r_core.echo``) publish nothing; what the mapping learnt about
    the record is still remembered (a record r2r provisioned must be known to the connector). Events
    whose source does not own what they carry (``r2r_core.ownership``) are not published either.
    """
    fields = data["fields"]
    delivery = f"{data['org']}/{data['notification_id']}"
    by_user = echo.by_integration_user(fields, integration_users)
    try:
        mapped = map_record(
            data["sobject"],
            fields,
            directory=directory,
            delivery_id=delivery,
            record=data["record"],
        )
    except (MappingError, NotReady) as exc:
        if by_user:
            return _echo(data, "integration_user", audit)
        if isinstance(exc, NotReady):
            raise
        return {"rejected": exc.as_detail(), "error": str(exc), "events": []}
    reason = "integration_user" if by_user else _own_write(data, mapped.envelopes, directory, last_write)
    if reason is not None:
        for item in mapped.remember:
            directory.put(item)
        return _echo(data, reason, audit)
    kept = owned_only(mapped.envelopes, audit=audit, path="salesforce_outbound")
    for envelope in kept:
        publisher.publish(envelope)
    for item in mapped.remember:
        directory.put(item)
    for envelope in kept:
        directory.put(
            Remember(
                echo.CONTENT,
                f"{envelope.type}#{envelope.source_record_id}",
                envelope.source_record_version,
                {"hash": echo.content_hash(envelope.data)},
            )
        )
    result: dict[str, Any] = {
        "events": [
            {
                "event_id": e.event_id,
                "type": e.type,
                "source_record_id": e.source_record_id,
                "source_record_version": e.source_record_version,
            }
            for e in kept
        ],
        "note": mapped.note,
    }
    if len(kept) < len(mapped.envelopes):
        result["ignored_not_owner"] = [e.event_id for e in mapped.envelopes if e not in kept]
    return result


def _own_write(
    data: dict[str, Any],
    envelopes: list[EventEnvelope],
    directory: Directory,
    last_write: Callable[[str], Mapping[str, Any] | None] | None,
) -> str | None:
    """``"own_write"`` when the record carries what r2r last wrote and nothing r2r reads changed."""
    record_id = str(data["fields"].get("Id") or "")
    if last_write is None or not record_id or not envelopes:
        return None
    written = last_write(record_id)
    if written is None or not echo.repeats(written, data["fields"]):
        return None
    for envelope in envelopes:
        known = directory.get(echo.CONTENT, f"{envelope.type}#{envelope.source_record_id}")
        if known is None or known.get("hash") != echo.content_hash(envelope.data):
            return None
    return "own_write"


def _echo(data: dict[str, Any], reason: str, audit: Audit | None) -> dict[str, Any]:
    record_id = str(data["fields"].get("Id") or data["record"])
    delivery = f"{data['org']}/{data['notification_id']}"
    if audit is not None:
        audit.append(
            kind="echo",
            entity_id=f"{data['sobject']}#{record_id}",
            action="echo_suppressed",
            event_id=delivery,
            correlation_id=delivery,
            detail={"reason": reason, "sobject": data["sobject"], "record_id": record_id},
        )
    logger.info(
        "own write came back: not processed again",
        extra={"sobject": data["sobject"], "record_id": record_id, "reason": reason},
    )
    emit([echo_kpi(source_system="salesforce", reason=reason)])
    return {"events": [], "echo": reason}


class OutboundIntake:
    def __init__(
        self,
        *,
        org_secrets: Callable[[], Mapping[str, list[str]]],
        archive: Archive,
        accept_once: Callable[..., dict[str, Any]],
        record_exception: ExceptionSink,
        resolve_waiting: Callable[[str], object],
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.org_secrets = org_secrets
        self.archive = archive
        self.accept_once = accept_once
        self.record_exception = record_exception
        self.resolve_waiting = resolve_waiting
        self.max_body_bytes = max_body_bytes
        self.now = now

    def handle(self, *, path_secret: str, headers: Mapping[str, str], body: bytes) -> SoapReply:
        received_at = self.now()
        if path_secret:
            orgs = self._orgs_for(path_secret)
            refused = "unknown listener: check the endpoint URL"
        else:
            orgs = self._orgs_for_basic(_header(headers, "authorization"))
            refused = "wrong or missing credentials: Authorization: Basic <OrganizationId>:<listener secret>"
        if not orgs:
            logger.warning("outbound message refused: unknown listener credentials")
            reply = SoapReply(401, soap_fault("Client", refused))
            if not path_secret:
                reply.headers["WWW-Authenticate"] = BASIC_CHALLENGE
            return reply
        digest = hashlib.sha256(body).hexdigest()
        archived = self.archive.put(
            source=ARCHIVE_SOURCE,
            delivery_id=f"{orgs[0]}-{digest[:40]}",
            body=body,
            content_type=_header(headers, "content-type"),
            received_at=received_at,
        )
        try:
            if len(body) > self.max_body_bytes:
                raise MappingError(
                    MESSAGE, "(document)", f"body is {len(body)} bytes; the limit is {self.max_body_bytes}"
                )
            message = parse_outbound_message(body)
            if message.organization_id[:15] not in {org[:15] for org in orgs}:
                raise MappingError(
                    MESSAGE,
                    "Envelope/Body/notifications/OrganizationId",
                    f"{message.organization_id} is not an organisation this listener secret belongs to",
                )
        except MappingError as exc:
            self.record_exception(
                connector=CONNECTOR,
                kind=REJECTED,
                key=f"message/{digest}",
                error=exc,
                archived_as=archived,
                context={"organization_id": orgs[0]},
            )
            logger.warning("outbound message rejected", extra={"archived_as": archived, "error": str(exc)})
            return SoapReply(400, soap_fault("Client", str(exc)))

        waiting: list[str] = []
        accepted = rejected = 0
        for notification in message.notifications:
            key = f"{message.organization_id}/{notification.id}"
            try:
                result = self.accept_once(
                    data={
                        "org": message.organization_id,
                        "notification_id": notification.id,
                        "sobject": notification.sobject_type,
                        "record": notification.record,
                        "fields": notification.fields,
                        "archived_as": archived,
                    }
                )
            except NotReady as exc:
                waiting.append(str(exc))
                self.record_exception(
                    connector=CONNECTOR,
                    kind=WAITING,
                    key=key,
                    error=exc,
                    archived_as=archived,
                    context={
                        "organization_id": message.organization_id,
                        "sobject": notification.sobject_type,
                    },
                )
                continue
            if result.get("rejected"):
                rejected += 1
                error = MappingError(**result["rejected"])
                self.record_exception(
                    connector=CONNECTOR,
                    kind=REJECTED,
                    key=key,
                    error=error,
                    archived_as=archived,
                    context={
                        "organization_id": message.organization_id,
                        "sobject": notification.sobject_type,
                        "source_record_id": notification.fields.get("Id"),
                    },
                )
            else:
                accepted += 1
            self.resolve_waiting(key)
        logger.info(
            "outbound message read",
            extra={
                "organization_id": message.organization_id,
                "notifications": len(message.notifications),
                "accepted": accepted,
                "rejected": rejected,
                "waiting": len(waiting),
                "archived_as": archived,
            },
        )
        if waiting:
            return SoapReply(
                500,
                soap_fault(
                    "Server",
                    f"{len(waiting)} notification(s) wait for records r2r has not seen: {waiting[0]}",
                ),
            )
        return SoapReply(200, ACK)

    def _orgs_for_basic(self, authorization: str) -> list[str]:
        """The organisation of basic credentials (user = its OrganizationId, 15 or 18 characters, password =
        one of its listener secrets), or none."""
        credentials = _basic_credentials(authorization)
        if credentials is None:
            return []
        user, password = credentials
        given = password.encode()
        return sorted(
            org
            for org, secrets in self.org_secrets().items()
            if not org.startswith("_")
            and len(user) in (15, 18)
            and hmac.compare_digest(org[:15].encode(), user[:15].encode())
            and any(hmac.compare_digest(given, s.encode()) for s in secrets if s)
        )

    def _orgs_for(self, path_secret: str) -> list[str]:
        if not path_secret:
            return []
        configured = self.org_secrets()
        given = path_secret.encode()
        return sorted(
            org
            for org, secrets in configured.items()
            if not org.startswith("_") and any(hmac.compare_digest(given, s.encode()) for s in secrets if s)
        )


def _basic_credentials(authorization: str) -> tuple[str, str] | None:
    """``(user, password)`` of an ``Authorization: Basic`` header, or None when it is not one."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > MAX_BASIC_HEADER_CHARS:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon and user and password else None


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""
