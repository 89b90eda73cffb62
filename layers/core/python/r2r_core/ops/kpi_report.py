"""The KPIs of what the StateTable holds.

Per created invoice (its frozen draft and ``kpi_inputs``) and per failed invoice run (open
``invoice_workflow_failed`` exceptions), computed with :mod:`r2r_core.kpis` like the EMF metrics, so the
HTML report, the operator API (``GET /ops/kpis``) and the dashboard agree.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from r2r_core import kpis
from r2r_core.flows.invoicing import billed_time
from r2r_core.model.entities import ClosedWonDeal, Invoice
from r2r_core.state import StateStore


def _when(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def state_kpis(
    engagement_items: Iterable[Mapping[str, Any]], open_exceptions: Iterable[Mapping[str, Any]]
) -> list[kpis.Kpi]:
    """KPIs of the created invoices among ``engagement_items`` (the ``ENG#`` items) and of the failed invoice
    runs among ``open_exceptions``, in a stable order (by draft, then by region and business unit)."""
    items = list(engagement_items)
    terms = {item["pk"]: item for item in items if item["sk"] == "TERMS"}
    found: list[kpis.Kpi] = []
    for item in sorted(items, key=lambda i: (i["pk"], i["sk"])):
        if not str(item["sk"]).startswith("INVOICE#") or item.get("status") != "created":
            continue
        invoice = Invoice.model_validate_json(item["invoice"])
        term = terms.get(item["pk"])
        deal = ClosedWonDeal.model_validate_json(term["deal"]) if term else None
        inputs = json.loads(item.get("kpi_inputs") or "{}")
        engagement = deal.engagement if deal else None
        found += kpis.invoice_kpis(
            region=engagement.region if engagement else None,
            business_unit=engagement.business_unit if engagement else None,
            currency=invoice.currency,
            invoice_total=invoice.total.amount,
            invoiced_at=_when(item.get("created_at")) or datetime.now(UTC),
            milestone_completed_at=_when(inputs.get("milestone_completed_at")),
            time=billed_time(inputs.get("time", [])),
            contract_value=engagement.contract_value.amount
            if engagement and engagement.contract_value
            else None,
            billed_before=Decimal(inputs.get("billed_before", "0")),
        )
    failed_runs: dict[tuple[str | None, str | None], int] = defaultdict(int)
    for exc in open_exceptions:
        if exc.get("kind") == "invoice_workflow_failed":
            failed_runs[(exc.get("region"), exc.get("business_unit"))] += 1
    for (region, unit), count in sorted(failed_runs.items(), key=lambda kv: str(kv[0])):
        for _ in range(count):
            found += kpis.invoice_failed_kpis(region, unit)
    return found


def open_exceptions(store: StateStore) -> list[dict[str, Any]]:
    """Open exceptions, oldest first."""
    return sorted(
        (e for e in store.scan_prefix("EXC#") if e.get("status", "open") == "open"),
        key=lambda e: str(e.get("created_at", "")),
    )


def stack_kpis(store: StateStore) -> list[kpis.Kpi]:
    """:func:`state_kpis` of everything the StateTable holds."""
    return state_kpis(store.scan_prefix("ENG#"), open_exceptions(store))


def kpi_document(kpi: kpis.Kpi) -> dict[str, Any]:
    """A KPI as JSON: the value as a string (a Decimal, never a float)."""
    return {"name": kpi.name, "unit": kpi.unit, "value": str(kpi.value), "dimensions": dict(kpi.dimensions)}
