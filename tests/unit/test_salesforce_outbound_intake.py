"""The Outbound Message listener with fakes: auth, archive first, Ack rules, hostile and malformed input."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from defusedxml import ElementTree as SafeET

from r2r_core.connectors.directory import MemoryDirectory
from r2r_core.connectors.salesforce import ACK, OUTBOUND_NS
from r2r_core.flows.connector_exceptions import REJECTED, WAITING
from r2r_core.flows.salesforce_outbound import OutboundIntake, accept_notification
from r2r_core.model.events import EventEnvelope

ROOT = Path(__file__).resolve().parents[2]
ORG = "00D5g000004XyZaEAK"
SECRET = "listener-secret-0001"
SAMPLE = (ROOT / "events" / "salesforce" / "01-opportunity-closed-won.xml").read_bytes()
CERTINIA = ROOT / "events" / "certinia"


class FakeArchive:
    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}

    def put(
        self, *, source: str, delivery_id: str, body: bytes, content_type: str, received_at: datetime
    ) -> str:
        key = f"raw/{source}/{received_at:%Y/%m/%d}/{delivery_id}"
        self.bodies[key] = body
        return key


class FakePublisher:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[EventEnvelope] = []
        self.fail = fail

    def publish(self, envelope: EventEnvelope) -> None:
        if self.fail:
            raise ConnectionError("EventBridge unavailable")
        self.events.append(envelope)


class Harness:
    def __init__(self, publisher: FakePublisher | None = None) -> None:
        self.archive = FakeArchive()
        self.publisher = publisher or FakePublisher()
        self.directory = MemoryDirectory()
        self.exceptions: dict[str, dict[str, Any]] = {}
        self.resolved: list[str] = []
        self.done: dict[tuple[str, str], dict[str, Any]] = {}

        def accept_once(*, data: dict[str, Any]) -> dict[str, Any]:
            # Like Powertools idempotency: a completed key returns its stored result; errors store nothing.
            key = (data["org"], data["notification_id"])
            if key not in self.done:
                self.done[key] = accept_notification(data, directory=self.directory, publisher=self.publisher)
            return self.done[key]

        def record(**kwargs: Any) -> bool:
            exc_id = f"{kwargs['kind']}|{kwargs['key']}"
            if exc_id in self.exceptions:
                return False
            self.exceptions[exc_id] = kwargs
            return True

        self.intake = OutboundIntake(
            org_secrets=lambda: {ORG: ["old-secret", SECRET], "_placeholder": ["x"]},
            archive=self.archive,
            accept_once=accept_once,
            record_exception=record,
            resolve_waiting=self.resolved.append,
            max_body_bytes=256 * 1024,
            now=lambda: datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
        )

    def post(self, body: bytes, secret: str = SECRET) -> Any:
        return self.intake.handle(path_secret=secret, headers={"Content-Type": "text/xml"}, body=body)


def test_closed_won_message_is_archived_published_and_acknowledged_with_the_exact_ack() -> None:
    h = Harness()
    reply = h.post(SAMPLE)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/xml")
    assert reply.body == ACK
    ack = SafeET.fromstring(reply.body)
    assert ack.find(f".//{{{OUTBOUND_NS}}}Ack").text == "true"
    assert list(h.archive.bodies.values()) == [SAMPLE]
    assert [e.type for e in h.publisher.events] == ["opportunity.closed_won"]


def test_a_redelivered_notification_publishes_nothing_new() -> None:
    h = Harness()
    h.post(SAMPLE)
    assert h.post(SAMPLE).status == 200
    assert len(h.publisher.events) == 1


@pytest.mark.parametrize("secret", ["", "wrong", SECRET + "x"])
def test_an_unknown_listener_secret_is_refused_and_not_archived(secret: str) -> None:
    h = Harness()
    reply = h.post(SAMPLE, secret=secret)
    assert reply.status == 401
    assert b"Fault" in reply.body
    assert h.archive.bodies == {} and h.publisher.events == []


def test_both_secrets_of_a_rotation_work() -> None:
    assert Harness().post(SAMPLE, secret="old-secret").status == 200


def test_an_org_the_secret_does_not_belong_to_is_rejected_and_kept() -> None:
    h = Harness()
    other = SAMPLE.replace(ORG.encode(), b"00D5g000009OtHeRAA")
    reply = h.post(other)
    assert reply.status == 400 and b"OrganizationId" in reply.body
    assert list(h.archive.bodies.values()) == [other]
    [exc] = h.exceptions.values()
    assert exc["kind"] == REJECTED and exc["error"].field.endswith("OrganizationId")


def test_transient_publish_trouble_is_a_server_fault_so_salesforce_retries() -> None:
    h = Harness(FakePublisher(fail=True))
    with pytest.raises(ConnectionError):
        h.post(SAMPLE)  # the handler turns this into a 500 SOAP Server fault
    assert h.done == {} and len(h.archive.bodies) == 1  # archived first, nothing marked done


def test_a_notification_that_can_never_map_is_acknowledged_and_becomes_an_exception() -> None:
    h = Harness()
    body = (
        ROOT / "events" / "salesforce" / "03-opportunity-closed-won-without-billing-type.xml"
    ).read_bytes()
    reply = h.post(body)
    assert reply.status == 200 and reply.body == ACK
    [exc] = h.exceptions.values()
    assert exc["kind"] == REJECTED
    assert exc["error"].field == "R2R_Billing_Type__c"
    assert "0065g00000Jz9aaAAC" in exc["error"].record
    assert exc["archived_as"] in h.archive.bodies


def test_a_record_waiting_for_its_project_is_a_server_fault_and_a_waiting_exception_until_it_passes() -> None:
    h = Harness()
    timecard = (CERTINIA / "03-timecard-approved.xml").read_bytes()
    first = h.post(timecard)
    assert first.status == 500 and b"soapenv:Server" in first.body
    assert [e["kind"] for e in h.exceptions.values()] == [WAITING]
    for name in ("01-project.xml", "02-assignments.xml"):
        assert h.post((CERTINIA / name).read_bytes()).status == 200
    assert h.post(timecard).status == 200  # Salesforce's retry
    assert f"{ORG}/04l5g00000Nt0204AA" in h.resolved
    assert [e.type for e in h.publisher.events].count("time_entry.approved") == 5


# --- hostile and malformed input -----------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>&lol3;</OrganizationId>
</notifications></soapenv:Body></soapenv:Envelope>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>&xxe;</OrganizationId>
</notifications></soapenv:Body></soapenv:Envelope>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE soapenv:Envelope SYSTEM "http://127.0.0.1:9/evil.dtd">
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body/></soapenv:Envelope>"""


def _many_notifications(count: int) -> bytes:
    one = SAMPLE.split(b"<Notification>")[1].split(b"</Notification>")[0]
    head, _, _ = SAMPLE.partition(b"<Notification>")
    notes = b"".join(
        b"<Notification>"
        + one.replace(b"04l5g00000Nt0101AA", f"04l5g00000N{i:07d}".encode())
        + b"</Notification>"
        for i in range(count)
    )
    return head + notes + b"</notifications></soapenv:Body></soapenv:Envelope>"


HOSTILE = {
    "entity-expansion": (BILLION_LAUGHS, "(document)", "unsafe XML"),
    "external-entity": (EXTERNAL_ENTITY, "(document)", "unsafe XML"),
    "external-dtd": (EXTERNAL_DTD, "(document)", "unsafe XML"),
    "truncated": (SAMPLE[: len(SAMPLE) // 2], "(document)", "not well-formed"),
    "not-xml": (b'{"type": "opportunity.closed_won"}', "(document)", "not well-formed"),
    "wrong-namespace": (
        SAMPLE.replace(b"http://soap.sforce.com/2005/09/outbound", b"http://example.com/evil"),
        "Envelope/Body/notifications",
        "is missing",
    ),
    "soap-1.2-envelope": (
        SAMPLE.replace(
            b"http://schemas.xmlsoap.org/soap/envelope/", b"http://www.w3.org/2003/05/soap-envelope"
        ),
        "Envelope",
        "not a SOAP 1.1 Envelope",
    ),
    "field-in-wrong-namespace": (
        SAMPLE.replace(b"<sf:Amount>", b'<x:Amount xmlns:x="urn:other">').replace(
            b"</sf:Amount>", b"</x:Amount>"
        ),
        "Notification[0]/sObject/Amount",
        "namespace",
    ),
    "oversized": (SAMPLE.replace(b"Globex", b"G" * 300_000, 1), "(document)", "the limit is 262144"),
    "too-many-notifications": (_many_notifications(101), "Notification", "at most 100"),
    "bad-notification-id": (
        SAMPLE.replace(b"<Id>04l5g00000Nt0101AA</Id>", b"<Id>x</Id>"),
        "Notification[0]/Id",
        "not a notification id",
    ),
    "no-notification": (
        SAMPLE.split(b"<Notification>")[0] + b"</notifications></soapenv:Body></soapenv:Envelope>",
        "Notification",
        "no Notification",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_or_malformed_message_is_refused_kept_and_recorded(name: str) -> None:
    body, field, problem = HOSTILE[name]
    h = Harness()
    reply = h.post(body)
    assert reply.status == 400, reply.body
    assert b"soapenv:Client" in reply.body and field.encode() in reply.body
    assert list(h.archive.bodies.values()) == [body]  # the raw payload is kept
    [exc] = h.exceptions.values()
    assert exc["kind"] == REJECTED
    assert field in exc["error"].field and problem in exc["error"].problem
    assert h.publisher.events == []
    assert b"root:" not in reply.body  # nothing of /etc/passwd leaked into the answer


def test_a_hundred_notifications_are_one_message_each_its_own_event() -> None:
    h = Harness()
    reply = h.post(_many_notifications(100))
    assert reply.status == 200
    assert len(h.publisher.events) == 100
    assert len({e.event_id for e in h.publisher.events}) == 100


def test_wrong_type_fields_name_the_field_and_the_record() -> None:
    h = Harness()
    reply = h.post(
        SAMPLE.replace(b"<sf:Amount>60000.0</sf:Amount>", b"<sf:Amount>sixty thousand</sf:Amount>")
    )
    assert reply.status == 200  # acknowledged: retrying the same values cannot help
    [exc] = h.exceptions.values()
    assert exc["error"].field == "Amount" and "not a number" in exc["error"].problem
    assert "Opportunity 0065g00000Gx7bQAAS" in exc["error"].record


def test_contract_terms_that_are_not_the_canonical_shape_are_named() -> None:
    h = Harness()
    body = SAMPLE.replace(b'"rate":"200.00"', b'"rate":"-5"')
    assert h.post(body).status == 200
    [exc] = h.exceptions.values()
    assert exc["error"].field.startswith("opportunity.closed_won.engagement.rate_card.rates.0.rate")


# --- the basic-auth variant: POST /v1/salesforce/outbound with Authorization: Basic <org>:<secret> ---------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _post_basic(h: Harness, authorization: str | None, body: bytes = SAMPLE) -> Any:
    headers = {"Content-Type": "text/xml"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return h.intake.handle(path_secret="", headers=headers, body=body)


@pytest.mark.parametrize("user", [ORG, ORG[:15]], ids=["18-char-org-id", "15-char-org-id"])
def test_basic_auth_with_the_org_and_its_secret_is_acknowledged(user: str) -> None:
    h = Harness()
    reply = _post_basic(h, _basic(user, SECRET))
    assert reply.status == 200 and reply.body == ACK
    assert [e.type for e in h.publisher.events] == ["opportunity.closed_won"]
    assert list(h.archive.bodies.values()) == [SAMPLE]


def test_basic_auth_accepts_both_secrets_of_a_rotation() -> None:
    assert _post_basic(Harness(), _basic(ORG, "old-secret")).status == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        _basic(ORG, "wrong"),
        _basic(ORG, SECRET + "x"),
        _basic("00D5g000009OtHeRAA", SECRET),  # the right secret under another org's id
        _basic("_placeholder", "x"),  # the secret's placeholder key is never a credential
        _basic(ORG, ""),
        "Basic !!!not-base64!!!",
        "Bearer " + SECRET,
        "Basic " + base64.b64encode(SECRET.encode()).decode(),  # no user:password pair
        "Basic " + "A" * 5000,
    ],
    ids=[
        "missing",
        "empty",
        "wrong-secret",
        "secret-with-suffix",
        "other-org",
        "placeholder",
        "empty-password",
        "not-base64",
        "not-basic",
        "no-colon",
        "oversized",
    ],
)
def test_wrong_basic_credentials_are_a_401_soap_fault_with_a_challenge_and_nothing_is_kept(
    authorization: str | None,
) -> None:
    h = Harness()
    reply = _post_basic(h, authorization)
    assert reply.status == 401
    assert b"soapenv:Client" in reply.body and b"Authorization: Basic" in reply.body
    assert reply.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert h.archive.bodies == {} and h.publisher.events == [] and h.exceptions == {}


def test_basic_credentials_of_one_org_cannot_deliver_another_orgs_message() -> None:
    h = Harness()
    other = "00D5g000009OtHeRAA"
    h.intake.org_secrets = lambda: {ORG: [SECRET], other: ["other-secret"]}
    reply = _post_basic(h, _basic(other, "other-secret"))  # the message names ORG
    assert reply.status == 400 and b"OrganizationId" in reply.body
    [exc] = h.exceptions.values()
    assert exc["kind"] == REJECTED and exc["error"].field.endswith("OrganizationId")
    assert h.publisher.events == []


def test_a_path_secret_takes_precedence_over_a_basic_header() -> None:
    h = Harness()
    reply = h.intake.handle(path_secret=SECRET, headers={"Authorization": _basic(ORG, "wrong")}, body=SAMPLE)
    assert reply.status == 200
