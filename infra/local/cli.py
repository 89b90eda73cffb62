"""``r2r local``: the embedded local stack from the command line (``up``, ``run``, ``tick``)."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import boto3
import typer
from rich.console import Console

from infra.local import config, summary
from infra.local.scenario import ScenarioError
from infra.local.schedules import find_schedule, schedule_from_document, scheduled_event, target_payload
from infra.local.stack import DEFAULT_SCENARIO_DRAIN_S, LocalStack, find_repo_root, write_json
from infra.report import write_stack_report

app = typer.Typer(
    help="Run the synthesized template on an embedded local AWS (moto) with the ERP sandbox.",
    no_args_is_help=True,
)

DEFAULT_PORT_BASE = 4750  # moto 4750, ERP sandbox 4751, API 4752

_Stage = Annotated[str, typer.Option(help="Stage whose template is synthesized and run.")]
_Template = Annotated[
    Path | None,
    typer.Option(help="Run this template instead of synthesizing the CDK app.", hidden=True, exists=True),
]
_Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log every invocation and server request.")]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if verbose:
        for name in ("botocore", "boto3", "urllib3", "s3transfer"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # The core's loggers were created when the CLI was imported, at the CLI's default level.
        for name in list(logging.root.manager.loggerDict):
            if "r2r_core" in name:
                logging.getLogger(name).setLevel(logging.DEBUG)


@app.command()
def up(
    *,
    port_base: Annotated[
        int,
        typer.Option(help="moto listens on N, the ERP sandbox on N+1, the API on N+2; 0 = any free ports."),
    ] = DEFAULT_PORT_BASE,
    stage: _Stage = "dev",
    state_dir: Annotated[Path, typer.Option(help="Where local.json and erp.sqlite live.")] = Path(".r2r"),
    schedules: Annotated[
        bool, typer.Option(help="Tick rate(...) scheduled rules on their period ('r2r local tick' any time).")
    ] = True,
    template: _Template = None,
    verbose: _Verbose = False,
    scenario: Annotated[
        list[Path] | None,
        typer.Option(
            help="Post this scenario's deliveries (as 'run' does) once the stack is up, then keep serving; "
            "repeatable. local.json is written after they ran.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    drain_timeout: Annotated[
        float, typer.Option(help="With --scenario: seconds to wait for the stack to settle per file.")
    ] = DEFAULT_SCENARIO_DRAIN_S,
) -> None:
    """Run the local stack in the foreground until Ctrl-C; describe it in .r2r/local.json."""
    _logging(verbose)
    console = Console()
    repo_root = find_repo_root()
    state_dir = state_dir if state_dir.is_absolute() else Path.cwd() / state_dir
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    description_file = state_dir / "local.json"
    try:
        with LocalStack.start(
            repo_root,
            stage=stage,
            erp_db=state_dir / "erp.sqlite",
            template=template,
            port_base=port_base or None,
            quiet=not verbose,
            schedules=schedules,
        ) as stack:
            description = stack.describe()
            for directory in scenario or []:
                _run_in(
                    stack,
                    directory,
                    console=console,
                    metrics=state_dir / "metrics.jsonl",
                    drain_timeout=drain_timeout,
                )
            write_json(description_file, description)
            summary.print_up(console, description, stack.startup_s)
            console.print(f"wrote {description_file}", style="dim", markup=False)
            while not stop.wait(0.2):
                pass
            console.print("stopping...", style="dim")
    finally:
        description_file.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("stopped.")


def _scenario(
    stack: LocalStack, directory: Path, *, metrics: Path, mode: str, drain_timeout: float
) -> dict[str, Any]:
    """``stack.run_scenario``, the handlers' EMF metrics (printed to stdout, as in Lambda) written to
    ``metrics`` (opened with ``mode``) instead of over the summary."""
    metrics.parent.mkdir(parents=True, exist_ok=True)
    with metrics.open(mode, encoding="utf-8") as emf, contextlib.redirect_stdout(emf):
        return stack.run_scenario(directory, drain_timeout=drain_timeout)


def _run_in(
    stack: LocalStack, directory: Path, *, console: Console, metrics: Path, drain_timeout: float
) -> None:
    """Post a scenario's deliveries to the running stack and print what happened (a bad scenario is
    reported and skipped: the stack keeps serving)."""
    console.print(f"running {directory}", style="dim", markup=False)
    try:
        outcome = _scenario(stack, directory, metrics=metrics, mode="a", drain_timeout=drain_timeout)
    except ScenarioError as exc:
        console.print(f"scenario error: {exc}", style="bold red", markup=False)
        return
    summary.print_report(console, outcome)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="Directory of NN-name.json deliveries.", exists=True)],
    *,
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    keep_state: Annotated[
        bool, typer.Option(help="Keep ERP state in .r2r/erp.sqlite instead of a fresh temp file.")
    ] = False,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the stack to settle per file.")
    ] = DEFAULT_SCENARIO_DRAIN_S,
    port_base: Annotated[int, typer.Option(help="As for 'up'; 0 = any free ports.")] = 0,
    stage: _Stage = "dev",
    template: _Template = None,
    verbose: _Verbose = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Write the HTML report (KPIs, charts, invoice lineage) here."),
    ] = None,
    metrics: Annotated[
        Path, typer.Option(help="Where the functions' EMF metric lines go (one JSON document per line).")
    ] = Path(".r2r/metrics.jsonl"),
) -> None:
    """Post a scenario's deliveries in name order, drain after each, and report what happened."""
    _logging(verbose)
    console = Console()
    started = time.monotonic()
    repo_root = find_repo_root()
    try:
        with LocalStack.start(
            repo_root,
            stage=stage,
            erp_db=Path.cwd() / ".r2r" / "erp.sqlite" if keep_state else None,
            template=template,
            port_base=port_base or None,
            quiet=not verbose,
            # Function logs would bury the summary; -v shows them.
            function_log_level=None if verbose else "WARNING",
        ) as stack:
            console.print(
                f"local stack up in {stack.startup_s:.1f} s; running {scenario}", style="dim", markup=False
            )
            outcome = _scenario(stack, scenario, metrics=metrics, mode="w", drain_timeout=drain_timeout)
            if html is not None:
                write_stack_report(stack, html)
    except ScenarioError as exc:
        console.print(f"scenario error: {exc}", style="bold red", markup=False)
        raise typer.Exit(2) from exc
    outcome["startup_s"] = round(stack.startup_s, 3)
    outcome["total_s"] = round(time.monotonic() - started, 3)
    summary.print_report(console, outcome)
    if report is not None:
        write_json(report, outcome)
        console.print(f"report written to {report}", style="dim", markup=False)
    console.print(f"EMF metrics written to {metrics}", style="dim", markup=False)
    if html is not None:
        console.print(f"HTML report written to {html}", style="dim", markup=False)
    if not outcome["ok"]:
        raise typer.Exit(1)


@app.command()
def tick(
    schedule: Annotated[
        str,
        typer.Argument(
            help="Rule logical id (or its start), or the function it feeds, e.g. invoice_status_poller."
        ),
    ],
    *,
    state_dir: Annotated[Path, typer.Option(help="Where the running stack wrote local.json.")] = Path(".r2r"),
) -> None:
    """Fire one tick of a scheduled rule of the stack `r2r local up` is running."""
    console = Console()
    description_file = state_dir / "local.json"
    if not description_file.is_file():
        console.print(
            f"{description_file} not found: is `r2r local up` running here?", style="bold red", markup=False
        )
        raise typer.Exit(2)
    description = json.loads(description_file.read_text(encoding="utf-8"))
    specs = [schedule_from_document(k, v) for k, v in (description.get("schedules") or {}).items()]
    consumers = {
        t["queue_url"] or t["function"]: t["consumer"]
        for v in (description.get("schedules") or {}).values()
        for t in v["targets"]
        if t.get("consumer")
    }
    try:
        spec = find_schedule(specs, schedule, consumers)
    except LookupError as exc:
        console.print(str(exc), style="bold red", markup=False)
        raise typer.Exit(2) from exc
    event = scheduled_event(spec.arn)
    endpoint = description["aws_endpoint_url"]
    for target in spec.targets:
        payload = target_payload(target, event)
        if target.queue_url:
            _client("sqs", endpoint).send_message(QueueUrl=target.queue_url, MessageBody=payload)
        elif target.function_name:
            # moto forwards the invocation to the running stack's functions.
            _client("lambda", endpoint).invoke(
                FunctionName=target.function_name, InvocationType="Event", Payload=payload.encode()
            )
    console.print(
        f"ticked {spec.logical_id} ({spec.expression}): {len(spec.targets)} target(s)", markup=False
    )


def _client(service: str, endpoint: str) -> Any:
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name=config.REGION,
        aws_access_key_id=config.ACCESS_KEY_ID,
        aws_secret_access_key=config.SECRET_ACCESS_KEY,
    )
