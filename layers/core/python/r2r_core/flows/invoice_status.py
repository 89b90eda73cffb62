"""Invoice status back-sync: ERP (SuiteQL poll) → ``invoice.status_changed`` → CRM and PSA.

**Poll** (``poll_invoice_status``, on a schedule): r2r's invoices modified at or after the watermark
(``SYNC#erp_invoice_status`` / ``WATERMARK``), page by page. Each row's status and amounts are
compared with what r2r last saw (``INVSTATUS#<invoice id>`` / ``ERP``): an invoice touched without a
change of status or amounts is no change, and an invoice first seen open is only remembered. A
change is published as ``invoice.status_changed`` with the next version of that invoice (the event
id is derived from invoice and version, so a poll that dies after publishing publishes the same
event again, and consumers deduplicate on it). The watermark moves to the newest
``lastModifiedDate`` seen; the query is ``>=`` so rows sharing that instant are read again and
recognised as unchanged.

**Write back** (``write_back_invoice_status``, per event): the CRM opportunity's billing fields and
the PSA billing event (Certinia ``pse__Billing_Event__c``, upserted by r2r's invoice id). What r2r
wrote is remembered by record and a hash of the values (``ECHO#<system>#<object>#<key>``): the same
values are not written twice, and a change notification from the CRM or PSA that only repeats them
is recognised as our own echo (``r2r_core.echo``: the Salesforce Outbound listener drops it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core import echo
from r2r_core.erp.suiteql import InvoiceRow, invoice_status_query, parse_invoice_row
from r2r_core.flows.project_setup import load_terms
from r2r_core.kpis import collection_kpi, parse_day
from r2r_core.model.entities import InvoiceStatus, InvoiceStatusChange
from r2r_core.model.events import EVENT_TYPES, EventEnvelope, event_id_for
from r2r_core.model.money import Money, minor_unit_quantum
from r2r_core.state import AuditLog, StateStore, now_iso
from r2r_core.telemetry import emit

logger = Logger(child=True)

WATERMARK_KEY = ("SYNC#erp_invoice_status", "WATERMARK")
SALESFORCE = "salesforce"
OPPORTUNITY = "Opportunity"
BILLING_EVENT = "pse__Billing_Event__c"
# Custom fields an administrator adds (README: "CRM and PSA fields r2r writes").
OPPORTUNITY_EXTERNAL_ID = "R2R_Id__c"
BILLING_EVENT_EXTERNAL_ID = "R2R_Invoice_Id__c"


class SuiteQl(Protocol):
    def suiteql(self, query: str) -> Iterator[dict[str, Any]]: ...


class Publisher(Protocol):
    def publish(self, envelope: EventEnvelope) -> None: ...


class SalesforceWriter(Protocol):
    def upsert(self, sobject: str, external_id_field: str, value: str, fields: Mapping[str, Any]) -> str: ...


def poll_invoice_status(
    *, erp: SuiteQl, store: StateStore, audit: AuditLog, publisher: Publisher
) -> dict[str, Any]:
    """One poll; returns counts (``rows``, ``changes``, ``unchanged``, ``first_seen``, ``skipped``)."""
    mark = store.get(*WATERMARK_KEY)
    since = mark["since"] if mark else None
    counts = {"rows": 0, "changes": 0, "unchanged": 0, "first_seen": 0, "skipped": 0}
    newest = since
    for raw in erp.suiteql(invoice_status_query(since)):
        counts["rows"] += 1
        row = parse_invoice_row(raw)
        if row is None:
            counts["skipped"] += 1
            continue
        newest = max(newest or row.last_modified, row.last_modified)
        outcome = _observe(row, store=store, audit=audit, publisher=publisher)
        counts[outcome] += 1
    if newest is not None and newest != since:
        # Never backwards, even when two polls overlap.
        store.update_if(
            *WATERMARK_KEY,
            set_values={"since": newest, "updated_at": now_iso()},
            condition="attribute_not_exists(pk) OR #since < :newest",
            values={":newest": newest},
        )
    logger.info("invoice status polled", extra={**counts, "since": since, "watermark": newest})
    return {**counts, "since": since, "watermark": newest}


def _observe(row: InvoiceRow, *, store: StateStore, audit: AuditLog, publisher: Publisher) -> str:
    pk, sk = f"INVSTATUS#{row.invoice_id}", "ERP"
    seen = store.get(pk, sk)
    if seen is not None and seen["fingerprint"] == row.fingerprint():
        return "unchanged"
    if seen is None and row.status is InvoiceStatus.OPEN:
        store.put_versioned(_status_item(row, version=1))
        return "first_seen"
    version = int(seen["version"]) + 1 if seen else 2
    lookup = store.get(f"INVOICE#{row.invoice_id}", "LOOKUP") or {}
    currency = _currency(store, lookup, row.invoice_id)
    quantum = minor_unit_quantum(currency)
    change = InvoiceStatusChange(
        id=row.invoice_id,
        version=version,
        engagement_id=lookup.get("engagement_id"),
        milestone_id=lookup.get("milestone_id"),
        erp_id=row.erp_id,
        invoice_number=row.invoice_number,
        invoice_date=row.invoice_date,
        status=row.status,
        previous_status=InvoiceStatus(seen["status"]) if seen else InvoiceStatus.OPEN,
        # SuiteQL sends amounts as it stores them ("0", "1178.1"): shown in the currency's minor units.
        total=Money(amount=row.total.quantize(quantum), currency=currency),
        amount_remaining=Money(amount=row.remaining.quantize(quantum), currency=currency),
        amount_paid=Money(amount=row.paid.quantize(quantum), currency=currency),
        erp_last_modified=row.last_modified,
    )
    kind = EVENT_TYPES["invoice.status_changed"]
    envelope = EventEnvelope(
        type=kind.name,
        schema_version=kind.schema_version,
        event_id=event_id_for("erp", f"invoice.status_changed/{row.invoice_id}/v{version}"),
        source_system="erp",
        source_record_id=row.invoice_id,
        source_record_version=version,
        correlation_id=f"invoice-status-{row.invoice_id}",
        occurred_at=datetime.now(UTC),
        data=change.model_dump(mode="json"),
    )
    publisher.publish(envelope)
    store.put_versioned(_status_item(row, version=version))
    paid_on = parse_day(row.last_modified)
    if row.status is InvoiceStatus.PAID and row.invoice_date is not None and paid_on is not None:
        # Cash collection: invoice date to the day the ERP last changed it (the payment).
        emit(
            [
                collection_kpi(
                    invoice_date=row.invoice_date,
                    paid_on=paid_on,
                    region=lookup.get("region"),
                    business_unit=lookup.get("business_unit"),
                )
            ]
        )
    audit.append(
        kind="invoice",
        entity_id=row.invoice_id,
        action="status_changed",
        event_id=envelope.event_id,
        correlation_id=envelope.correlation_id,
        detail={"status": row.status.value, "previous_status": change.previous_status, "erp_id": row.erp_id},
    )
    return "changes"


def _status_item(row: InvoiceRow, *, version: int) -> dict[str, Any]:
    return {
        "pk": f"INVSTATUS#{row.invoice_id}",
        "sk": "ERP",
        "version": version,
        "status": row.status.value,
        "fingerprint": row.fingerprint(),
        "erp_id": row.erp_id,
        "erp_last_modified": row.last_modified,
        "updated_at": now_iso(),
    }


def _currency(store: StateStore, lookup: Mapping[str, Any], invoice_id: str) -> str:
    """The invoice's currency, from its frozen draft (SuiteQL's foreign amounts are in it)."""
    # ``draft_sk`` names a period-end run's draft; older lookups (milestone runs) only the milestone.
    sk = lookup.get("draft_sk") or (
        f"INVOICE#{lookup['milestone_id']}" if lookup.get("milestone_id") else None
    )
    draft = store.get(f"ENG#{lookup['engagement_id']}", sk) if lookup.get("engagement_id") and sk else None
    if draft is None or not draft.get("currency"):
        raise LookupError(f"invoice {invoice_id} is not one r2r created (no draft to read its currency)")
    return str(draft["currency"])


# ---- write back to the CRM and the PSA ------------------------------------------------------------


def _hash(fields: Mapping[str, Any]) -> str:
    return echo.values_hash(fields)


is_echo = echo.is_echo  # kept here for callers that knew it from the write-back


def opportunity_fields(change: InvoiceStatusChange) -> dict[str, Any]:
    return {
        "R2R_Invoice_Number__c": change.invoice_number,
        "R2R_Invoice_Status__c": change.status.value,
        "R2R_Invoice_Amount_Due__c": format(change.amount_remaining.amount, "f"),
        "R2R_Invoice_Currency__c": change.total.currency,
    }


def billing_event_fields(change: InvoiceStatusChange, project_id: str) -> dict[str, Any]:
    invoiced = change.status is not InvoiceStatus.VOIDED
    return {
        "pse__Project__r": {"R2R_Id__c": project_id},
        "pse__Invoiced__c": invoiced,
        "pse__Invoice_Number__c": change.invoice_number,
        "pse__Invoice_Date__c": change.invoice_date.isoformat() if change.invoice_date else None,
        "pse__Summary_Amount__c": format(change.total.amount, "f"),
        "R2R_Payment_Status__c": change.status.value,
    }


def write_back_invoice_status(
    envelope: EventEnvelope, *, store: StateStore, audit: AuditLog, salesforce: SalesforceWriter
) -> dict[str, Any]:
    change = InvoiceStatusChange.model_validate(envelope.data)
    latest = store.get(f"INVSTATUS#{change.id}", "ERP")
    if latest is not None and int(latest["version"]) > change.version:
        return {"written": [], "stale": True}  # a newer status is (or will be) written
    if not change.engagement_id or (loaded := load_terms(store, change.engagement_id)) is None:
        raise LookupError(f"invoice {change.id}: engagement unknown, cannot find the CRM and PSA records")
    deal, _ = loaded
    writes = [
        (OPPORTUNITY, OPPORTUNITY_EXTERNAL_ID, deal.id, opportunity_fields(change)),
        (BILLING_EVENT, BILLING_EVENT_EXTERNAL_ID, change.id, billing_event_fields(change, deal.project.id)),
    ]
    written = []
    for sobject, field, key, fields in writes:
        last = echo.last_write(store, SALESFORCE, sobject, key)
        if last is not None and last["hash"] == _hash(fields):
            continue  # already there: writing it again would only make an echo
        record_id = salesforce.upsert(sobject, field, key, fields)
        echo.remember_write(
            store,
            system=SALESFORCE,
            sobject=sobject,
            key=key,
            record_id=record_id,
            fields=fields,
            version=change.version,
        )
        written.append(sobject)
        audit.append(
            kind="invoice",
            entity_id=change.id,
            action=f"written_back_{sobject}",
            event_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
            detail={"record_id": record_id, "status": change.status.value},
        )
    logger.info("invoice status written back", extra={"invoice_id": change.id, "written": written})
    return {"written": written, "stale": False}
