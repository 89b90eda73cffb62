"""Draft an invoice for a completed milestone: T&M lines for unbilled charges, plus the milestone.

Lines for time are grouped by role and region (one rate per line, so quantity × rate =
amount holds exactly); each line's amount is rounded half-up to the currency's minor unit
once, and the total is the sum of the rounded lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from r2r_core.model.entities import Invoice, InvoiceLine, InvoiceLineKind, Milestone
from r2r_core.model.money import Money, round_money


def draft_invoice(
    *,
    invoice_id: str,
    engagement_id: str,
    client_id: str,
    project_id: str,
    currency: str,
    milestone: Milestone,
    charges: Iterable[Mapping[str, Any]],
    invoice_date: date,
    po_number: str | None = None,
) -> Invoice:
    """``charges`` are stored charge items: ``time_entry_id``, ``role``, ``region``, ``hours``, ``rate``."""
    groups: dict[tuple[str, str, Decimal], list[Mapping[str, Any]]] = defaultdict(list)
    for charge in charges:
        groups[(charge["role"], charge["region"], Decimal(charge["rate"]))].append(charge)

    lines: list[InvoiceLine] = []
    for role, region, rate in sorted(groups):
        members = groups[(role, region, rate)]
        hours = sum((Decimal(c["hours"]) for c in members), Decimal(0))
        lines.append(
            InvoiceLine(
                line_no=len(lines) + 1,
                kind=InvoiceLineKind.TIME,
                description=f"{role} ({region}) — time and materials",
                role=role,
                region=region,
                quantity=hours,
                rate=rate,
                amount=round_money(hours * rate, currency),
                source_ids=sorted(c["time_entry_id"] for c in members),
            )
        )
    milestone_amount = round_money(milestone.amount.amount, currency)
    lines.append(
        InvoiceLine(
            line_no=len(lines) + 1,
            kind=InvoiceLineKind.MILESTONE,
            description=f"Milestone: {milestone.name}",
            quantity=Decimal(1),
            rate=milestone_amount,
            amount=milestone_amount,
            source_ids=[milestone.id],
        )
    )
    total = sum((line.amount for line in lines), Decimal(0))
    return Invoice(
        id=invoice_id,
        engagement_id=engagement_id,
        client_id=client_id,
        project_id=project_id,
        milestone_id=milestone.id,
        invoice_date=invoice_date,
        currency=currency,
        lines=lines,
        total=Money(amount=total, currency=currency),
        po_number=po_number,
    )
