"""The ``r2r`` command: one typer app composing a sub-app per concern.

Each concern keeps its commands in its own package (``infra/local/cli.py`` for ``r2r local``);
add another with ``app.add_typer(<sub-app>, name="<group>")``.
"""

from __future__ import annotations

import os

# The core's loggers (Powertools child loggers) take their level from the environment when their
# module is imported, which for this command is right here: an operator sees warnings, not every
# step of every flow the local stack runs (``r2r local … --verbose`` lowers it again).
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

import typer

from infra.billing_cli import app as billing_app
from infra.catalog import catalog
from infra.local.cli import app as local_app
from infra.ops_cli import reconcile, report

app = typer.Typer(
    help="r2r: resource-to-revenue integration, its local stack and tooling.",
    no_args_is_help=True,
)
app.add_typer(local_app, name="local")
app.add_typer(billing_app, name="billing")
app.command("reconcile")(reconcile)
app.command("report")(report)
app.command("catalog")(catalog)


if __name__ == "__main__":
    app()
