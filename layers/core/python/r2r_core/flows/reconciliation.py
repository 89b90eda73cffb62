"""Reconciliation: what r2r recorded as approved (PSA side) against what the ERP holds.

The PSA side is what r2r recorded for every approved time entry and expense (StateTable ``CHARGE#`` /
``EXPENSE#`` items: decision, hours, rate, amount, status) and every invoice it drafted (``INVOICE#``).
The ERP side is read with the NetSuite client: every ``timeBill`` and ``expenseReport`` (listed, then
read one by one) and r2r's invoices by external id. :func:`compare` is pure; :func:`reconcile` reads,
compares, records each finding once as an exception for finance (a deterministic id: a re-run adds
nothing) and emits the leakage KPIs.

Findings:

- ``approved_unbilled`` — revenue leakage: approved billable work not on any invoice, by age bucket;
- ``missing_in_erp`` — approved work r2r decided on but the ERP has no charge for (deleted or never
  written): billable work that will never be billed from the ERP;
- ``billed_not_approved`` — a billable ERP charge with an r2r external id that r2r holds no billable
  approval for (rejected, non-billable, or unknown);
- ``amount_mismatch`` — hours or rate of a time charge, or an invoice total, differ between the two.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core import kpis
from r2r_core.notify import notify_exception
from r2r_core.state import AuditLog, StateStore, exception_id, now_iso
from r2r_core.telemetry import emit

logger = Logger(child=True)

TIME_PREFIX, EXPENSE_PREFIX, INVOICE_PREFIX = "r2r-time-", "r2r-expense-", "r2r-invoice-"
BILLABLE_DECISIONS = {"invoiceable", "deferred", "capped", "held_for_milestone", "prepaid"}
RECOVERY = {
    "approved_unbilled": "check why the work waits (milestone not completed, deferred, held over a cap); "
    "complete the milestone or release the hold so the next billing run bills it",
    "missing_in_erp": "redrive the approval from the PSA (or the DLQ) so time_posting / expense_posting "
    "writes the ERP charge again (upsert by external id)",
    "billed_not_approved": "credit or void the ERP charge, or re-approve the work in the PSA",
    "amount_mismatch": "correct the ERP record (r2r's decision is in 'r2r billing explain <id>'), or "
    "re-send the approval so r2r writes it again",
}


class ErpReader(Protocol):
    def list(self, record_type: str) -> Iterator[dict[str, Any]]: ...
    def get(self, record_type: str, internal_id: str) -> dict[str, Any]: ...
    def get_by_external_id(self, record_type: str, external_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class PsaCharge:
    """One approved time entry or expense as r2r recorded it."""

    kind: str  # time | expense
    source_id: str
    engagement_id: str
    decision: str
    status: str
    hours: Decimal
    rate: Decimal | None
    amount: Decimal
    currency: str
    approved_on: date
    erp_external_id: str | None
    region: str | None
    business_unit: str | None

    @property
    def billable(self) -> bool:
        return self.decision in BILLABLE_DECISIONS and self.amount > 0


@dataclass(frozen=True)
class ErpCharge:
    kind: str
    external_id: str
    billable: bool
    hours: Decimal | None
    rate: Decimal | None
    amount: Decimal | None


@dataclass(frozen=True)
class InvoiceCheck:
    invoice_id: str
    engagement_id: str
    external_id: str
    r2r_total: Decimal
    erp_total: Decimal | None  # None: not in the ERP
    currency: str
    region: str | None
    business_unit: str | None


@dataclass(frozen=True)
class Finding:
    kind: str
    source_id: str
    engagement_id: str
    message: str
    amount: Decimal
    currency: str
    region: str | None
    business_unit: str | None
    age_bucket: str | None = None
    version: str = ""

    @property
    def id(self) -> str:
        return exception_id("reconciliation", self.kind, self.source_id, self.version)


def compare(
    psa: Iterable[PsaCharge],
    erp: Mapping[str, ErpCharge],
    invoices: Iterable[InvoiceCheck],
    *,
    today: date,
) -> list[Finding]:
    """Every difference between the two sides, in a stable order."""
    findings: list[Finding] = []
    known: dict[str, PsaCharge] = {}
    for charge in sorted(psa, key=lambda c: (c.kind, c.source_id)):
        if charge.erp_external_id:
            known[charge.erp_external_id] = charge
        common: dict[str, Any] = {
            "source_id": charge.source_id,
            "engagement_id": charge.engagement_id,
            "currency": charge.currency,
            "region": charge.region,
            "business_unit": charge.business_unit,
        }
        if charge.billable and charge.status == "unbilled":
            age = max((today - charge.approved_on).days, 0)
            findings.append(
                Finding(
                    kind="approved_unbilled",
                    message=f"{charge.kind} {charge.source_id}: {charge.amount} {charge.currency} approved "
                    f"{age} day(s) ago ({charge.decision}) is on no invoice",
                    amount=charge.amount,
                    age_bucket=kpis.age_bucket(age),
                    **common,
                )
            )
        if not charge.erp_external_id:
            continue
        held = erp.get(charge.erp_external_id)
        if held is None:
            findings.append(
                Finding(
                    kind="missing_in_erp",
                    message=f"{charge.kind} {charge.source_id}: the ERP has no {charge.erp_external_id}",
                    amount=charge.amount,
                    **common,
                )
            )
            continue
        if charge.kind == "time" and held.hours is not None and held.hours != charge.hours:
            findings.append(
                Finding(
                    kind="amount_mismatch",
                    message=f"time {charge.source_id}: {held.hours} h in the ERP, {charge.hours} h approved",
                    amount=charge.amount,
                    version="hours",
                    **common,
                )
            )
        elif (
            charge.kind == "time"
            and charge.billable
            and held.rate is not None
            and charge.rate is not None
            and held.rate != charge.rate
        ):
            findings.append(
                Finding(
                    kind="amount_mismatch",
                    message=f"time {charge.source_id}: rate {held.rate} in the ERP, {charge.rate} decided",
                    amount=charge.amount,
                    version="rate",
                    **common,
                )
            )
        elif (
            charge.kind == "expense"
            and held.amount is not None
            and held.billable
            and held.amount != charge.amount
        ):
            findings.append(
                Finding(
                    kind="amount_mismatch",
                    message=f"expense {charge.source_id}: {held.amount} in the ERP, {charge.amount} decided",
                    amount=charge.amount,
                    version="amount",
                    **common,
                )
            )
    for external_id in sorted(erp):
        held = erp[external_id]
        own = known.get(external_id)
        if held.billable and (own is None or not own.billable):
            findings.append(
                Finding(
                    kind="billed_not_approved",
                    source_id=external_id,
                    engagement_id=own.engagement_id if own else "",
                    message=f"ERP {held.kind} charge {external_id} is billable but r2r holds "
                    + (f"a '{own.decision}' decision for it" if own else "no approval for it"),
                    amount=held.amount or Decimal(0),
                    currency=own.currency if own else "",
                    region=own.region if own else None,
                    business_unit=own.business_unit if own else None,
                )
            )
    for invoice in sorted(invoices, key=lambda i: i.invoice_id):
        if invoice.erp_total is None or invoice.erp_total != invoice.r2r_total:
            where = (
                "is not in the ERP" if invoice.erp_total is None else f"totals {invoice.erp_total} in the ERP"
            )
            findings.append(
                Finding(
                    kind="missing_in_erp" if invoice.erp_total is None else "amount_mismatch",
                    source_id=invoice.invoice_id,
                    engagement_id=invoice.engagement_id,
                    message=f"invoice {invoice.invoice_id} ({invoice.r2r_total} {invoice.currency}) {where}",
                    amount=invoice.r2r_total,
                    currency=invoice.currency,
                    region=invoice.region,
                    business_unit=invoice.business_unit,
                    version="invoice",
                )
            )
    return findings


def leakage_kpis(findings: Iterable[Finding]) -> list[kpis.Kpi]:
    """Unbilled approved amount by age bucket and region (every bucket, zeros included), and counts."""
    findings = list(findings)
    amounts: dict[tuple[str | None, str | None, str], Decimal] = defaultdict(Decimal)
    for finding in findings:
        if finding.kind == "approved_unbilled" and finding.age_bucket:
            amounts[(finding.region, finding.business_unit, finding.age_bucket)] += finding.amount
    regions = {(f.region, f.business_unit) for f in findings if f.kind == "approved_unbilled"}
    values = [
        kpis.Kpi(
            kpis.UNBILLED_APPROVED_AMOUNT,
            kpis.NONE,
            amounts.get((region, unit, bucket), Decimal(0)),
            kpis.dimensions(region, unit, AgeBucket=bucket),
        )
        for region, unit in sorted(regions, key=lambda r: (r[0] or "", r[1] or ""))
        for bucket in (kpis.age_bucket(low) for low, _ in kpis.AGE_BUCKETS)
    ]
    counts: dict[str, int] = defaultdict(int)
    for finding in findings:
        counts[finding.kind] += 1
    values += [
        kpis.Kpi(kpis.RECONCILIATION_FINDINGS, kpis.COUNT, Decimal(n), {"Finding": kind})
        for kind, n in sorted(counts.items())
    ]
    return values


# -- reading both sides -----------------------------------------------------------------------------
def _d(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(str(value))


def _day(value: Any) -> date:
    text = str(value or "")
    try:
        return datetime.fromisoformat(text).date() if "T" in text else date.fromisoformat(text)
    except ValueError:
        return date.min


def psa_side(store: StateStore) -> tuple[list[PsaCharge], list[InvoiceCheck]]:
    items = list(store.scan_prefix("ENG#"))
    terms = {item["pk"]: item for item in items if item["sk"] == "TERMS"}
    charges: list[PsaCharge] = []
    invoices: list[InvoiceCheck] = []
    for item in items:
        sk = str(item["sk"])
        where = terms.get(item["pk"], {})
        engagement_id = str(item["pk"]).removeprefix("ENG#")
        if sk.startswith(("CHARGE#", "EXPENSE#")):
            kind = "time" if sk.startswith("CHARGE#") else "expense"
            charges.append(
                PsaCharge(
                    kind=kind,
                    source_id=str(item.get("source_id") or sk.split("#", 1)[1]),
                    engagement_id=engagement_id,
                    decision=str(item.get("decision", "")),
                    status=str(item.get("status", "")),
                    hours=_d(item.get("hours")) or Decimal(0),
                    rate=_d(item.get("rate")),
                    amount=_d(item.get("amount")) or Decimal(0),
                    currency=str(item.get("currency", "")),
                    approved_on=_day(item.get("approved_at") or item.get("work_date")),
                    erp_external_id=item.get("erp_time_bill_external_id")
                    or item.get("erp_expense_report_external_id")
                    or (
                        f"{TIME_PREFIX if kind == 'time' else EXPENSE_PREFIX}{item.get('source_id')}"
                        if item.get("erp_time_bill_id") or item.get("erp_expense_report_id")
                        else None
                    ),
                    region=item.get("region") or where.get("region"),
                    business_unit=where.get("business_unit"),
                )
            )
        elif sk.startswith("INVOICE#") and item.get("status") == "created" and item.get("external_id"):
            invoices.append(
                InvoiceCheck(
                    invoice_id=str(item["external_id"]).removeprefix(INVOICE_PREFIX),
                    engagement_id=engagement_id,
                    external_id=str(item["external_id"]),
                    r2r_total=_d(item.get("total")) or Decimal(0),
                    erp_total=None,
                    currency=str(item.get("currency", "")),
                    region=where.get("region"),
                    business_unit=where.get("business_unit"),
                )
            )
    return charges, invoices


def erp_side(erp: ErpReader) -> dict[str, ErpCharge]:
    """Every r2r ``timeBill`` and ``expenseReport`` in the ERP, by external id."""
    held: dict[str, ErpCharge] = {}
    for record_type, kind, prefix in (
        ("timeBill", "time", TIME_PREFIX),
        ("expenseReport", "expense", EXPENSE_PREFIX),
    ):
        for listed in erp.list(record_type):
            record = erp.get(record_type, str(listed["id"]))
            external_id = str(record.get("externalId") or "")
            if not external_id.startswith(prefix):
                continue  # not r2r's
            if kind == "time":
                hours, rate = _d(record.get("hours")), _d(record.get("rate"))
                held[external_id] = ErpCharge(
                    kind,
                    external_id,
                    bool(record.get("isBillable")),
                    hours,
                    rate,
                    (hours * rate) if hours is not None and rate is not None else None,
                )
            else:
                lines = (record.get("expense") or {}).get("items") or []
                amounts = [_d(line.get("amount")) for line in lines]
                held[external_id] = ErpCharge(
                    kind,
                    external_id,
                    any(bool(line.get("isBillable")) for line in lines),
                    None,
                    None,
                    sum((a for a in amounts if a is not None), Decimal(0)) if lines else None,
                )
    return held


def _erp_invoice_total(erp: ErpReader, external_id: str) -> Decimal | None:
    record = erp.get_by_external_id("invoice", external_id)
    if record is None:
        return None
    total = _d(record.get("total"))
    if total is not None:
        return total
    lines = (record.get("item") or {}).get("items") or []
    return sum((_d(line.get("amount")) or Decimal(0) for line in lines), Decimal(0))


def reconcile(*, store: StateStore, audit: AuditLog, erp: ErpReader, today: date) -> dict[str, Any]:
    """One reconciliation run: findings recorded as exceptions (once each), leakage KPIs emitted."""
    charges, drafted = psa_side(store)
    invoices = [
        InvoiceCheck(**{**invoice.__dict__, "erp_total": _erp_invoice_total(erp, invoice.external_id)})
        for invoice in drafted
    ]
    findings = compare(charges, erp_side(erp), invoices, today=today)
    new = 0
    run_id = f"reconciliation-{today.isoformat()}"
    for finding in findings:
        record = {
            "id": finding.id,
            "kind": f"reconciliation_{finding.kind}",
            "status": "open",
            "error_type": finding.kind,
            "error": finding.message,
            "source_record_id": finding.source_id,
            "engagement_id": finding.engagement_id or None,
            "amount_at_risk": finding.amount,
            "currency": finding.currency or None,
            "age_bucket": finding.age_bucket,
            "region": finding.region,
            "business_unit": finding.business_unit,
            "owner": f"finance-ops/{finding.region or 'unassigned'}/{finding.business_unit or 'all'}",
            "recovery": RECOVERY[finding.kind],
            "correlation_id": run_id,
            "created_at": now_iso(),
        }
        if store.put_exception(record):
            new += 1
            audit.append(
                kind="exception",
                entity_id=finding.id,
                action="opened",
                event_id=run_id,
                correlation_id=run_id,
                detail={"finding": finding.kind, "source_id": finding.source_id},
            )
            notify_exception(record)
    resolved = _resolve_gone(store, audit, {f.id for f in findings}, run_id)
    emit(leakage_kpis(findings))
    by_kind: dict[str, int] = defaultdict(int)
    for finding in findings:
        by_kind[finding.kind] += 1
    logger.info(
        "reconciled",
        extra={"findings": len(findings), "new": new, "resolved": resolved, "by_kind": dict(by_kind)},
    )
    return {
        "charges": len(charges),
        "invoices": len(invoices),
        "findings": [
            {
                "id": f.id,
                "kind": f.kind,
                "source_id": f.source_id,
                "engagement_id": f.engagement_id,
                "amount": str(f.amount),
                "currency": f.currency,
                "age_bucket": f.age_bucket,
                "region": f.region,
                "message": f.message,
            }
            for f in findings
        ],
        "new_exceptions": new,
        "resolved_exceptions": resolved,
    }


def _resolve_gone(store: StateStore, audit: AuditLog, current: set[str], run_id: str) -> int:
    """Close the open reconciliation exceptions this run no longer finds (billed since, fixed in the
    ERP): finance sees what is still wrong, and the audit says when each one went away."""
    resolved = 0
    for item in store.exceptions():
        if not str(item.get("kind", "")).startswith("reconciliation_") or item.get("status") != "open":
            continue
        if item["id"] in current:
            continue
        if store.update_if(
            item["pk"],
            item["sk"],
            set_values={"status": "resolved", "resolved_at": now_iso(), "resolved_by": run_id},
            condition="#status = :open",
            values={":open": "open"},
        ):
            resolved += 1
            audit.append(
                kind="exception",
                entity_id=item["id"],
                action="resolved",
                event_id=run_id,
                correlation_id=run_id,
                detail={"reason": "no longer found by reconciliation"},
            )
    return resolved
