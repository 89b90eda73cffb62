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
    console.print(
        "  r2r local run events/scenarios/sold-to-billed   # in another terminal: its own stack", markup=False
    )
    console.print("Ctrl-C stops everything.", style="dim")


def print_report(console: Console, report: dict[str, Any]) -> None:
    """The summary of ``r2r local run``."""
    deliveries = Table(title="Deliveries")
    for column in ("file", "source", "webhook-id", "status", "expected", "drain s"):
        deliveries.add_column(column)
    for delivery in report["deliveries"]:
        expected = delivery["expected"]
        deliveries.add_row(
            escape(delivery["file"]),
            escape(delivery["source"]),
            escape(delivery["webhook_id"]),
            f"[{_status_style(delivery['ok'])}]{delivery['status']}[/]",
            ", ".join(str(e) for e in expected) if isinstance(expected, list) else str(expected),
            "-" if delivery.get("drain_s") is None else f"{delivery['drain_s']:.2f}",
        )
    console.print(deliveries)

    records = report["erp"]["records"]
    erp = Table(title="ERP records")
    erp.add_column("type")
    erp.add_column("count", justify="right")
    erp.add_column("external ids")
    for record_type, items in sorted(records.items()):
        if not items:
            continue
        external_ids = [str(r.get("externalId")) for r in items if r.get("externalId")]
        shown = ", ".join(external_ids[:4]) + (
            f" (+{len(external_ids) - 4})" if len(external_ids) > 4 else ""
        )
        erp.add_row(escape(record_type), str(len(items)), escape(shown))
    if not any(records.values()):
        erp.add_row("(none)", "0", "")
    console.print(erp)

    for invoice in report["invoices"]:
        lines = Table(
            title=escape(
                f"Invoice {invoice.get('externalId') or invoice.get('id')} "
                f"(entity {invoice.get('entity')}, {invoice.get('currency') or 'currency n/a'})"
            )
        )
        lines.add_column("description")
        lines.add_column("quantity", justify="right")
        lines.add_column("rate", justify="right")
        lines.add_column("amount", justify="right")
        for line in invoice["lines"]:
            lines.add_row(
                escape(str(line.get("description") or line.get("item") or "")),
                escape(str(line.get("quantity") or "")),
                escape(str(line.get("rate") or "")),
                escape(str(line.get("amount") or "")),
            )
        lines.add_section()
        lines.add_row("[bold]total[/]", "", "", f"[bold]{escape(str(invoice['total']))}[/]")
        console.print(lines)

    exceptions = Table(title="Exceptions for finance", min_width=40)
    exceptions.add_column("pk")
    exceptions.add_column("detail")
    for item in report["exceptions"]:
        rest = {k: v for k, v in item.items() if k not in ("pk", "sk")}
        text = json.dumps(rest, default=str)
        exceptions.add_row(
            escape(str(item.get("pk"))), escape(text if len(text) <= 160 else text[:157] + "...")
        )
    if not report["exceptions"]:
        exceptions.add_row("(none)", "")
    console.print(exceptions)

    dlqs = Table(title="Dead-letter queues")
    dlqs.add_column("queue")
    dlqs.add_column("messages", justify="right")
    for queue, depth in sorted(report["dlq_depths"].items()):
        dlqs.add_row(escape(queue), f"[{_status_style(depth == 0)}]{depth}[/]")
    console.print(dlqs)

    if report.get("drain_error"):
        console.print(f"drain timed out {report['drain_error']}", style="bold red", markup=False)
    verdict = "[green]OK[/]" if report["ok"] else "[bold red]FAILED[/]"
    console.print(f"{verdict} in {report['duration_s']:.1f} s")
