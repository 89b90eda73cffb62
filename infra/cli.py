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
from infra.cost import cost
from infra.local.cli import app as local_app
from infra.ops_cli import reconcile, report
from infra.ops_dlq import app as dlq_app
from infra.ops_exceptions import app as exceptions_app
from infra.ops_executions import app as executions_app
from infra.ops_kantata import app as kantata_app
from infra.ops_lineage import app as lineage_app

app = typer.Typer(
    help="r2r: resource-to-revenue integration, its local stack and tooling.",
    no_args_is_help=True,
)
app.add_typer(local_app, name="local")
app.add_typer(billing_app, name="billing")
app.add_typer(dlq_app, name="dlq")
app.add_typer(exceptions_app, name="exceptions")
app.add_typer(executions_app, name="executions")
app.add_typer(lineage_app, name="lineage")
app.add_typer(kantata_app, name="kantata")
app.command("reconcile")(reconcile)
app.command("report")(report)
app.command("catalog")(catalog)
app.command("cost")(cost)


if __name__ == "__main__":
    app()
