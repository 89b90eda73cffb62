"""``r2r reconcile`` and ``r2r report``: reconciliation and the HTML report against a running local stack.

Both read ``.r2r/local.json`` (written by ``r2r local up``): the AWS endpoint, the StateTable and
AuditTable, the ERP sandbox URL and the ErpCredentials secret.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import boto3
import typer

from infra.local import config
from infra.report import collect, render_html
from r2r_core.erp.auth import credentials_from_secret_json
from r2r_core.erp.client import NetSuiteClient
from r2r_core.flows.reconciliation import reconcile as run_reconciliation
from r2r_core.state import AuditLog, StateStore

LOCAL_JSON = Path(".r2r/local.json")
LocalJson = Annotated[Path, typer.Option(help="The file `r2r local up` wrote.")]


def _described(local_json: Path) -> dict[str, Any]:
    if not local_json.is_file():
        raise typer.BadParameter(
            f"{local_json} not found: start the local stack with `r2r local up` first",
            param_hint="--local-json",
        )
    described: dict[str, Any] = json.loads(local_json.read_text())
    return described


def _client(described: dict[str, Any], service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=described["aws_endpoint_url"],
        region_name=described.get("region", config.REGION),
        aws_access_key_id=config.ACCESS_KEY_ID,
        aws_secret_access_key=config.SECRET_ACCESS_KEY,
    )


def _one(described: dict[str, Any], group: str, word: str) -> str:
    found = [value for logical_id, value in described.get(group, {}).items() if word in logical_id]
    if len(found) != 1:
        raise typer.BadParameter(
            f"local.json names no single {word} in {group}: {sorted(described.get(group, {}))}"
        )
    return str(found[0])


def _stores(described: dict[str, Any]) -> tuple[StateStore, AuditLog]:
    dynamodb = _client(described, "dynamodb")
    return (
        StateStore(_one(described, "tables", "State"), dynamodb),
        AuditLog(_one(described, "tables", "Audit"), dynamodb),
    )


def reconcile(
    *,
    local_json: LocalJson = LOCAL_JSON,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Reconcile approved work recorded by r2r against the ERP sandbox; findings become exceptions."""
    described = _described(local_json)
    store, audit = _stores(described)
    secret = _client(described, "secretsmanager").get_secret_value(
        SecretId=_one(described, "secrets", "Erp")
    )["SecretString"]
    erp = NetSuiteClient(described["erp_url"], credentials_from_secret_json(secret))
    result = run_reconciliation(store=store, audit=audit, erp=erp, today=datetime.now(UTC).date())
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"reconciled {result['charges']} charge(s) and {result['invoices']} invoice(s): "
        f"{len(result['findings'])} finding(s), {result['new_exceptions']} new exception(s)"
    )
    for finding in result["findings"]:
        bucket = f" [{finding['age_bucket']} days]" if finding["age_bucket"] else ""
        typer.echo(f"  {finding['kind']:<20}{bucket} {finding['message']}")


def report(
    *,
    html: Annotated[Path, typer.Option("--html", help="Where to write the HTML report.")] = Path(
        "report.html"
    ),
    local_json: LocalJson = LOCAL_JSON,
) -> None:
    """Write the HTML report (KPIs, charts by region, invoices with their lineage) of a running stack."""
    store, _audit = _stores(_described(local_json))
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(render_html(collect(store)), encoding="utf-8")
    typer.echo(f"report written to {html}")
