"""billing_period_close flushes as many periods at a time as its ERP share allows."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from r2r_core.runtime import use_environ

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "billing_period_close" / "handler.py"


def _handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("billing_period_close_handler", HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flush_workers_follow_the_functions_erp_share() -> None:
    handler = _handler()
    with use_environ({"ERP_CONCURRENCY_SHARE": "5"}):
        assert handler.flush_workers() == 5
    with use_environ({"ERP_CONCURRENCY_SHARE": "0"}):
        assert handler.flush_workers() == 1
    with use_environ({}):  # an older template without the variable: the previous two
        assert handler.flush_workers() == handler.DEFAULT_FLUSH_WORKERS == 2
