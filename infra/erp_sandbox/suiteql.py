"""SuiteQL for the sandbox: the invoice status query r2r polls with, and invoice settlement.

Not a SQL engine: the sandbox understands one query shape, the one ``r2r_core.erp.suiteql`` sends
(invoices by last-modified date), and answers anything else with NetSuite's 400
``INVALID_PARAMETER``. Columns (lower case, values as strings, as SuiteQL answers): ``id``,
``tranid``, ``externalid``, ``trandate``, ``status`` (``BUILTIN.DF``: ``Open`` / ``Paid In Full`` /
``Voided``), ``foreigntotal``, ``foreignamountremaining``, ``foreignamountpaid``, ``voided`` (``T``/``F``),
``lastmodified`` (ISO, milliseconds, UTC). Shape unconfirmed for real accounts: column names follow
the SuiteQL ``transaction`` table as seen in public examples.

Settlement (what finance does in NetSuite, played by a sandbox control): an invoice is ``paid``
(optionally a partial ``amount``), ``voided``, or ``credited`` (a credit memo for what remains is
created from it). The sandbox keeps ``amountPaid``, ``amountCredited``, ``amountRemaining``,
``voided`` and ``status`` on the invoice and bumps its ``lastModifiedDate``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from .errors import SandboxError

__all__ = ["SETTLEMENT_FIELDS", "invoice_rows", "parse_invoice_query", "settle_fields"]

# Server-owned fields of an invoice (a client write never sets them).
SETTLEMENT_FIELDS = ("amountPaid", "amountCredited", "amountRemaining", "voided", "status", "tranId")

_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<columns>.+?)\s+FROM\s+transaction\s+WHERE\s+type\s*=\s*'CustInvc'"
    r"(?:\s+AND\s+externalid\s+LIKE\s+'(?P<like>[A-Za-z0-9_%-]+)')?"
    r"(?:\s+AND\s+lastmodifieddate\s*>=\s*TO_TIMESTAMP\('(?P<since>[0-9T:.Z-]+)',\s*'[^']+'\))?"
    r"\s+ORDER\s+BY\s+lastmodifieddate\s*,\s*id\s*$",
    re.IGNORECASE | re.DOTALL,
)


def invalid_query(detail: str) -> SandboxError:
    return SandboxError(400, "INVALID_PARAMETER", f"Invalid search query. {detail}", "q")


def parse_invoice_query(query: str) -> tuple[str | None, str | None]:
    """``(externalid LIKE pattern, since)`` of the one supported query shape."""
    match = _QUERY.match(query or "")
    if match is None:
        raise invalid_query("The sandbox supports the r2r invoice status query only.")
    return match["like"], match["since"]


def _like(pattern: str | None, value: str | None) -> bool:
    if pattern is None:
        return True
    if value is None:
        return False
    regex = "^" + ".*".join(re.escape(part) for part in pattern.split("%")) + "$"
    return re.match(regex, value) is not None


def settle_fields(fields: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Carry the server-owned settlement over an update and recompute what remains."""
    out = {k: v for k, v in fields.items() if k not in SETTLEMENT_FIELDS}
    prior = previous or {}
    paid = Decimal(str(prior.get("amountPaid", "0")))
    credited = Decimal(str(prior.get("amountCredited", "0")))
    voided = bool(prior.get("voided", False))
    total = Decimal(str(out.get("total", "0")))
    remaining = Decimal(0) if voided else max(Decimal(0), total - paid - credited)
    out["amountPaid"] = format(paid, "f")
    out["amountCredited"] = format(credited, "f")
    out["amountRemaining"] = format(remaining, "f")
    out["voided"] = voided
    out["status"] = _status(voided, remaining)
    if "tranId" in prior:
        out["tranId"] = prior["tranId"]
    return out


def _status(voided: bool, remaining: Decimal) -> dict[str, str]:
    if voided:
        return {"id": "V", "refName": "Voided"}
    if remaining == 0:
        return {"id": "B", "refName": "Paid In Full"}
    return {"id": "A", "refName": "Open"}


def apply_settlement(
    fields: dict[str, Any], action: str, amount: Decimal | None
) -> tuple[dict[str, Any], Decimal]:
    """The invoice after ``action`` (paid / voided / credited) and the amount credited now."""
    current = dict(fields)
    remaining = Decimal(str(current.get("amountRemaining", current.get("total", "0"))))
    credited_now = Decimal(0)
    if action == "paid":
        pay = remaining if amount is None else amount
        if pay <= 0 or pay > remaining:
            raise SandboxError(
                400, "INVALID_CONTENT", f"A payment must be between 0 and {remaining}.", "amount"
            )
        current["amountPaid"] = format(Decimal(str(current.get("amountPaid", "0"))) + pay, "f")
    elif action == "credited":
        credited_now = remaining if amount is None else amount
        if credited_now <= 0 or credited_now > remaining:
            raise SandboxError(
                400, "INVALID_CONTENT", f"A credit must be between 0 and {remaining}.", "amount"
            )
        current["amountCredited"] = format(
            Decimal(str(current.get("amountCredited", "0"))) + credited_now, "f"
        )
    elif action == "voided":
        current["voided"] = True
    else:
        raise SandboxError(400, "INVALID_CONTENT", "action must be paid, credited or voided.", "action")
    return settle_fields(current, current), credited_now


def invoice_rows(records: list[Any], like: str | None, since: str | None) -> list[dict[str, Any]]:
    """The query's rows, ordered by last-modified date then id (``StoredRecord`` list in)."""
    rows = []
    for record in records:
        if not _like(like, record.external_id):
            continue
        if since is not None and record.updated_at < since:
            continue
        fields = record.fields
        rows.append(
            {
                "id": record.id,
                "tranid": str(fields.get("tranId") or record.id),
                "externalid": record.external_id,
                "trandate": fields.get("tranDate"),
                "status": (fields.get("status") or {}).get("refName", "Open"),
                "foreigntotal": str(fields.get("total", "0")),
                "foreignamountremaining": str(fields.get("amountRemaining", fields.get("total", "0"))),
                "foreignamountpaid": str(fields.get("amountPaid", "0")),
                "voided": "T" if fields.get("voided") else "F",
                "lastmodified": record.updated_at,
            }
        )
    rows.sort(key=lambda row: (row["lastmodified"], int(row["id"])))
    return rows
