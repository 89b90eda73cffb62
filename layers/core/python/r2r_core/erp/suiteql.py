"""The SuiteQL query r2r polls invoice status with, and how its rows map onto canonical statuses.

Columns: ``id``, ``tranid``, ``externalid``, ``trandate``, ``status`` (display text), ``foreigntotal``,
``foreignamountremaining``, ``foreignamountpaid``, ``voided``, ``lastmodified`` (shape unconfirmed
against a real account: column names from public SuiteQL examples of the ``transaction`` table;
verify with the account's Records Catalog before go-live).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from r2r_core.model.entities import InvoiceStatus

__all__ = ["InvoiceRow", "invoice_status_query", "parse_invoice_row"]

INVOICE_EXTERNAL_ID_PREFIX = "r2r-invoice-"
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_TS_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.FF3"Z"'


def invoice_status_query(since: str | None) -> str:
    """r2r's invoices modified at or after ``since`` (ISO UTC), oldest first, ties by id."""
    where = f"type = 'CustInvc' AND externalid LIKE '{INVOICE_EXTERNAL_ID_PREFIX}%'"
    if since is not None:
        if not _TIMESTAMP.match(since):  # never interpolate anything but a checked timestamp
            raise ValueError(f"not an ISO UTC timestamp: {since!r}")
        where += f" AND lastmodifieddate >= TO_TIMESTAMP('{since}', '{_TS_FORMAT}')"
    columns = (
        "id, tranid, externalid, trandate, BUILTIN.DF(status) AS status, foreigntotal, "
        "foreignamountremaining, foreignamountpaid, voided, "
        f"TO_CHAR(lastmodifieddate, '{_TS_FORMAT}') AS lastmodified"
    )
    # Only constants and the pattern-checked timestamp go into the text (SuiteQL has no bind variables).
    return f"SELECT {columns} FROM transaction WHERE {where} ORDER BY lastmodifieddate, id"  # noqa: S608


@dataclass(frozen=True)
class InvoiceRow:
    erp_id: str
    invoice_id: str  # canonical
    invoice_number: str
    invoice_date: date | None
    status: InvoiceStatus
    total: Decimal
    remaining: Decimal
    paid: Decimal
    last_modified: str

    def fingerprint(self) -> str:
        """What a change is: status and amounts (a touch that changes neither is no change)."""
        return f"{self.status.value}|{self.total}|{self.remaining}|{self.paid}"


def parse_invoice_row(row: dict[str, Any]) -> InvoiceRow | None:
    """The row as an :class:`InvoiceRow`, or None when it is not one of r2r's invoices."""
    external_id = str(row.get("externalid") or "")
    if not external_id.startswith(INVOICE_EXTERNAL_ID_PREFIX):
        return None
    total = Decimal(str(row.get("foreigntotal") or "0"))
    remaining = Decimal(str(row.get("foreignamountremaining") or "0"))
    paid = Decimal(str(row.get("foreignamountpaid") or "0"))
    voided = str(row.get("voided") or "F").upper() in ("T", "TRUE")
    trandate = row.get("trandate")
    return InvoiceRow(
        erp_id=str(row["id"]),
        invoice_id=external_id[len(INVOICE_EXTERNAL_ID_PREFIX) :],
        invoice_number=str(row.get("tranid") or row["id"]),
        invoice_date=date.fromisoformat(str(trandate)) if trandate else None,
        status=canonical_status(voided=voided, total=total, remaining=remaining, paid=paid),
        total=total,
        remaining=remaining,
        paid=paid,
        last_modified=str(row["lastmodified"]),
    )


def canonical_status(*, voided: bool, total: Decimal, remaining: Decimal, paid: Decimal) -> InvoiceStatus:
    """voided; open (nothing settled); partially paid; paid (payments cover it); credited (a credit
    memo settled the rest)."""
    if voided:
        return InvoiceStatus.VOIDED
    if remaining >= total:
        return InvoiceStatus.OPEN
    if remaining > 0:
        return InvoiceStatus.PARTIALLY_PAID
    return InvoiceStatus.PAID if paid >= total else InvoiceStatus.CREDITED
