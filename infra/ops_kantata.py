"""``r2r kantata link <workspace id> <engagement id> [--default-role R]`` and ``r2r kantata links``.

The workspace ↔ engagement link tells the Kantata poller which r2r engagement and project a Kantata
workspace bills (StateTable ``SRCREF#kantata_workspace#<workspace id>`` / ``REF``). Provisioning writes it
when it creates the workspace for a closed-won deal; this command writes it for a workspace that already
exists. The engagement must be set up in r2r (its closed-won deal received).
"""

from __future__ import annotations

import json

import typer

from infra.ops_target import Target, with_target
from r2r_core.connectors.kantata import WORKSPACE_LINK
from r2r_core.flows.kantata_poll import link_workspace

app = typer.Typer(help="Kantata OX: link workspaces to r2r engagements.", no_args_is_help=True)


@app.command()
@with_target
def link(
    workspace_id: str = typer.Argument(..., help="The Kantata workspace id (a number)."),
    engagement_id: str = typer.Argument(..., help="The r2r engagement id (from the closed-won deal)."),
    *,
    default_role: str | None = typer.Option(
        None, help="Role for time entries without a role_id (the rate card's role name)."
    ),
    target: Target,
) -> None:
    """Link a Kantata workspace to an r2r engagement: its time and expenses bill that engagement."""
    store, audit = target.stores()
    try:
        linked = link_workspace(
            store, audit, workspace_id=workspace_id, engagement_id=engagement_id, default_role=default_role
        )
    except (LookupError, ValueError) as exc:
        typer.echo(f"not linked: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(linked, indent=2, sort_keys=True))


@app.command("links")
@with_target
def links(
    *,
    target: Target,
) -> None:
    """Every linked workspace with its engagement, project, region and currency (JSON)."""
    store, _ = target.stores()
    prefix = f"SRCREF#{WORKSPACE_LINK}#"
    found = {
        item["pk"][len(prefix) :]: {**json.loads(item["value"]), "version": item["version"]}
        for item in store.scan_prefix(prefix)
    }
    typer.echo(json.dumps(found, indent=2, sort_keys=True, default=str))
