"""``r2r lineage invoice <invoice id>``: where every line of an invoice came from.

invoice line → charges (the billing decision of each time entry / expense) → the time entry or expense
(its version, work date, resource, approval, ERP timeBill) → assignment → project → engagement → the
closed-won opportunity (its version), with the ERP ids from the crosswalk and the audit trail (AuditTable)
of each, so every amount can be traced back to the records of the source systems.

``<invoice id>`` is the canonical invoice id (``INVOICE#<id>`` / ``LOOKUP``), or the ERP internal or
external id of the invoice.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from infra.ops_target import Target, with_target
from r2r_core.ops.lineage import NotFound, invoice_lineage

__all__ = ["NotFound", "app", "invoice_lineage"]

app = typer.Typer(help="Lineage: from an invoice back to the source records.", no_args_is_help=True)


def _print(doc: dict[str, Any]) -> None:
    inv = doc["invoice"]
    typer.echo(
        f"invoice {inv['id']} (ERP {inv['erp_id']} / {inv['external_id']}), {inv['invoice_date']}, "
        f"total {inv['total']} {inv['currency']}, {inv['status']} at {inv['created_at']}"
    )
    for line in doc["lines"]:
        typer.echo(
            f"  line {line['line_no']} [{line['kind']}] {line['description']}: "
            f"{line['quantity']} × {line['rate']} = {line['amount']}"
        )
        for source in line["sources"]:
            if "milestone_id" in source:
                typer.echo(f"    milestone {source['milestone_id']}")
                continue
            c = source["charge"]
            typer.echo(
                f"    {source['id']} v{c.get('version')}  {c.get('work_date')}  {c.get('resource_id')}  "
                f"{c.get('billable_hours', '')} h  {c.get('amount')} {c.get('currency', '')}  "
                f"[{c.get('decision')}]  assignment {c.get('assignment_id')}  "
                f"approved {c.get('approved_at')}  "
                f"ERP timeBill {c.get('erp_time_bill_external_id') or c.get('erp_time_bill_id') or '-'}"
            )
            for entry in source["audit"]:
                typer.echo(f"      {entry['at']}  {entry['action']}  event {entry['event_id']}")
    project, client, engagement, opportunity = (
        doc["project"],
        doc["client"],
        doc["engagement"],
        doc["opportunity"],
    )
    typer.echo(f"  project {project['id']} (ERP {project['erp']})")
    typer.echo(f"  client {client['id']} (ERP {client['erp']})")
    typer.echo(
        f"  engagement {engagement['id']}: terms v{engagement['terms_version']} "
        f"at {engagement['terms_updated_at']}"
    )
    if opportunity:
        typer.echo(
            f"  opportunity {opportunity['id']} v{opportunity['version']} "
            f"closed won {opportunity['close_date']}"
        )


@app.command()
@with_target
def invoice(
    invoice_id: str = typer.Argument(..., help="Canonical invoice id, or its ERP internal/external id."),
    *,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    target: Target,
) -> None:
    """Invoice line → charges → time entries / expenses → assignment → project → opportunity."""
    store, audit = target.stores()
    try:
        doc = invoice_lineage(store, audit, invoice_id)
    except NotFound as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    _print(doc)
