"""Shared test plumbing. AWS credentials are fake everywhere so nothing can reach a real account."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "r2r",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }
)
os.environ.pop("AWS_PROFILE", None)


def load_handler(name: str) -> ModuleType:
    """Import ``functions/<name>/handler.py`` the way the local stack does (unique module name)."""
    module_name = f"r2r_fn_test_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO_ROOT / "functions" / name / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


def create_state_and_audit_tables(ddb: Any) -> None:
    """The ``state`` and ``audit`` tables (``pk``/``sk``, on demand) as the stack defines them, in moto."""
    for name in ("state", "audit"):
        ddb.create_table(
            TableName=name,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )


# ---- figures a test reports at the end of the run (``make test`` prints them) -------------------------
# A test calls ``report_figures(title, lines)``; under xdist each worker hands its figures to the
# controller (``workeroutput``), which prints them all in the terminal summary.
FIGURES: list[dict[str, Any]] = []


def report_figures(title: str, lines: list[str]) -> None:
    FIGURES.append({"title": title, "lines": lines})


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["r2r_figures"] = json.dumps(FIGURES)


def pytest_testnodedown(node: Any, error: Any) -> None:
    FIGURES.extend(json.loads(getattr(node, "workeroutput", {}).get("r2r_figures", "[]")))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for figures in FIGURES:
        terminalreporter.write_sep("-", figures["title"])
        for line in figures["lines"]:
            terminalreporter.write_line(line)
    _recorded_figures(terminalreporter)


def _recorded_figures(terminalreporter: Any) -> None:
    """Figures a test recorded with ``record_property("<name>_figures", json)`` (the chaos test's),
    shown at the end of the run; works with xdist (user properties travel with the reports)."""
    import json

    shown: set[tuple[str, str]] = set()
    for reports in list(terminalreporter.stats.values()):
        for report in reports:
            for name, value in getattr(report, "user_properties", None) or []:
                if not str(name).endswith("_figures") or (report.nodeid, name) in shown:
                    continue
                shown.add((report.nodeid, name))
                terminalreporter.section(f"{name.removesuffix('_figures')} figures")
                terminalreporter.line(report.nodeid)
                try:
                    terminalreporter.line(json.dumps(json.loads(value), indent=2))
                except (TypeError, ValueError):
                    terminalreporter.line(str(value))
