"""A report people can look at: KPIs, time-to-bill and exceptions by region, invoices with their lineage.

Read from the StateTable (the frozen invoice drafts, the charges, the contract terms, the exceptions)
and computed with the same functions as the EMF metrics (``r2r_core.kpis``), so the page and the
dashboard agree. One self-contained HTML file: inline CSS and SVG, no scripts, no external assets.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

from r2r_core import kpis
from r2r_core.model.entities import ClosedWonDeal, Invoice
from r2r_core.ops.kpi_report import open_exceptions, state_kpis
from r2r_core.state import StateStore

KPI_TITLES = {
    kpis.TIME_TO_BILL: "Time to bill after approval (days, oldest entry)",
    kpis.APPROVED_TIME_AGING: "Approved-time aging at invoice (days, hours-weighted)",
    kpis.BILLING_TRIGGER_LATENCY: "Billing trigger latency (s, milestone to invoice)",
    kpis.INVOICE_EXCEPTION_RATE: "Invoice exception rate (%)",
    kpis.UTILIZATION: "Utilization (%, billable hours over capacity)",
    kpis.WRITE_OFF_PERCENT: "Write-off (%)",
    kpis.BACKLOG: "Backlog (contract value not yet billed)",
    kpis.BILLED_REVENUE: "Billed revenue",
    kpis.MARGIN_PERCENT: "Margin (%)",
    kpis.UNCOSTED_HOURS: "Hours without an HRIS cost rate (no margin)",
}


@dataclass
class LineageRow:
    line_no: int
    description: str
    amount: Decimal
    entries: list[dict[str, Any]]


@dataclass
class InvoiceView:
    invoice: Invoice
    erp_id: str | None
    created_at: str | None
    deal: ClosedWonDeal | None
    lines: list[LineageRow]


@dataclass
class ReportData:
    generated_at: str
    invoices: list[InvoiceView] = field(default_factory=list)
    kpis: list[kpis.Kpi] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)


def collect(store: StateStore) -> ReportData:
    items = list(store.scan_prefix("ENG#"))
    terms = {item["pk"]: item for item in items if item["sk"] == "TERMS"}
    charges = {
        (item["pk"], str(item["sk"]).split("#", 1)[1]): item
        for item in items
        if str(item["sk"]).startswith(("CHARGE#", "EXPENSE#"))
    }
    data = ReportData(generated_at=datetime.now(UTC).isoformat(timespec="seconds"))
    for item in sorted(items, key=lambda i: (i["pk"], i["sk"])):
        if not str(item["sk"]).startswith("INVOICE#") or item.get("status") != "created":
            continue
        invoice = Invoice.model_validate_json(item["invoice"])
        term = terms.get(item["pk"])
        deal = ClosedWonDeal.model_validate_json(term["deal"]) if term else None
        rows = []
        for line in invoice.lines:
            entries = []
            for source_id in line.source_ids:
                charge = charges.get((item["pk"], source_id), {})
                entries.append(
                    {
                        "id": source_id,
                        "work_date": charge.get("work_date"),
                        "resource_id": charge.get("resource_id"),
                        "hours": charge.get("billable_hours"),
                        "approved_at": charge.get("approved_at"),
                        "project_id": charge.get("project_id") or invoice.project_id,
                        "correlation_id": charge.get("correlation_id"),
                    }
                )
            rows.append(LineageRow(line.line_no, line.description, line.amount, entries))
        data.invoices.append(InvoiceView(invoice, item.get("erp_id"), item.get("created_at"), deal, rows))
    data.exceptions = open_exceptions(store)
    # The same KPIs the operator API serves (r2r_core.ops.kpi_report).
    data.kpis = state_kpis(items, data.exceptions)
    return data


# -- rendering ----------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _bar_chart(title: str, values: dict[str, Decimal], unit: str) -> str:
    """A horizontal bar chart as inline SVG (one bar per region)."""
    width, bar_h, gap, label_w = 560, 26, 10, 120
    top = 30
    height = top + max(len(values), 1) * (bar_h + gap) + 10
    peak = max(values.values(), default=Decimal(0)) or Decimal(1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        f'<text x="0" y="18" font-size="14" font-weight="bold">{_e(title)}</text>',
    ]
    if not values:
        parts.append(f'<text x="0" y="{top + 16}" font-size="12">no data</text>')
    for index, (label, value) in enumerate(sorted(values.items())):
        y = top + index * (bar_h + gap)
        length = int((width - label_w - 110) * (value / peak)) if value > 0 else 1
        parts.append(f'<text x="0" y="{y + 17}" font-size="13" class="region">{_e(label)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{max(length, 1)}" height="{bar_h}" fill="#2f6db5"></rect>'
        )
        parts.append(
            f'<text x="{label_w + max(length, 1) + 6}" y="{y + 17}" font-size="12">'
            f"{_e(value)} {_e(unit)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(data: ReportData) -> str:
    time_to_bill: dict[str, Decimal] = {}
    for kpi in data.kpis:
        if kpi.name == kpis.TIME_TO_BILL:
            region = kpi.dimensions["Region"]
            time_to_bill[region] = max(time_to_bill.get(region, Decimal(0)), kpi.value)
    exceptions_by_region: dict[str, Decimal] = defaultdict(Decimal)
    for exc in data.exceptions:
        exceptions_by_region[str(exc.get("region") or kpis.UNASSIGNED)] += 1
    for region in time_to_bill:
        exceptions_by_region.setdefault(region, Decimal(0))

    kpi_rows = "".join(
        f"<tr><td>{_e(KPI_TITLES.get(k.name, k.name))}</td><td><code>{_e(k.name)}</code></td>"
        f"<td class='region'>{_e(k.dimensions.get('Region'))}</td>"
        f"<td>{_e(k.dimensions.get('BusinessUnit'))}</td>"
        f"<td class='num'>{_e(k.value)} {_e(k.dimensions.get('Currency', ''))}</td></tr>"
        for k in data.kpis
        if k.name in KPI_TITLES
    )
    invoices_html = []
    for view in data.invoices:
        invoice, deal = view.invoice, view.deal
        rows = []
        for line in view.lines:
            entries = (
                "<br>".join(
                    f"{_e(e['id'])} — {_e(e['resource_id'])}, {_e(e['work_date'])}, {_e(e['hours'])} h, "
                    f"approved {_e(e['approved_at'])}"
                    for e in line.entries
                    if e.get("work_date")
                )
                or "—"
            )
            rows.append(
                f"<tr><td>{line.line_no}</td><td>{_e(line.description)}</td>"
                f"<td class='num'>{_e(line.amount)}</td><td>{entries}</td></tr>"
            )
        lineage = (
            f"opportunity <b>{_e(deal.id)}</b> → engagement {_e(deal.engagement.id)} → project "
            f"<b>{_e(deal.project.id)}</b> ({_e(deal.project.name)}) → invoice <b>{_e(invoice.id)}</b>"
            if deal
            else f"invoice {_e(invoice.id)}"
        )
        client = _e(deal.client.name) if deal else _e(invoice.client_id)
        invoices_html.append(
            f"<section class='invoice'><h3>Invoice {_e(invoice.id)} — {client}</h3>"
            f"<p class='lineage'>{lineage}</p>"
            f"<p>ERP id {_e(view.erp_id)}, dated {_e(invoice.invoice_date)}, created {_e(view.created_at)}; "
            f"total <b class='total'>{_e(invoice.total.amount)}</b> {_e(invoice.currency)}</p>"
            "<table><thead><tr><th>#</th><th>line</th><th>amount</th><th>time entries</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>"
        )
    exception_rows = "".join(
        f"<tr><td>{_e(e.get('kind'))}</td><td class='region'>{_e(e.get('region'))}</td>"
        f"<td>{_e(e.get('error'))}</td>"
        f"<td class='num'>{_e(e.get('amount_at_risk'))} {_e(e.get('currency'))}</td></tr>"
        for e in data.exceptions
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>r2r: resource to revenue report</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #1d1d1d; }}
table {{ border-collapse: collapse; margin: 8px 0 24px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; font-size: 13px; }}
th {{ background: #eef2f7; text-align: left; }}
.num {{ text-align: right; white-space: nowrap; }}
.charts {{ display: flex; gap: 32px; flex-wrap: wrap; }}
</style></head>
<body>
<h1>r2r: resource to revenue</h1>
<p>Generated {_e(data.generated_at)} from the StateTable. {len(data.invoices)} invoice(s),
{len(data.exceptions)} open exception(s).</p>
<h2>KPIs</h2>
<table id="kpis"><thead>
<tr><th>KPI</th><th>metric</th><th>region</th><th>business unit</th><th>value</th></tr></thead>
<tbody>{kpi_rows}</tbody></table>
<h2>By region</h2>
<div class="charts" id="charts">
{_bar_chart("Time to bill after approval (days)", time_to_bill, "days")}
{_bar_chart("Exceptions", dict(exceptions_by_region), "")}
</div>
<h2>Invoices and their lineage</h2>
<div id="invoices">{"".join(invoices_html) or "<p>no invoice yet</p>"}</div>
<h2>Exceptions for finance</h2>
<table id="exceptions"><thead><tr><th>kind</th><th>region</th><th>what</th><th>at risk</th></tr></thead>
<tbody>{exception_rows}</tbody></table>
</body></html>
"""


def write_stack_report(stack: Any, path: Path) -> None:
    """Write the report of a running :class:`infra.local.LocalStack` (its StateTable) to ``path``."""
    store = StateStore(stack.local.table_for_env("STATE_TABLE_NAME"), stack.boto3_client("dynamodb"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(collect(store)), encoding="utf-8")
