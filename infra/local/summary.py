"""Human summaries of the local stack on the terminal (rich)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _status_style(ok: bool) -> str:
    return "green" if ok else "bold red"


def print_up(console: Console, description: dict[str, Any], startup_s: float) -> None:
    """What ``r2r local up`` prints once everything listens."""
    endpoint = description["aws_endpoint_url"]
    table = Table(
        title=f"r2r local stack ({description['stack']}) up in {startup_s:.1f} s", show_header=False
    )
    table.add_column("what", style="bold")
    table.add_column("where")
    table.add_row("API", description["api_url"] or "(no API in the template)")
    table.add_row("AWS endpoint", endpoint)
    table.add_row("ERP sandbox", description["erp_url"] or "(not started)")
    if description.get("salesforce_url"):
        table.add_row("Salesforce sandbox", description["salesforce_url"])
    if description.get("kantata_url"):
        table.add_row("Kantata sandbox", description["kantata_url"])
    table.add_row("region", description["region"])
    for queue in description["queues"].values():
        table.add_row("DLQ" if queue["dlq"] else "queue", queue["name"])
    for logical_id, bus in description["buses"].items():
        table.add_row("bus", bus if logical_id != "default" else "default")
    for table_name in description["tables"].values():
        table.add_row("table", table_name)
    for bucket in description["buckets"].values():
        table.add_row("bucket", bucket)
    for arn in description["state_machines"].values():
        table.add_row("state machine", arn)
    for arn in description.get("kms_keys", {}).values():
        table.add_row("KMS key", arn)
    operator_api = description.get("operator_api") or {}
    if operator_api.get("url"):
        roles = ", ".join(
            f"{label} ({r.get('access_key_id', 'no local key')})"
            for label, r in operator_api["roles"].items()
        )
        table.add_row("operator API (SigV4)", f"{operator_api['url']}  {roles}")
    console.print(table)
    api = description["api_url"]
    console.print("Try:", style="bold")
    console.print(
        f"  aws --endpoint-url {endpoint} --region {description['region']} sqs list-queues", markup=False
    )
    console.print(
        f"  aws --endpoint-url {endpoint} --region {description['region']} stepfunctions list-executions "
        f"--state-machine-arn {description['state_machine_arn']}",
        markup=False,
    )
    if api:
        console.print(
            f"  curl -i -X POST {api}v1/webhooks/crm -H 'content-type: application/json' -d '{{}}'"
            "   # unsigned: 401",
            markup=False,
        )
    if description["erp_url"]:
        console.print(f"  curl {description['erp_url']}/_sandbox/records", markup=False)
    if description.get("kantata_url"):
        root = str(description["kantata_url"]).removesuffix("/api/v1")
        console.print(f"  curl {root}/_sandbox/records   # then: r2r local tick kantata_poller", markup=False)
    console.print(
        "  r2r local run events/scenarios/sold-to-billed   # in another terminal: its own stack", markup=False
    )
    console.print("Ctrl-C stops everything.", style="dim")


def print_report(console: Console, report: dict[str, Any]) -> None:
    """The summary of ``r2r local run``."""
    console.print(_deliveries(report["deliveries"]))
    console.print(_erp(report["erp"]["records"]))
    for invoice in report["invoices"]:
        console.print(_invoice(invoice))
    for system, objects in (report.get("saas") or {}).items():
        if objects:
            console.print(_saas(system, objects))
    console.print(_exceptions(report["exceptions"]))
    console.print(_dlqs(report["dlq_depths"]))
    if report.get("drain_error"):
        console.print(f"drain timed out {report['drain_error']}", style="bold red", markup=False)
    verdict = "[green]OK[/]" if report["ok"] else "[bold red]FAILED[/]"
    console.print(f"{verdict} in {report['duration_s']:.1f} s")


def _drain(entry: dict[str, Any]) -> str:
    return "-" if entry.get("drain_s") is None else f"{entry['drain_s']:.2f}"


def _deliveries(entries: list[dict[str, Any]]) -> Table:
    table = Table(title="Deliveries")
    for column in ("file", "source", "webhook-id", "status", "expected", "drain s"):
        table.add_column(column)
    for entry in entries:
        style = _status_style(entry["ok"])
        if entry.get("kind") == "tick":
            table.add_row(
                escape(entry["file"]),
                "tick",
                escape(entry["schedule"]),
                f"[{style}]{entry['targets']} target(s)[/]",
                "",
                _drain(entry),
            )
            continue
        if entry.get("kind") == "kantata":
            seeded = ", ".join(f"{len(ids)} {name}" for name, ids in entry["seeded"].items())
            linked = entry.get("linked") or {}
            link = f"; workspace {linked['workspace_id']} → {linked['engagement_id']}" if linked else ""
            table.add_row(
                escape(entry["file"]),
                "kantata",
                escape(f"seeded {seeded or 'nothing'}{link}"),
                "",
                "",
                _drain(entry),
            )
            continue
        expected = entry["expected"]
        table.add_row(
            escape(entry["file"]),
            escape(entry["source"]),
            escape(entry["webhook_id"]),
            f"[{style}]{entry['status']}[/]",
            ", ".join(str(e) for e in expected) if isinstance(expected, list) else str(expected),
            _drain(entry),
        )
    return table


def _erp(records: dict[str, list[dict[str, Any]]]) -> Table:
    table = Table(title="ERP records")
    table.add_column("type")
    table.add_column("count", justify="right")
    table.add_column("external ids")
    for record_type, items in sorted(records.items()):
        if not items:
            continue
        external_ids = [str(r.get("externalId")) for r in items if r.get("externalId")]
        more = f" (+{len(external_ids) - 4})" if len(external_ids) > 4 else ""
        table.add_row(escape(record_type), str(len(items)), escape(", ".join(external_ids[:4]) + more))
    if not any(records.values()):
        table.add_row("(none)", "0", "")
    return table


def _invoice(invoice: dict[str, Any]) -> Table:
    table = Table(
        title=escape(
            f"Invoice {invoice.get('externalId') or invoice.get('id')} "
            f"(entity {invoice.get('entity')}, {invoice.get('currency') or 'currency n/a'})"
        )
    )
    table.add_column("description")
    for column in ("quantity", "rate", "amount"):
        table.add_column(column, justify="right")
    for line in invoice["lines"]:
        table.add_row(
            *(
                escape(str(value or ""))
                for value in (
                    line.get("description") or line.get("item"),
                    line.get("quantity"),
                    line.get("rate"),
                    line.get("amount"),
                )
            )
        )
    table.add_section()
    table.add_row("[bold]total[/]", "", "", f"[bold]{escape(str(invoice['total']))}[/]")
    return table


def _saas(system: str, objects: dict[str, list[Any]]) -> Table:
    table = Table(title=f"{system} records")
    table.add_column("object")
    table.add_column("count", justify="right")
    for name, rows in sorted(objects.items()):
        table.add_row(escape(name), str(len(rows)))
    return table


def _exceptions(items: list[dict[str, Any]]) -> Table:
    table = Table(title="Exceptions for finance", min_width=40)
    table.add_column("pk")
    table.add_column("detail")
    for item in items:
        text = json.dumps({k: v for k, v in item.items() if k not in ("pk", "sk")}, default=str)
        table.add_row(escape(str(item.get("pk"))), escape(text if len(text) <= 160 else text[:157] + "..."))
    if not items:
        table.add_row("(none)", "")
    return table


def _dlqs(depths: dict[str, int]) -> Table:
    table = Table(title="Dead-letter queues")
    table.add_column("queue")
    table.add_column("messages", justify="right")
    for queue, depth in sorted(depths.items()):
        table.add_row(escape(queue), f"[{_status_style(depth == 0)}]{depth}[/]")
    return table
