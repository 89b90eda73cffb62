"""``r2r billing``: look at billing decisions on a running stack (``r2r billing explain <time-entry-id>``),
and release time held over a cap for approval (``r2r billing release <time-entry-id> --by <who>``).

Reads ``.r2r/local.json`` (written by ``r2r local up``) for the AWS endpoint, region and tables,
finds the entry's engagement through its audit records (``flows.charges.charge_of``) and prints the
stored decision, its rule and the reason in plain words.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import boto3
import typer

from infra.local import config
from r2r_core.flows.cap_release import ReleaseRefused, release_held_time
from r2r_core.flows.charges import charge_of
from r2r_core.state import AuditLog, StateStore

app = typer.Typer(help="Billing decisions: why was (or wasn't) something billed?", no_args_is_help=True)

_FIELDS = (
    ("decision", "decision"),
    ("rule", "rule"),
    ("status", "status"),
    ("version", "version"),
    ("hours", "hours approved"),
    ("billable_hours", "hours billable"),
    ("rate", "rate"),
    ("rate_rule", "rate from"),
    ("amount", "amount"),
    ("held_hours", "hours held over a cap"),
    ("held_amount", "amount held over a cap"),
    ("prepaid_hours", "hours drawn from the retainer"),
    ("billable_from", "billable from"),
    ("invoice_id", "invoice"),
    ("credited_invoice_id", "earlier version credited from invoice"),
)


def _table_name(local_json: Path, described: dict[str, Any], kind: str) -> str:
    tables = described.get("tables", {})
    found = [name for logical_id, name in tables.items() if kind in logical_id]
    if len(found) != 1:
        raise typer.BadParameter(
            f"{local_json} names no single {kind.lower()} table (tables: {sorted(tables)})"
        )
    return str(found[0])


def _stores(local_json: Path) -> tuple[StateStore, AuditLog]:
    if not local_json.is_file():
        raise typer.BadParameter(
            f"{local_json} not found: start the local stack with `r2r local up` first",
            param_hint="--local-json",
        )
    described: dict[str, Any] = json.loads(local_json.read_text())
    state = _table_name(local_json, described, "State")
    audit = _table_name(local_json, described, "Audit")
    client = boto3.client(
        "dynamodb",
        endpoint_url=described["aws_endpoint_url"],
        region_name=described.get("region", config.REGION),
        aws_access_key_id=config.ACCESS_KEY_ID,
        aws_secret_access_key=config.SECRET_ACCESS_KEY,
    )
    return StateStore(state, client), AuditLog(audit, client)


@app.command()
def explain(
    entry_id: Annotated[str, typer.Argument(help="The canonical id of the time entry (or expense).")],
    *,
    expense: Annotated[bool, typer.Option("--expense", help="Explain an expense instead.")] = False,
    local_json: Annotated[Path, typer.Option(help="The file `r2r local up` wrote.")] = Path(
        ".r2r/local.json"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored decision as JSON.")] = False,
) -> None:
    """Print the billing decision of a time entry, the rule that made it and why."""
    kind = "expense" if expense else "time"
    store, audit = _stores(local_json)
    item = charge_of(store, audit, kind=kind, source_id=entry_id)
    if item is None:
        typer.echo(
            f"no billing decision recorded for {'expense' if expense else 'time entry'} {entry_id}", err=True
        )
        raise typer.Exit(1)
    if as_json:
        typer.echo(
            json.dumps({k: v for k, v in item.items() if k not in {"pk", "sk"}}, default=str, indent=2)
        )
        return
    label = "expense" if expense else "time entry"
    typer.echo(f"{label} {entry_id} (engagement {item['pk'].removeprefix('ENG#')})")
    for key, title in _FIELDS:
        value = item.get(key)
        if value in (None, "") or (key.startswith(("held", "prepaid")) and not value):
            continue
        suffix = f" {item.get('currency', '')}" if key in {"rate", "amount", "held_amount"} else ""
        typer.echo(f"  {title + ':':<40} {value}{suffix}")
    typer.echo(f"  {'why:':<40} {item.get('reason', '')}")


@app.command()
def release(
    entry_id: Annotated[str, typer.Argument(help="The canonical id of the time entry held over a cap.")],
    *,
    by: Annotated[str, typer.Option("--by", help="Who approved the release (recorded in the audit).")],
    note: Annotated[str, typer.Option(help="Why, e.g. the change order number.")] = "",
    local_json: Annotated[Path, typer.Option(help="The file `r2r local up` wrote.")] = Path(
        ".r2r/local.json"
    ),
) -> None:
    """Release the hours of a time entry held over a cap for approval: the next billing run bills them."""
    store, audit = _stores(local_json)
    try:
        item = release_held_time(store, audit, entry_id, released_by=by, note=note)
    except ReleaseRefused as exc:
        typer.echo(f"not released: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"time entry {entry_id} released by {by}: {item['released_hours']} h more billable, "
        f"{item['billable_hours']} h = {item['amount']} {item.get('currency', '')} on the next invoice "
        f"(billable from {item.get('billable_from')})"
    )
