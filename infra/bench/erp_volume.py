"""ERP call volume: NetSuite requests per 1,000 approved time entries, detail mode beside summary mode.

The real flows (``project_setup``, ``time_posting``, the period-end flush of ``time_summary``) run in this
process on moto's in-memory DynamoDB and write through the real ``NetSuiteClient`` to the ERP sandbox
(127.0.0.1, TBA-signed); the requests are counted by the sandbox (``/_sandbox/stats``), so retries count
too. The workload is a realistic month (``infra.bench.workload``): per project two roles with three
consultants each, one approved 8 h entry per consultant and working day of October 2026 (132 entries
per project). Project set-up requests are not counted; the time entries' and the period-end flush's are.
The counts are deterministic, so one run per mode is the median.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from infra.bench import workload
from infra.bench.figures import BenchContext, Figure

SECTION = "erp_calls"
TARGET_SUMMARY = 20.0


@contextmanager
def _isolated_aws() -> Iterator[Any]:
    """moto in memory with fake credentials (nothing can reach AWS), restored afterwards."""
    import boto3
    from moto import mock_aws

    from r2r_core.runtime import reset_clients

    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto's dummy credentials
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        with mock_aws():
            reset_clients()
            yield boto3.client("dynamodb", region_name="us-east-1")
            reset_clients()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _tables(ddb: Any) -> None:
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


def count_requests(repo_root: Path, *, mode: str, projects: int) -> dict[str, Any]:
    """Post a month of approved time for ``projects`` projects in ``mode``; the ERP requests it took."""
    from infra.erp_sandbox import ErpSandbox
    from r2r_core.erp import NetSuiteClient
    from r2r_core.erp.mapping import ErpMapping
    from r2r_core.flows.project_setup import set_up_project
    from r2r_core.flows.time_posting import post_time
    from r2r_core.flows.time_summary import flush_ended_periods
    from r2r_core.state import AuditLog, StateStore

    mapping = ErpMapping(time_posting=mode)
    with tempfile.TemporaryDirectory(prefix="r2r-bench-erp-") as tmp, _isolated_aws() as ddb:
        sandbox = ErpSandbox(Path(tmp) / "erp.sqlite", host="127.0.0.1", port=0)
        erp = NetSuiteClient(sandbox.start(), sandbox.tba_credentials())
        try:
            _tables(ddb)
            store, audit = StateStore("state", ddb), AuditLog("audit", ddb)
            plan = [workload.Project(i) for i in range(projects)]
            for project in plan:
                deal = workload.envelope_of(
                    workload.closed_won(repo_root, project), "crm", f"msg_{project.index}"
                )
                set_up_project(deal, store=store, audit=audit, erp=erp, mapping=mapping)
            setup = sandbox.stats()
            entries = 0
            started = time.perf_counter()
            for project in plan:
                for entry in workload.month_entries(project):
                    post_time(
                        workload.time_envelope(entry), store=store, audit=audit, erp=erp, mapping=mapping
                    )
                    entries += 1
            during_month = sandbox.stats()["total"] - setup["total"]
            flush_ended_periods(store, audit, erp, mapping, today=date(2026, 12, 1), correlation_id="bench")
            stats = sandbox.stats()
            elapsed = time.perf_counter() - started
        finally:
            sandbox.stop()
    total = stats["total"] - setup["total"]
    return {
        "mode": mode,
        "projects": projects,
        "entries": entries,
        "requests": total,
        "requests_during_month": during_month,
        "requests_at_period_end": total - during_month,
        "by_method": {m: n - setup["by_method"].get(m, 0) for m, n in stats["by_method"].items()},
        "throttled": stats["throttled"] - setup["throttled"],
        "per_1000": 1000 * total / entries,
        "seconds": round(elapsed, 2),
    }


def run(ctx: BenchContext) -> list[Figure]:
    projects = 1 if ctx.quick else 2
    figures = []
    for mode, target in (("detail", None), ("summary", TARGET_SUMMARY)):
        counted = count_requests(ctx.repo_root, mode=mode, projects=projects)
        figures.append(
            Figure(
                section=SECTION,
                name=f"NetSuite requests per 1,000 approved entries ({mode} mode)",
                value=round(counted["per_1000"], 2),
                unit="requests/1000 entries",
                target=target,
                detail={
                    **counted,
                    "workload": "a realistic month: 2 roles x 3 consultants x 22 working days per project",
                    "counted_at": "ERP sandbox /_sandbox/stats (every request, retries included)",
                    "runs": 1,
                    "deterministic": True,
                },
            )
        )
    return figures
