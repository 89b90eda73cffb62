"""``r2r cost``: the AWS cost per 1M approved time entries and per 1,000 invoices, at list prices.

The model multiplies *measured* usage by a *dated* price table:

- each function's memory and architecture come from the synthesized CDK template (``MemorySize``,
  ``Architectures``; the function is named by its ``r2r:source`` folder);
- the usage comes from the month-end spike on the local stack (``infra.bench.spike``): invocations and
  handler time per function, every AWS call made inside a function (DynamoDB capacity from the measured
  item sizes, PutEvents entries, S3 requests), the SQS records each consumer received and what each
  function printed (its CloudWatch Logs ingestion). ``r2r cost --results results.json`` reads it from a
  ``make bench`` result; without one, ``r2r cost`` measures it with a small local spike
  (``FALLBACK_SIZE`` entries) first.

What is modelled rather than measured, and why (each is stated in the output's ``assumptions``):

- SQS: every record a consumer received was one ``SendMessage`` (EventBridge's delivery), and every
  invocation one ``ReceiveMessage`` and one ``DeleteMessageBatch``; idle long polling of the event
  source mappings is a monthly fixed cost, not per entry.
- Lambda duration: locally every AWS call crosses moto over HTTP on a shared machine, so the handlers'
  wall time says little about Lambda's. The billed duration is modelled as the handler's measured CPU
  time plus, for every AWS call it made, a typical in-region latency (``CALL_LATENCY_MS``), plus 300 ms
  per ERP request (the sandbox's setting: timeBill/job/customer requests to the entries, invoice and
  credit memo requests to the invoices). The local wall time is reported beside it as an upper bound.
- CloudWatch Logs: what the functions printed, plus ``PLATFORM_LOG_BYTES`` per invocation (START, END
  and REPORT lines).
- X-Ray: the default sampling rule (1 request a second, then 5 %), taken as 5 % of invocations and API
  requests.
- Secrets Manager and KMS: each function container reads its secret once per 5 minutes (Powertools'
  cache) and refreshes each DynamoDB table key (tables encrypted with the AWS managed key) once per
  5 minutes; containers = the event source mappings' ``MaximumConcurrency``; time = the modelled Lambda
  time at that volume spread over those containers.
- Storage: one month of the DynamoDB items and S3 objects written.

Monthly fixed costs (secrets, KMS keys, alarms, the dashboard, custom metrics) do not depend on volume and
are listed apart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

PRICES_AS_OF = date(2026, 11, 26)
PRICE_REGION = "us-east-1"


@dataclass(frozen=True)
class Price:
    usd: Decimal
    per: int
    unit: str


# AWS list prices, us-east-1, on PRICES_AS_OF (pay as you go, no free tier, no savings plans).
PRICES: dict[str, Price] = {
    "lambda_gb_second_arm64": Price(Decimal("0.0000133334"), 1, "GB-second (arm64)"),
    "lambda_gb_second_x86_64": Price(Decimal("0.0000166667"), 1, "GB-second (x86_64)"),
    "lambda_requests": Price(Decimal("0.20"), 1_000_000, "requests"),
    "sqs_requests": Price(Decimal("0.40"), 1_000_000, "standard queue requests (64 KB chunks)"),
    "eventbridge_events": Price(Decimal("1.00"), 1_000_000, "custom events published"),
    "dynamodb_wru": Price(Decimal("0.625"), 1_000_000, "on-demand write request units"),
    "dynamodb_rru": Price(Decimal("0.125"), 1_000_000, "on-demand read request units"),
    "dynamodb_storage": Price(Decimal("0.25"), 1, "GB-month"),
    "s3_put": Price(Decimal("0.005"), 1_000, "PUT, COPY, POST, LIST requests"),
    "s3_get": Price(Decimal("0.0004"), 1_000, "GET and other requests"),
    "s3_storage": Price(Decimal("0.023"), 1, "GB-month (Standard)"),
    "sfn_transitions": Price(Decimal("0.025"), 1_000, "Standard workflow state transitions"),
    "apigw_rest_requests": Price(Decimal("3.50"), 1_000_000, "REST API requests"),
    "logs_ingestion": Price(Decimal("0.50"), 1, "GB ingested (Standard)"),
    "kms_requests": Price(Decimal("0.03"), 10_000, "requests"),
    "secrets_api_calls": Price(Decimal("0.05"), 10_000, "API calls"),
    "xray_traces": Price(Decimal("5.00"), 1_000_000, "traces recorded"),
    "firehose_ingestion": Price(
        Decimal("0.029"), 1, "GB ingested (Direct PUT; each record rounded up to 5 KB)"
    ),
    "firehose_partitioning": Price(Decimal("0.020"), 1, "GB processed by dynamic partitioning"),
}
MONTHLY_PRICES: dict[str, Price] = {
    "secret": Price(Decimal("0.40"), 1, "secret-month"),
    "kms_key": Price(Decimal("1.00"), 1, "customer managed key-month"),
    "alarm": Price(Decimal("0.10"), 1, "standard alarm metric-month"),
    "dashboard": Price(Decimal("3.00"), 1, "dashboard-month"),
}

SERVICES = (
    "Lambda",
    "SQS",
    "EventBridge",
    "DynamoDB",
    "S3",
    "Step Functions",
    "API Gateway",
    "CloudWatch Logs",
    "KMS",
    "Secrets Manager",
    "X-Ray",
    "Firehose",
)
TARGET_PER_MILLION_ENTRIES = Decimal("5.00")
ENTRY_FUNCTIONS = ("file_intake", "time_posting", "billing_period_close")
INVOICE_FUNCTIONS = ("ingest_webhook", "milestone_trigger", "invoice_workflow")
PLATFORM_LOG_BYTES = 350
# Typical in-region latency of one call, per service (ms): what a handler waits for besides its CPU.
CALL_LATENCY_MS = {
    "dynamodb": Decimal(6),
    "events": Decimal(20),
    "s3": Decimal(25),
    "sqs": Decimal(10),
    "stepfunctions": Decimal(25),
    "secretsmanager": Decimal(25),
    "sns": Decimal(20),
}
ERP_LATENCY_MS = Decimal(300)
ENTRY_ERP_RECORDS = ("timeBill", "customer", "job", "employee")
XRAY_SAMPLED = Decimal("0.05")
# Firehose bills Direct PUT ingestion per record rounded up to 5 KB; an r2r event is 1-3 KB.
FIREHOSE_RECORD_KB = Decimal(5)
EVENT_BYTES_FALLBACK = 2048  # per published event, when a result predates measured event sizes
SECRET_CACHE_S = 300
DYNAMODB_TABLES = 3
FALLBACK_SIZE, FALLBACK_PROJECTS, FALLBACK_MILESTONES = 200, 10, 5
GB = Decimal(10**9)


def cost_of(price_key: str, quantity: Decimal) -> Decimal:
    price = PRICES[price_key]
    return quantity * price.usd / price.per


@dataclass(frozen=True)
class FunctionSetting:
    memory_mb: int
    architecture: str  # "arm64" | "x86_64"
    max_concurrency: int | None  # of its event source mapping, if any


def function_settings(template: Mapping[str, Any]) -> dict[str, FunctionSetting]:
    """Memory, architecture and event source mapping concurrency per function folder, from the template."""
    resources = template.get("Resources", {})
    concurrency: dict[str, int] = {}
    for resource in resources.values():
        if resource.get("Type") == "AWS::Lambda::EventSourceMapping":
            props = resource.get("Properties", {})
            target = props.get("FunctionName")
            logical = target.get("Ref") if isinstance(target, dict) else None
            limit = (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
            if logical and limit:
                concurrency[logical] = int(limit)
    settings: dict[str, FunctionSetting] = {}
    for logical, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        source = (resource.get("Metadata") or {}).get("r2r:source")
        if not source:
            continue
        props = resource.get("Properties", {})
        settings[Path(str(source)).name] = FunctionSetting(
            memory_mb=int(props.get("MemorySize", 128)),
            architecture=(props.get("Architectures") or ["x86_64"])[0],
            max_concurrency=concurrency.get(logical),
        )
    return settings


def monthly_fixed(template: Mapping[str, Any]) -> dict[str, Decimal]:
    """Volume-independent monthly costs of what the template creates."""
    counts: dict[str, int] = {"secret": 0, "kms_key": 0, "alarm": 0, "dashboard": 0}
    kinds = {
        "AWS::SecretsManager::Secret": "secret",
        "AWS::KMS::Key": "kms_key",
        "AWS::CloudWatch::Alarm": "alarm",
        "AWS::CloudWatch::Dashboard": "dashboard",
    }
    for resource in template.get("Resources", {}).values():
        kind = kinds.get(resource.get("Type", ""))
        if kind:
            counts[kind] += 1
    return {kind: n * MONTHLY_PRICES[kind].usd for kind, n in counts.items()}


@dataclass
class Usage:
    """Usage of AWS by ``units`` units of work (entries or invoices); every quantity for all of them."""

    units: Decimal
    lambda_invocations: dict[str, Decimal] = field(default_factory=dict)
    lambda_seconds: dict[str, Decimal] = field(default_factory=dict)  # billed duration, modelled
    local_wall_seconds: dict[str, Decimal] = field(default_factory=dict)  # measured here: an upper bound
    sqs_requests: Decimal = Decimal(0)
    eventbridge_events: Decimal = Decimal(0)
    dynamodb_wru: Decimal = Decimal(0)
    dynamodb_rru: Decimal = Decimal(0)
    dynamodb_gb: Decimal = Decimal(0)
    s3_puts: Decimal = Decimal(0)
    s3_gets: Decimal = Decimal(0)
    s3_gb: Decimal = Decimal(0)
    sfn_transitions: Decimal = Decimal(0)
    api_requests: Decimal = Decimal(0)
    log_gb: Decimal = Decimal(0)
    kms_requests: Decimal = Decimal(0)
    secrets_calls: Decimal = Decimal(0)
    xray_traces: Decimal = Decimal(0)
    firehose_records: Decimal = Decimal(0)  # the analytics feed: every canonical event published
    firehose_gb: Decimal = Decimal(0)


def breakdown(usage: Usage, settings: Mapping[str, FunctionSetting], per: Decimal) -> dict[str, Decimal]:
    """Cost in USD per service for ``per`` units of work (exact Decimals, not rounded)."""
    if usage.units <= 0:
        raise ValueError("usage must cover at least one unit of work")
    scale = per / usage.units
    lambda_cost = Decimal(0)
    for folder, invocations in usage.lambda_invocations.items():
        setting = settings.get(folder)
        if setting is None:
            raise KeyError(f"function {folder} is not in the template")
        gb_seconds = usage.lambda_seconds.get(folder, Decimal(0)) * Decimal(setting.memory_mb) / Decimal(1024)
        lambda_cost += cost_of(f"lambda_gb_second_{setting.architecture}", gb_seconds)
        lambda_cost += cost_of("lambda_requests", invocations)
    costs = {
        "Lambda": lambda_cost,
        "SQS": cost_of("sqs_requests", usage.sqs_requests),
        "EventBridge": cost_of("eventbridge_events", usage.eventbridge_events),
        "DynamoDB": cost_of("dynamodb_wru", usage.dynamodb_wru)
        + cost_of("dynamodb_rru", usage.dynamodb_rru)
        + cost_of("dynamodb_storage", usage.dynamodb_gb),
        "S3": cost_of("s3_put", usage.s3_puts)
        + cost_of("s3_get", usage.s3_gets)
        + cost_of("s3_storage", usage.s3_gb),
        "Step Functions": cost_of("sfn_transitions", usage.sfn_transitions),
        "API Gateway": cost_of("apigw_rest_requests", usage.api_requests),
        "CloudWatch Logs": cost_of("logs_ingestion", usage.log_gb),
        "KMS": cost_of("kms_requests", usage.kms_requests),
        "Secrets Manager": cost_of("secrets_api_calls", usage.secrets_calls),
        "X-Ray": cost_of("xray_traces", usage.xray_traces),
        "Firehose": cost_of("firehose_ingestion", usage.firehose_records * FIREHOSE_RECORD_KB * 1024 / GB)
        + cost_of("firehose_partitioning", usage.firehose_gb),
    }
    return {service: costs[service] * scale for service in SERVICES}


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# -- usage from a measured spike ------------------------------------------------------------------


def _d(value: Any) -> Decimal:
    return Decimal(str(value or 0))


def _add_calls(usage: Usage, measured: Mapping[str, Any], folders: tuple[str, ...]) -> None:
    """The AWS calls the functions made: capacity, events, requests, and the latency they add."""
    for key, count in measured.get("calls", {}).items():
        folder, _, call = key.partition(" ")
        if folder not in folders:
            continue
        service = call.partition(":")[0]
        usage.lambda_seconds[folder] = (
            usage.lambda_seconds.get(folder, Decimal(0))
            + _d(count) * CALL_LATENCY_MS.get(service, Decimal(20)) / 1000
        )
        units_used = _d(measured.get("units", {}).get(key))
        if call in {
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
        }:
            usage.dynamodb_wru += units_used
        elif call.startswith("dynamodb:"):
            usage.dynamodb_rru += units_used
        elif call == "events:PutEvents":
            # Every canonical event also reaches the analytics feed (the rule on source r2r → Firehose).
            events_published = _d(measured.get("items", {}).get(key))
            usage.eventbridge_events += events_published
            usage.firehose_records += events_published
            event_bytes = measured.get("event_bytes", {}).get(key)
            usage.firehose_gb += (
                _d(event_bytes) if event_bytes is not None else events_published * EVENT_BYTES_FALLBACK
            ) / GB
        elif call == "s3:PutObject":
            usage.s3_puts += _d(count)
        elif call in {"s3:GetObject", "s3:HeadObject"}:
            usage.s3_gets += _d(count)


def usage_from_spike(
    summary: Mapping[str, Any],
    settings: Mapping[str, FunctionSetting],
    *,
    kind: str,
    states_per_execution: int,
    scale_to: Decimal,
) -> Usage:
    """The usage of the entries (``kind="entries"``) or of the invoices (``"invoices"``) of one spike.

    ``scale_to`` is the volume the time-based parts (secret and table-key refreshes) are scaled to.
    """
    measured = summary["usage"]
    folders = ENTRY_FUNCTIONS if kind == "entries" else INVOICE_FUNCTIONS
    units = _d(summary["entries"] if kind == "entries" else summary["milestones"])
    usage = Usage(units=units)
    invocations = measured.get("invocations", {})
    records = measured.get("records", {})
    for folder in folders:
        if invocations.get(folder):
            usage.lambda_invocations[folder] = _d(invocations[folder])
            usage.lambda_seconds[folder] = _d(measured.get("cpu_seconds", {}).get(folder))
            usage.local_wall_seconds[folder] = _d(measured.get("seconds", {}).get(folder))
            if records.get(folder):
                usage.sqs_requests += _d(records[folder]) + 2 * _d(invocations[folder])
    _add_calls(usage, measured, folders)
    usage.dynamodb_gb = sum((_d(measured.get("bytes_written", {}).get(f)) for f in folders), Decimal(0)) / GB
    log_bytes = sum(
        (
            _d(measured.get("log_bytes", {}).get(f)) + PLATFORM_LOG_BYTES * _d(invocations.get(f))
            for f in folders
        ),
        Decimal(0),
    )
    usage.log_gb = log_bytes / GB
    erp_requests = sum(
        (
            _d(n)
            for record_type, n in (summary.get("erp_by_record_type") or {}).items()
            if (record_type in ENTRY_ERP_RECORDS) == (kind == "entries")
        ),
        Decimal(0),
    )
    erp_caller = "invoice_workflow"
    if kind == "entries":
        erp_caller = "time_posting" if summary.get("posting_mode") == "detail" else "billing_period_close"
    if erp_requests and erp_caller in usage.lambda_seconds:
        usage.lambda_seconds[erp_caller] += erp_requests * ERP_LATENCY_MS / 1000
    invocation_total = sum(usage.lambda_invocations.values(), Decimal(0))
    if kind == "entries":
        usage.s3_puts += _d(summary.get("files", 0))  # the timesheet files dropped by the PSA
        usage.s3_gb = _d(summary.get("file_bytes", 0)) / GB
    else:
        usage.api_requests = _d(summary.get("webhooks", 0))
        usage.sfn_transitions = units * states_per_execution
    usage.xray_traces = (invocation_total + usage.api_requests) * XRAY_SAMPLED
    # Secret reads and table-key refreshes: per container and 5 minutes of processing at this volume;
    # the processing time is the modelled Lambda time spread over the containers (the local wall time
    # on a shared machine would say more about the machine than about Lambda).
    containers = Decimal(
        sum((settings[f].max_concurrency or 1) for f in usage.lambda_invocations if f in settings) or 1
    )
    scaled_s = sum(usage.lambda_seconds.values(), Decimal(0)) * scale_to / units / containers
    windows = Decimal(max(1, math.ceil(scaled_s / SECRET_CACHE_S)))
    usage.secrets_calls = containers * windows * usage.units / scale_to
    usage.kms_requests = usage.secrets_calls * (1 + DYNAMODB_TABLES)
    return usage


def measured_spikes(document: Any) -> list[dict[str, Any]]:
    """Every measured spike summary (figure ``detail`` with ``usage``) in a bench result document."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            detail = node.get("detail")
            if (
                node.get("section") == "spike"
                and isinstance(detail, dict)
                and detail.get("measured")
                and "usage" in detail
                and not detail.get("flood_records")
            ):
                found.append(detail)
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return found


@dataclass
class CostReport:
    per_million_entries: dict[str, Decimal]
    upper_bound_per_million_entries: Decimal  # with Lambda billed for the local wall time
    per_thousand_invoices: dict[str, Decimal]
    monthly_fixed: dict[str, Decimal]
    source: str
    entries_measured: int
    invoices_measured: int

    @property
    def total_per_million_entries(self) -> Decimal:
        return sum(self.per_million_entries.values(), Decimal(0))

    @property
    def total_per_thousand_invoices(self) -> Decimal:
        return sum(self.per_thousand_invoices.values(), Decimal(0))

    def as_json(self) -> dict[str, Any]:
        return {
            "prices_as_of": PRICES_AS_OF.isoformat(),
            "region": PRICE_REGION,
            "source": self.source,
            "entries_measured": self.entries_measured,
            "invoices_measured": self.invoices_measured,
            "per_1m_entries_usd": {k: str(cents(v)) for k, v in self.per_million_entries.items()},
            "per_1m_entries_total_usd": str(cents(self.total_per_million_entries)),
            "per_1m_entries_total_usd_with_local_wall_time": str(cents(self.upper_bound_per_million_entries)),
            "per_1000_invoices_usd": {k: str(cents(v)) for k, v in self.per_thousand_invoices.items()},
            "per_1000_invoices_total_usd": str(cents(self.total_per_thousand_invoices)),
            "monthly_fixed_usd": {k: str(cents(v)) for k, v in self.monthly_fixed.items()},
            "target_per_1m_entries_usd": str(TARGET_PER_MILLION_ENTRIES),
            "assumptions": __doc__.split("What is modelled rather than measured", 1)[1].strip()
            if __doc__
            else "",
        }


def cost_report(
    template: Mapping[str, Any], summary: Mapping[str, Any], states_per_execution: int, source: str
) -> CostReport:
    settings = function_settings(template)
    million, thousand = Decimal(1_000_000), Decimal(1_000)
    entries = usage_from_spike(
        summary, settings, kind="entries", states_per_execution=states_per_execution, scale_to=million
    )
    invoices = usage_from_spike(
        summary, settings, kind="invoices", states_per_execution=states_per_execution, scale_to=thousand
    )
    wall = replace(entries, lambda_seconds=dict(entries.local_wall_seconds))
    return CostReport(
        per_million_entries=breakdown(entries, settings, million),
        upper_bound_per_million_entries=sum(breakdown(wall, settings, million).values(), Decimal(0)),
        per_thousand_invoices=breakdown(invoices, settings, thousand),
        monthly_fixed=monthly_fixed(template),
        source=source,
        entries_measured=int(summary["entries"]),
        invoices_measured=int(summary["milestones"]),
    )


def states_per_execution(repo_root: Path) -> int:
    """State transitions of one milestone-to-invoice run: one per state of the definition (no retries)."""
    definition = json.loads(
        (repo_root / "infra" / "statemachines" / "milestone_to_invoice.asl.json").read_text()
    )
    return len(definition["States"])


def largest(summaries: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    return max(summaries, key=lambda s: int(s["entries"]), default=None)


def measure_fallback(repo_root: Path) -> dict[str, Any]:
    """A small local spike (``FALLBACK_SIZE`` entries) when no bench result is given."""
    from infra.bench.spike import run_spike

    return run_spike(
        repo_root, size=FALLBACK_SIZE, projects=FALLBACK_PROJECTS, milestones=FALLBACK_MILESTONES
    ).summary()


def render(report: CostReport) -> str:
    lines = [
        f"AWS cost at list prices ({PRICE_REGION}, prices as of {PRICES_AS_OF.isoformat()})",
        f"usage measured by: {report.source}",
        f"{'service':<18}{'per 1M entries':>16}{'per 1,000 invoices':>20}",
    ]
    for service in SERVICES:
        lines.append(
            f"{service:<18}{'$' + str(cents(report.per_million_entries[service])):>16}"
            f"{'$' + str(cents(report.per_thousand_invoices[service])):>20}"
        )
    lines.append(
        f"{'total':<18}{'$' + str(cents(report.total_per_million_entries)):>16}"
        f"{'$' + str(cents(report.total_per_thousand_invoices)):>20}"
    )
    lines.append(
        f"(with Lambda billed for the local wall time instead, an upper bound: "
        f"${cents(report.upper_bound_per_million_entries)} per 1M entries)"
    )
    verdict = "meets" if report.total_per_million_entries < TARGET_PER_MILLION_ENTRIES else "MISSES"
    lines.append(f"target: under ${TARGET_PER_MILLION_ENTRIES} per 1M entries — {verdict} it")
    fixed = ", ".join(f"{k} ${cents(v)}" for k, v in report.monthly_fixed.items())
    lines.append(f"monthly fixed (any volume): {fixed}")
    return "\n".join(lines)


def cost(
    results: Annotated[
        Path | None, typer.Option(help="A `make bench` results JSON holding a measured spike.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """AWS cost per 1M approved time entries and per 1,000 invoices, from the CDK settings and measured usage.

    Without --results, a small spike on the local stack is measured first (a few minutes).
    """
    from infra.local.stack import find_repo_root
    from infra.synth import ensure_synthesized

    repo_root = find_repo_root()
    template = json.loads(ensure_synthesized().read_text(encoding="utf-8"))
    if results is not None:
        summary = largest(measured_spikes(json.loads(results.read_text(encoding="utf-8"))))
        if summary is None:
            raise typer.BadParameter(
                f"{results} holds no measured spike; run `make bench`", param_hint="--results"
            )
        source = f"{results} (spike of {summary['entries']} entries)"
    else:
        typer.echo(f"measuring a {FALLBACK_SIZE}-entry spike on the local stack …", err=True)
        summary = measure_fallback(repo_root)
        source = f"a local spike of {FALLBACK_SIZE} entries measured now"
    report = cost_report(template, summary, states_per_execution(repo_root), source)
    typer.echo(json.dumps(report.as_json(), indent=2) if as_json else render(report))
