"""Salesforce: Outbound Messages (SOAP) read with defusedxml, and the Opportunity mapping.

An Outbound Message is a SOAP 1.1 envelope whose body is ``notifications``
(``http://soap.sforce.com/2005/09/outbound``): ``OrganizationId``, ``ActionId``, ``SessionId``,
``EnterpriseUrl``, ``PartnerUrl`` and 1..100 ``Notification`` (``Id`` + ``sObject`` with the selected
fields in ``urn:sobject.enterprise.soap.sforce.com``). The listener answers ``notificationsResponse``
with ``Ack`` ``true`` (``text/xml``) once every notification is accepted; anything else makes
Salesforce retry (up to 24 h).

Opportunity → canonical (decision, documented in the README): the message carries only opportunity
fields, so the deal terms Salesforce owns travel *on the opportunity*: standard fields, cross-object
formula fields for the account (``R2R_Client_Name__c`` = ``Account.Name``, ``R2R_Billing_Country__c``
= ``Account.BillingCountryCode``…) and ``R2R_Contract_Terms__c`` (long text, JSON: rate card,
milestones, caps… as in the canonical engagement, written by CPQ or a flow). No call back to
Salesforce is needed while Salesforce waits for the Ack. ``Closed Won`` (or ``IsWon``) →
``opportunity.closed_won``; any other stage → ``opportunity.updated``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

import defusedxml
from defusedxml import ElementTree as SafeET

from r2r_core.connectors.base import FieldMapping, Fields, MappingError, envelope, version_of
from r2r_core.model.events import EventEnvelope

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
MAX_FIELD_CHARS = 131_072  # a long text area's limit
MAX_TERMS_CHARS = 131_072
SOURCE_SYSTEM = "salesforce"
MESSAGE = "outbound message"

_ORG_ID = re.compile(r"^00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")
_NOTIFICATION_ID = re.compile(r"^04l[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")
_SOBJECT_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")

ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
    b"  <soapenv:Body>\n"
    b'    <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">\n'
    b"      <Ack>true</Ack>\n"
    b"    </notificationsResponse>\n"
    b"  </soapenv:Body>\n"
    b"</soapenv:Envelope>\n"
)
XML_CONTENT_TYPE = "text/xml; charset=utf-8"


def soap_fault(code: str, message: str) -> bytes:
    """A SOAP 1.1 fault (``Client``: the message is at fault; ``Server``: try again later)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
        "  <soapenv:Body>\n"
        "    <soapenv:Fault>\n"
        f"      <faultcode>soapenv:{escape(code)}</faultcode>\n"
        f"      <faultstring>{escape(message[:1000])}</faultstring>\n"
        "    </soapenv:Fault>\n"
        "  </soapenv:Body>\n"
        "</soapenv:Envelope>\n"
    ).encode()


@dataclass(frozen=True)
class Notification:
    id: str
    sobject_type: str
    fields: dict[str, str | None]

    @property
    def record(self) -> str:
        return f"{self.sobject_type} {self.fields.get('Id') or '(no Id)'} (notification {self.id})"


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    action_id: str | None
    notifications: list[Notification]


def _local(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag


def _malformed(field: str, problem: str) -> MappingError:
    return MappingError(MESSAGE, field, problem)


def _child(parent: Element, namespace: str, name: str, path: str) -> Element:
    found = parent.find(f"{{{namespace}}}{name}")
    if found is None:
        raise _malformed(f"{path}/{name}", f"is missing (namespace {namespace})")
    return found


def _text(element: Element | None) -> str | None:
    if element is None:
        return None
    if element.get(f"{{{XSI_NS}}}nil") == "true":
        return None
    return (element.text or "").strip() or None


def parse_outbound_message(body: bytes) -> OutboundMessage:
    """Read an Outbound Message; anything else raises :class:`MappingError` naming the element.

    DTDs (and with them entity expansion and external entities) are refused outright.
    """
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise _malformed("(document)", f"refused unsafe XML: {type(exc).__name__}") from None
    except ParseError as exc:
        raise _malformed("(document)", f"not well-formed XML: {exc}") from None
    namespace, name = _local(root.tag)
    if (namespace, name) != (SOAP_ENV, "Envelope"):
        raise _malformed("Envelope", f"root element is {{{namespace}}}{name}, not a SOAP 1.1 Envelope")
    soap_body = _child(root, SOAP_ENV, "Body", "Envelope")
    notifications = _child(soap_body, OUTBOUND_NS, "notifications", "Envelope/Body")
    path = "Envelope/Body/notifications"
    org_id = _text(_child(notifications, OUTBOUND_NS, "OrganizationId", path))
    if org_id is None or not _ORG_ID.match(org_id):
        raise _malformed(f"{path}/OrganizationId", f"{(org_id or '')[:40]!r} is not an organization id")
    action_id = _text(notifications.find(f"{{{OUTBOUND_NS}}}ActionId"))
    elements = notifications.findall(f"{{{OUTBOUND_NS}}}Notification")
    if not elements:
        raise _malformed(f"{path}/Notification", "no Notification in the message")
    if len(elements) > MAX_NOTIFICATIONS:
        raise _malformed(f"{path}/Notification", f"{len(elements)} notifications; at most 100 are allowed")
    return OutboundMessage(
        organization_id=org_id,
        action_id=action_id,
        notifications=[
            _notification(element, f"{path}/Notification[{i}]") for i, element in enumerate(elements)
        ],
    )


def _notification(element: Element, path: str) -> Notification:
    notification_id = _text(_child(element, OUTBOUND_NS, "Id", path))
    if notification_id is None or not _NOTIFICATION_ID.match(notification_id):
        raise _malformed(f"{path}/Id", f"{(notification_id or '')[:40]!r} is not a notification id (04l…)")
    sobject = _child(element, OUTBOUND_NS, "sObject", path)
    declared = sobject.get(f"{{{XSI_NS}}}type") or ""
    sobject_type = declared.rpartition(":")[2]
    if not _SOBJECT_TYPE.match(sobject_type):
        raise _malformed(f"{path}/sObject/@xsi:type", f"{declared[:80]!r} is not an sObject type")
    fields: dict[str, str | None] = {}
    for child in sobject:
        namespace, name = _local(child.tag)
        if namespace != SOBJECT_NS:
            raise _malformed(f"{path}/sObject/{name}", f"field in namespace {namespace!r}, not {SOBJECT_NS}")
        if len(child):
            raise _malformed(f"{path}/sObject/{name}", "a field holds nested elements")
        value = _text(child)
        if value is not None and len(value) > MAX_FIELD_CHARS:
            raise _malformed(f"{path}/sObject/{name}", f"is longer than {MAX_FIELD_CHARS} characters")
        fields[name] = value
    return Notification(id=notification_id, sobject_type=sobject_type, fields=fields)


# --- Opportunity ------------------------------------------------------------------------------

_BILLING_TYPES = {
    "time and materials": "time_and_materials",
    "t&m": "time_and_materials",
    "fixed price": "fixed_fee",
    "fixed fee": "fixed_fee",
    "t&m/fixed": "mixed",
    "mixed": "mixed",
    "capped time and materials": "capped_time_and_materials",
    "capped t&m": "capped_time_and_materials",
    "retainer": "retainer",
}
# Keys of R2R_Contract_Terms__c: the engagement terms an opportunity field cannot hold.
_TERMS_KEYS = {
    "rate_card",
    "client_rate_card",
    "default_rate_card",
    "assignment_rates",
    "cap",
    "cap_hours",
    "cap_tolerance_percent",
    "cap_policy",
    "budgets",
    "retainer",
    "billing_schedule",
    "line_grouping",
    "revenue_method",
    "estimated_hours",
    "expense_policy",
    "fx_rates",
    "milestones",
}
TERMS_FIELD = "R2R_Contract_Terms__c"


def modified_at(fields: Fields) -> datetime:
    """The record's last change: ``SystemModstamp`` (preferred) or ``LastModifiedDate``."""
    if fields.has("SystemModstamp"):
        return fields.req_timestamp("SystemModstamp")
    if fields.has("LastModifiedDate"):
        return fields.req_timestamp("LastModifiedDate")
    raise fields.fail("SystemModstamp", "is required (add SystemModstamp to the message's fields)")


def is_closed_won(fields: Fields) -> bool:
    if fields.has("IsWon"):
        return fields.flag("IsWon")
    return (fields.text("StageName", required=False) or "") == "Closed Won"


def map_opportunity(fields: Fields, *, delivery_id: str) -> list[EventEnvelope]:
    """One opportunity's latest values → ``opportunity.closed_won`` or ``opportunity.updated``."""
    opp_id = fields.req_salesforce_id("Id")
    changed = modified_at(fields)
    version = version_of(changed)
    account_id = fields.salesforce_id("AccountId", required=False)
    if is_closed_won(fields):
        data = _closed_won(fields, opp_id=opp_id, account_id=account_id, version=version)
        type_name = "opportunity.closed_won"
    else:
        currency = fields.text("CurrencyIsoCode", required=False)
        amount = fields.decimal("Amount", required=False)
        data = {
            "id": f"opp-{opp_id}",
            "version": version,
            "name": fields.req_text("Name", max_length=120),
            "stage": fields.req_text("StageName"),
            "is_won": fields.flag("IsWon", default=False),
            "is_closed": fields.flag("IsClosed", default=False),
            "amount": {"amount": str(amount), "currency": currency}
            if amount is not None and currency
            else None,
            "close_date": fields.req_day("CloseDate").isoformat(),
            "client_id": f"acct-{account_id}" if account_id else None,
            "engagement_id": f"eng-{opp_id}",
        }
        type_name = "opportunity.updated"
    return [
        envelope(
            type_name=type_name,
            source_system=SOURCE_SYSTEM,
            delivery_id=delivery_id,
            occurred_at=changed,
            data=data,
            record=fields.record,
        )
    ]


def _closed_won(fields: Fields, *, opp_id: str, account_id: str | None, version: int) -> dict[str, Any]:
    if account_id is None:
        raise fields.fail("AccountId", "is required for a closed-won opportunity")
    currency = fields.req_text("CurrencyIsoCode")
    amount = fields.req_decimal("Amount")
    billing_type = fields.req_text("R2R_Billing_Type__c")
    canonical_type = _BILLING_TYPES.get(billing_type.lower(), billing_type)
    if canonical_type not in set(_BILLING_TYPES.values()):
        raise fields.fail("R2R_Billing_Type__c", f"{billing_type!r} is not a billing type r2r knows")
    close_date = fields.req_day("CloseDate")
    start = fields.day("R2R_Start_Date__c", required=False) or close_date
    end = fields.day("R2R_End_Date__c", required=False)
    region = fields.req_text("R2R_Region__c")
    business_unit = fields.text("R2R_Business_Unit__c", required=False)
    client_id, engagement_id, project_id = f"acct-{account_id}", f"eng-{opp_id}", f"prj-{opp_id}"
    name = fields.req_text("Name", max_length=120)
    terms = _contract_terms(fields)
    money = {"amount": str(amount), "currency": currency}
    return {
        "id": f"opp-{opp_id}",
        "version": version,
        "name": name,
        "amount": money,
        "close_date": close_date.isoformat(),
        "client": {
            "id": client_id,
            "version": version,
            "name": fields.req_text("R2R_Client_Name__c"),
            "legal_name": fields.text("R2R_Client_Legal_Name__c", required=False),
            "billing_country": fields.req_text("R2R_Billing_Country__c"),
            "currency": currency,
            "tax_registration": fields.text("R2R_Client_Tax_Registration__c", required=False),
            "region": region,
            "business_unit": business_unit,
            "email": fields.text("R2R_Billing_Email__c", required=False),
        },
        "engagement": {
            **terms,
            "id": engagement_id,
            "version": version,
            "client_id": client_id,
            "opportunity_id": f"opp-{opp_id}",
            "name": fields.text("R2R_Engagement_Name__c", required=False) or name,
            "billing_type": canonical_type,
            "currency": currency,
            "contract_value": money,
            "legal_entity": fields.text("R2R_Legal_Entity__c", required=False),
            "tax_registration": fields.text("R2R_Tax_Registration__c", required=False),
            "po_number": fields.text("R2R_PO_Number__c", required=False),
            "start_date": start.isoformat(),
            "end_date": end.isoformat() if end else None,
            "region": region,
            "business_unit": business_unit,
        },
        "project": {
            "id": project_id,
            "version": version,
            "engagement_id": engagement_id,
            "client_id": client_id,
            "name": fields.text("R2R_Project_Name__c", required=False) or name,
            "start_date": start.isoformat(),
            "end_date": end.isoformat() if end else None,
            "region": region,
            "business_unit": business_unit,
            "billable": True,
        },
    }


def _contract_terms(fields: Fields) -> dict[str, Any]:
    text = fields.text(TERMS_FIELD, required=False, max_length=MAX_TERMS_CHARS)
    if text is None:
        return {}
    try:
        terms = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except ValueError as exc:
        raise fields.fail(TERMS_FIELD, f"is not valid JSON: {exc}") from None
    if not isinstance(terms, dict):
        raise fields.fail(TERMS_FIELD, "must be a JSON object of engagement terms")
    unknown = sorted(set(terms) - _TERMS_KEYS)
    if unknown:
        raise fields.fail(TERMS_FIELD, f"unknown keys {unknown} (known: {sorted(_TERMS_KEYS)})")
    return _decimals_as_text(terms)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number r2r accepts")


def _decimals_as_text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _decimals_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals_as_text(v) for v in value]
    return value


# --- Field map (declarative; the integration catalog lists it, a test proves it against the fixtures) ---

_CW, _UP = "opportunity.closed_won", "opportunity.updated"
FIELD_MAP: dict[str, tuple[FieldMapping, ...]] = {
    "Opportunity": tuple(
        FieldMapping(*row)
        for row in (
            ("Id", _CW, "id", "id"),
            ("Id", _CW, "engagement.id", "id"),
            ("Id", _CW, "project.id", "id"),
            ("Id", _UP, "id", "id"),
            ("Id", _UP, "engagement_id", "id"),
            ("AccountId", _CW, "client.id", "id"),
            ("AccountId", _CW, "engagement.client_id", "id"),
            ("AccountId", _UP, "client_id", "id"),
            ("Name", _CW, "name", "copy"),
            ("Name", _UP, "name", "copy"),
            ("StageName", _UP, "stage", "copy"),
            ("IsWon", _UP, "is_won", "flag"),
            ("IsClosed", _UP, "is_closed", "flag"),
            ("Amount", _CW, "amount.amount", "decimal"),
            ("Amount", _CW, "engagement.contract_value.amount", "decimal"),
            ("Amount", _UP, "amount.amount", "decimal"),
            ("CurrencyIsoCode", _CW, "amount.currency", "copy"),
            ("CurrencyIsoCode", _CW, "client.currency", "copy"),
            ("CurrencyIsoCode", _CW, "engagement.currency", "copy"),
            ("CurrencyIsoCode", _UP, "amount.currency", "copy"),
            ("CloseDate", _CW, "close_date", "date"),
            ("CloseDate", _UP, "close_date", "date"),
            ("SystemModstamp", _CW, "version", "derived"),
            ("SystemModstamp", _UP, "version", "derived"),
            ("R2R_Billing_Type__c", _CW, "engagement.billing_type", "lookup"),
            ("R2R_Region__c", _CW, "client.region", "copy"),
            ("R2R_Region__c", _CW, "engagement.region", "copy"),
            ("R2R_Region__c", _CW, "project.region", "copy"),
            ("R2R_Business_Unit__c", _CW, "engagement.business_unit", "copy"),
            ("R2R_Start_Date__c", _CW, "engagement.start_date", "date"),
            ("R2R_End_Date__c", _CW, "engagement.end_date", "date"),
            ("R2R_Legal_Entity__c", _CW, "engagement.legal_entity", "copy"),
            ("R2R_Tax_Registration__c", _CW, "engagement.tax_registration", "copy"),
            ("R2R_PO_Number__c", _CW, "engagement.po_number", "copy"),
            ("R2R_Engagement_Name__c", _CW, "engagement.name", "copy"),
            ("R2R_Project_Name__c", _CW, "project.name", "copy"),
            ("R2R_Client_Name__c", _CW, "client.name", "copy"),
            ("R2R_Client_Legal_Name__c", _CW, "client.legal_name", "copy"),
            ("R2R_Billing_Country__c", _CW, "client.billing_country", "copy"),
            ("R2R_Client_Tax_Registration__c", _CW, "client.tax_registration", "copy"),
            ("R2R_Billing_Email__c", _CW, "client.email", "copy"),
            (TERMS_FIELD, _CW, "engagement", "derived"),
        )
    )
}
