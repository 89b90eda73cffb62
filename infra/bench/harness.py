"""Run the benchmark sections, then write ``results.json`` and ``results.md`` and print the table."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.bench.figures import BenchContext, Figure

SECTIONS = ("coldstart", "throughput", "erp_volume", "spike", "cost")
NOT_AVAILABLE = "not available"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT_DIR = REPO_ROOT / ".r2r" / "bench"


def run_sections(ctx: BenchContext, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each section in order: its status (ok, not available, error) and how long it took.

    Figures land in ``ctx.results`` under their :attr:`Figure.section`, so a later section (the cost
    model) can read what an earlier one measured with :meth:`BenchContext.figure`.
    """
    status: dict[str, dict[str, Any]] = {}
    for name in names:
        module_name = f"{__package__}.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # the section is there but something it imports is not
                status[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
                continue
            status[name] = {"status": NOT_AVAILABLE}
            print(f"bench: section {name}: {NOT_AVAILABLE} (no module {module_name})", file=sys.stderr)
            continue
        print(f"bench: section {name} …", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            found = list(module.run(ctx))
        except Exception as exc:
            status[name] = {
                "status": "error",
                "seconds": round(time.monotonic() - started, 1),
                "error": f"{type(exc).__name__}: {exc}",
            }
            traceback.print_exc()
            continue
        for figure in found:
            ctx.results.setdefault(figure.section, []).append(figure)
        status[name] = {
            "status": "ok",
            "seconds": round(time.monotonic() - started, 1),
            "figures": len(found),
        }
    return status


def all_figures(ctx: BenchContext) -> list[Figure]:
    return [figure for figures in ctx.results.values() for figure in figures]


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith(("model name", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "architecture": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def git_commit(root: Path) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        commit = subprocess.run(  # noqa: S603 — git, fixed arguments
            [git, "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603
            [git, "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def results_document(
    ctx: BenchContext, status: dict[str, dict[str, Any]], started: datetime, seconds: float
) -> dict[str, Any]:
    return {
        "date": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "git_commit": git_commit(ctx.repo_root),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "machine": machine(),
        "quick": ctx.quick,
        "sections": status,
        "figures": [figure.as_json() for figure in all_figures(ctx)],
    }


def format_value(value: float) -> str:
    if not math.isfinite(value):  # e.g. a ratio to a floor of zero (no ERP request was made)
        return "n/a" if math.isnan(value) else ("∞" if value > 0 else "-∞")
    if value == int(value) and abs(value) >= 1000:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if value == 0 or abs(value) >= 0.01:
        return f"{value:.2f}"
    return f"{value:.2g}"


def format_target(figure: Figure) -> str:
    if figure.target is None:
        return ""
    return ("≤ " if figure.better == "lower" else "≥ ") + format_value(figure.target)


def format_ok(figure: Figure) -> str:
    return {True: "yes", False: "NO", None: ""}[figure.ok]


def table_rows(figures: Sequence[Figure]) -> list[tuple[str, str, str, str, str, str]]:
    return [
        (f.section, f.name, format_value(f.value), f.unit, format_target(f), format_ok(f)) for f in figures
    ]


HEADER = ("section", "figure", "value", "unit", "target", "ok")


def markdown_table(figures: Sequence[Figure]) -> str:
    """The table for the README: one row per figure."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADER) + " |", "| --- | --- | ---: | --- | --- | --- |"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table_rows(figures)]
    return "\n".join(lines) + "\n"


def markdown_document(document: dict[str, Any], figures: Sequence[Figure]) -> str:
    host = document["machine"]
    commit = document.get("git_commit") or "unknown"
    commit = commit[:12] + (" with uncommitted changes" if commit.endswith("+dirty") else "")
    header = (
        f"`make bench`{' --quick' if document['quick'] else ''} on {document['date']} (commit {commit}): "
        f"{host['cpus']} × {host['cpu'] or host['architecture']}, Python {document['python']['version']}."
    )
    missing = [name for name, s in document["sections"].items() if s["status"] != "ok"]
    notes = "".join(f"\nSection `{name}`: {document['sections'][name]['status']}." for name in missing)
    return f"{header}{notes}\n\n{markdown_table(figures)}"


def print_table(figures: Sequence[Figure], status: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="r2r benchmark")
    for column in HEADER:
        table.add_column(column, justify="right" if column == "value" else "left")
    for figure, row in zip(figures, table_rows(figures), strict=True):
        style = {True: "green", False: "red", None: ""}[figure.ok]
        table.add_row(*row[:-1], f"[{style}]{row[-1]}[/]" if style else row[-1])
    console = Console()
    console.print(table)
    for name, s in status.items():
        if s["status"] != "ok":
            console.print(f"section {name}: {s['status']}" + (f" — {s['error']}" if "error" in s else ""))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m infra.bench", description="r2r measured against its performance targets."
    )
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this section (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes: a smoke run")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where results.json/.md go")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """0 when every section that exists ran (a missed target is a result, not a failure)."""
    args = parse_args(argv)
    names = [name for name in SECTIONS if not args.only or name in args.only]
    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = BenchContext(repo_root=REPO_ROOT, out_dir=out_dir, quick=args.quick, repeats=3 if args.quick else 5)
    started, clock = datetime.now(UTC), time.monotonic()
    status = run_sections(ctx, names)
    document = results_document(ctx, status, started, time.monotonic() - clock)
    figures = all_figures(ctx)
    (out_dir / "results.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (out_dir / "results.md").write_text(markdown_document(document, figures), encoding="utf-8")
    print_table(figures, status)
    print(f"results: {out_dir / 'results.json'} and {out_dir / 'results.md'}")
    return 1 if any(s["status"] == "error" for s in status.values()) else 0
