"""``r2r exceptions list | show <id> | resolve <id> --by <who> --note ...``: exceptions for finance.

Exceptions are the StateTable items ``EXC#<id>`` / ``EXC`` (see ``r2r_core.state``). ``resolve`` marks
an open exception resolved with who, when and why (only an open one: the update is conditional) and
appends ``exception#<id>`` / ``<event>#resolved`` to the AuditTable, which is append-only.
``<id>`` is the exception id or a unique prefix of it.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from infra.ops_target import Target, with_target
from r2r_core.ops.exceptions import ResolveRefused, age_days, find, resolve_exception

__all__ = ["ResolveRefused", "age_days", "app", "find", "resolve_exception"]

app = typer.Typer(help="Exceptions for finance: list, inspect, resolve.", no_args_is_help=True)

_CONTEXT = (
    ("kind", "kind"),
    ("status", "status"),
    ("client_name", "client"),
    ("client_id", "client id"),
    ("project_id", "project"),
    ("engagement_id", "engagement"),
    ("opportunity_id", "opportunity"),
    ("amount_at_risk", "amount at risk"),
    ("source_system", "source system"),
    ("source_record_id", "source record"),
    ("source_record_version", "source record version"),
    ("event_type", "event type"),
    ("correlation_id", "correlation id"),
    ("execution_arn", "execution"),
    ("error_type", "error type"),
    ("error", "error"),
    ("owner", "owner"),
    ("region", "region"),
    ("business_unit", "business unit"),
    ("recovery", "recovery"),
    ("created_at", "opened"),
    ("resolved_at", "resolved"),
    ("resolved_by", "resolved by"),
    ("resolution_note", "resolution note"),
)


def _amount(item: dict[str, Any]) -> str:
    if item.get("amount_at_risk") in (None, ""):
        return "-"
    return f"{item['amount_at_risk']} {item.get('currency') or ''}".strip()


@app.command("list")
@with_target
def list_(
    *,
    all_: bool = typer.Option(False, "--all", help="Resolved ones too."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    target: Target,
) -> None:
    """Open exceptions (oldest first) with client, project, amount at risk, source, owner and age."""
    store, _ = target.stores()
    items = [e for e in store.exceptions() if all_ or e.get("status") == "open"]
    if as_json:
        typer.echo(
            json.dumps([{**e, "age_days": age_days(e)} for e in items], indent=2, default=str, sort_keys=True)
        )
        return
    typer.echo(f"{len(items)} exception(s)")
    for e in items:
        typer.echo(
            f"  {str(e['id'])[:12]}  {e.get('status'):<8} {age_days(e)} d  {e.get('kind')}  "
            f"client {e.get('client_name') or e.get('client_id') or '-'}  "
            f"project {e.get('project_id') or '-'}  at risk {_amount(e)}  "
            f"source {e.get('source_system') or '-'}:{e.get('source_record_id') or '-'}  "
            f"owner {e.get('owner') or '-'}\n      {e.get('error_type')}: {e.get('error')}"
        )


@app.command()
@with_target
def show(
    exception_id: str = typer.Argument(..., help="The exception id (or a unique prefix)."),
    *,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    target: Target,
) -> None:
    """One exception with its business context and its audit history."""
    store, audit = target.stores()
    try:
        item = find(store, exception_id)
    except ResolveRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    history = audit.history("exception", str(item["id"]))
    if as_json:
        typer.echo(json.dumps({"exception": item, "audit": history}, indent=2, default=str, sort_keys=True))
        return
    typer.echo(f"exception {item['id']} ({age_days(item)} days old)")
    for key, title in _CONTEXT:
        if item.get(key) not in (None, ""):
            value = _amount(item) if key == "amount_at_risk" else item[key]
            typer.echo(f"  {title + ':':<24} {value}")
    typer.echo("  audit:")
    for entry in history:
        typer.echo(f"    {entry['at']}  {entry['action']}  {entry['detail']}")


@app.command("resolve")
@with_target
def resolve_(
    exception_id: str = typer.Argument(..., help="The exception id (or a unique prefix)."),
    *,
    by: str = typer.Option(..., "--by", help="Who resolved it (recorded in the audit)."),
    note: str = typer.Option(..., "--note", help="What was done."),
    target: Target,
) -> None:
    """Mark an open exception resolved, with who, when and a note; the audit keeps it."""
    store, audit = target.stores()
    try:
        item = resolve_exception(store, audit, exception_id, by=by, note=note)
    except ResolveRefused as exc:
        typer.echo(f"not resolved: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"exception {item['id']} resolved by {by} at {item['resolved_at']}: {note}")
