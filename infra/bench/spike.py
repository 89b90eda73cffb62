"""Month-end spike and workload isolation on the embedded local stack (``infra.local.stack.LocalStack``).

The ERP sandbox is set to NetSuite's shape of trouble: an account-wide concurrency limit of 10 and
300 ms per request. For each size (5,000, 20,000 and 50,000 approved entries across 500 projects; small
sizes with ``--quick``) a fresh stack sets the projects up (not timed), then the *spike* is timed:

1. the month's approved time arrives as timesheet file drops (``inbound/timesheets/``, 500 rows a file:
   the PSA's bulk export), through S3 → EventBridge → file_intake → the bus → time_posting;
2. the period-end tick (``billing_period_close``) posts the ended period's time summaries;
3. milestone completion for 100 projects (signed webhooks) → milestone-to-invoice runs → invoices.

Figures per size: wall time of the spike, time per entry, p50/p95 *time-to-bill*, peak memory (this process
plus moto's), ERP requests and the floor they set (requests × 300 ms / 10). **Time-to-bill** of an entry is
from the moment its file was dropped (its arrival at r2r; approval happened before) to the moment its
charge was recorded in StateTable (``recorded_at``): from then on it is billed by the next invoice run. In
summary posting mode (the default here) the ERP gets the time at the period-end flush, which the spike's
wall time includes.

Workload isolation reruns the first size while a flood of worker records (a Workday extract
through ``resource_sync``) and rate-card changes (``rate_card.upserted`` on the bus) arrives at the same
time, and compares the billing time-to-bill with the run without the flood.

Every size must fit the section's time budget (``R2R_BENCH_SPIKE_BUDGET_S``, 900 s; 420 s with
``--quick``): a size whose estimate (:func:`estimate_s`, from the first size's run) does not fit is not
run, and its figure says so (``measured: false``) instead of a number that was never measured. The first
size always runs; then the largest size that fits (the linear-growth figure compares it with the first);
then the first size's flooded rerun (isolation) — or, when that does not fit, a smaller pair without and
with the flood (``ISOLATION_FALLBACK_SIZE``) — then the other sizes that still fit, smallest first.
``R2R_BENCH_SPIKE_SIZES`` (e.g. ``1000,5000``) replaces the sizes.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from infra.bench import workload
from infra.bench.figures import BenchContext, Figure

SECTION = "spike"
ISOLATION = "isolation"
ERP_CONCURRENCY_LIMIT = 10
ERP_LATENCY_MS = 300
FULL_SIZES = (5_000, 20_000, 50_000)
QUICK_SIZES = (200, 400, 1_000)
FULL_PROJECTS, QUICK_PROJECTS = 500, 20
FULL_MILESTONES, QUICK_MILESTONES = 100, 10
ROWS_PER_FILE = 500
FULL_BUDGET_S, QUICK_BUDGET_S = 900.0, 420.0
TARGET_LINEAR = 1.25
TARGET_FLOOR = 1.5
TARGET_ISOLATION = 1.2
# What the spike waits for when a flood runs beside it (the flood's own consumers are not waited for).
BILLING_FUNCTIONS = (
    "file_intake",
    "time_posting",
    "billing_period_close",
    "ingest_webhook",
    "milestone_trigger",
    "invoice_workflow",
)
FLOOD_FUNCTIONS = ("resource_sync", "resource_allocation")
# When the first size's flooded rerun does not fit the budget: a pair of this size (without and with the
# flood, projects in proportion) is measured instead, if it fits; never smaller than the minimum.
ISOLATION_FALLBACK_SIZE = 1_000
ISOLATION_MIN_SIZE = 100
STACK_START_S = 25.0  # starting a fresh local stack (moto, the template's resources), before its set-up


# -- measuring ------------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakMemory:
    """Samples the resident memory of this process plus moto's child process every 0.2 s."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="r2r-bench-memory", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, sum(_rss_kib(pid) for pid in self.pids))
            self._stop.wait(0.2)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024


@dataclass
class Usage:
    """What the functions did: invocations and time per function, and the AWS calls made inside them.

    ``seconds`` is each function's wall time here (every AWS call crossing moto over HTTP on a shared
    machine), ``cpu_seconds`` the CPU time of its thread. ``calls`` and ``units`` are keyed
    ``<function folder> <service>:<operation>``. DynamoDB capacity is derived from the
    measured item sizes (by DynamoDB's rule: attribute names plus values): a write is one WRU per KB
    of the item written (an UpdateItem, whose item size is not sent, at the average size of the items the
    same function puts), a strongly consistent read
    one RRU per 4 KB read (at least one); a Query or Scan is billed on every item it evaluated, whole (a
    filter or a projection lowers what is returned, not what is read), so a filtered or projected one counts
    its ``ScannedCount`` items at the average size of the items written. ``log_bytes`` is what each function
    printed (logs and EMF).
    """

    invocations: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    cpu_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    records: Counter[str] = field(default_factory=Counter)  # SQS records handed to each function
    calls: Counter[str] = field(default_factory=Counter)
    units: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    items: Counter[str] = field(default_factory=Counter)  # PutEvents entries, Query/Scan items read
    event_bytes: Counter[str] = field(default_factory=Counter)  # PutEvents: the events' bytes
    bytes_written: Counter[str] = field(default_factory=Counter)  # per function: DynamoDB items put
    log_bytes: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "invocations": dict(self.invocations),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "cpu_seconds": {k: round(v, 3) for k, v in self.cpu_seconds.items()},
            "records": dict(self.records),
            "calls": dict(self.calls),
            "units": {k: round(v, 2) for k, v in self.units.items()},
            "items": dict(self.items),
            "event_bytes": dict(self.event_bytes),
            "bytes_written": dict(self.bytes_written),
            "log_bytes": dict(self.log_bytes),
        }


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def _number_size(text: str) -> int:
    """DynamoDB's size of a number: a byte per two significant digits, plus one."""
    digits = text.lstrip("-+").lower().split("e")[0].replace(".", "").strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def _value_size(value: Mapping[str, Any]) -> int:
    """The size DynamoDB bills for one attribute value in its wire form (``{"S": …}``, ``{"N": …}`` …)."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return _number_size(str(inner))
    if kind == "B":
        return len(inner) if isinstance(inner, bytes | bytearray) else len(str(inner).encode())
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "SS":
        return sum(len(str(v).encode()) for v in inner)
    if kind == "NS":
        return sum(_number_size(str(v)) for v in inner)
    if kind == "BS":
        return sum(len(v) for v in inner)
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    return _json_size(inner)


def _item_size(item: Mapping[str, Any]) -> int:
    """An item's size by DynamoDB's rule: attribute names plus values (not the JSON it travels in)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _items_size(items: list[Mapping[str, Any]]) -> int:
    return sum(_item_size(item) for item in items)


def _batch_written(params: Mapping[str, Any], response: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The items a BatchWriteItem call put: those it sent but what DynamoDB left unprocessed."""
    unprocessed = {
        json.dumps(request["PutRequest"]["Item"], sort_keys=True)
        for requests in (response.get("UnprocessedItems") or {}).values()
        for request in requests
        if "PutRequest" in request
    }
    return [
        request["PutRequest"]["Item"]
        for requests in (params.get("RequestItems") or {}).values()
        for request in requests
        if "PutRequest" in request
        and json.dumps(request["PutRequest"]["Item"], sort_keys=True) not in unprocessed
    ]


def _dynamodb_units(
    operation: str, params: dict[str, Any], response: dict[str, Any], avg_item: float, own_avg_item: float
) -> float:
    if operation == "PutItem":
        return float(max(1, math.ceil(_item_size(params.get("Item") or {}) / 1024)))
    if operation == "BatchWriteItem":
        # One write per item DynamoDB processed (what it left unprocessed is sent, and counted, again).
        return float(
            sum(max(1, math.ceil(_item_size(item) / 1024)) for item in _batch_written(params, response))
        )
    if operation == "UpdateItem":
        # The size of the updated item is not sent: the average item this function puts stands in.
        return float(max(1, math.ceil(own_avg_item / 1024)))
    if operation == "DeleteItem":
        return 1.0
    if operation == "GetItem":
        return float(max(1, math.ceil(_item_size(response.get("Item") or {}) / 4096)))
    if operation == "BatchGetItem":
        # Each key read counts as a GetItem of it: its item per 4 KB, an absent item one unit.
        asked = sum(len(r.get("Keys") or []) for r in (params.get("RequestItems") or {}).values())
        left = sum(len(r.get("Keys") or []) for r in (response.get("UnprocessedKeys") or {}).values())
        found = [item for items in (response.get("Responses") or {}).values() for item in items]
        units = sum(max(1, math.ceil(_item_size(item) / 4096)) for item in found)
        return float(units + max(0, asked - left - len(found)))
    if operation in {"Query", "Scan"}:
        # DynamoDB bills what it read, before the filter and the projection: every item it evaluated
        # (ScannedCount). Items it did not return whole count at the average size of the items written.
        items = response.get("Items") or []
        scanned = int(response.get("ScannedCount", len(items)))
        if scanned > len(items) or "ProjectionExpression" in params:
            size = scanned * avg_item
        else:
            size = _items_size(items)
        return float(max(1, math.ceil(size / 4096)))
    return 0.0


class _CountingStdout:
    """Counts what each function prints (its CloudWatch log ingestion) and passes the rest through."""

    def __init__(
        self, wrapped: Any, folder: contextvars.ContextVar[str | None], usage: Usage, lock: threading.Lock
    ) -> None:
        self._wrapped, self._folder, self._usage, self._lock = wrapped, folder, usage, lock

    def write(self, text: str) -> int:
        folder = self._folder.get()
        if folder:
            with self._lock:
                self._usage.log_bytes[folder] += len(text.encode())
            return len(text)
        return int(self._wrapped.write(text))

    def flush(self) -> None:
        self._wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


def _record_call(
    usage: Usage,
    written: dict[str, int],
    *,
    folder: str,
    service: str,
    operation: str,
    params: dict[str, Any],
    response: dict[str, Any],
) -> None:
    key = f"{folder} {service}:{operation}"
    usage.calls[key] += 1
    if operation == "PutEvents":
        entries = params.get("Entries") or []
        usage.items[key] += len(entries)
        usage.event_bytes[key] += sum(
            len(str(e.get("Detail", "")).encode()) + len(str(e.get("DetailType", "")).encode())
            for e in entries
        )
    elif operation in {"Query", "Scan"}:
        usage.items[key] += len(response.get("Items") or [])
    if service == "dynamodb":
        if operation == "PutItem":
            put = [params.get("Item") or {}]
        elif operation == "BatchWriteItem":
            put = _batch_written(params, response)
            usage.items[key] += len(put)
        else:
            put = []
        for item in put:
            size = _item_size(item)
            written["bytes"] += size
            written["items"] += 1
            written[f"{folder} bytes"] = written.get(f"{folder} bytes", 0) + size
            written[f"{folder} items"] = written.get(f"{folder} items", 0) + 1
            usage.bytes_written[folder] += size
        average = written["bytes"] / written["items"] if written["items"] else 1024.0
        own = written.get(f"{folder} items", 0)
        own_average = written[f"{folder} bytes"] / own if own else average
        usage.units[key] += _dynamodb_units(operation, params, response, average, own_average)


@contextlib.contextmanager
def measure_usage(stack: Any) -> Iterator[Usage]:
    """Count invocations, durations, AWS calls and log output of the stack's functions meanwhile."""
    import sys

    import botocore.client

    usage = Usage()
    lock = threading.Lock()
    # Which function is running: a context variable, not a thread-local, so that the work a function
    # hands to its own threads in a copy of its context (the period-end flush's workers) counts as its.
    running: contextvars.ContextVar[str | None] = contextvars.ContextVar("r2r_bench_function", default=None)
    runtime = stack.runtime
    folders = {spec.name: spec.source_dir.name for spec in stack.local.functions.values()}
    original_invoke = runtime.invoke
    original_call = botocore.client.BaseClient._make_api_call
    original_stdout = sys.stdout
    written = {"bytes": 0, "items": 0}

    def invoke(name_or_arn: str, event: Any, request_id: str | None = None) -> Any:
        folder = folders.get(str(name_or_arn).rsplit(":", 1)[-1], str(name_or_arn))
        token = running.set(folder)
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            return original_invoke(name_or_arn, event, request_id)
        finally:
            elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
            running.reset(token)
            with lock:
                usage.invocations[folder] += 1
                usage.seconds[folder] += elapsed
                usage.cpu_seconds[folder] += cpu
                if isinstance(event, dict) and isinstance(event.get("Records"), list):
                    usage.records[folder] += len(event["Records"])

    def call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        response = original_call(client, operation, params)
        folder = running.get()
        if folder:
            with lock:
                _record_call(
                    usage,
                    written,
                    folder=folder,
                    service=client.meta.service_model.service_name,
                    operation=operation,
                    params=params,
                    response=response,
                )
        return response

    runtime.invoke = invoke
    botocore.client.BaseClient._make_api_call = call
    sys.stdout = _CountingStdout(original_stdout, running, usage, lock)
    try:
        yield usage
    finally:
        sys.stdout = original_stdout
        runtime.invoke = original_invoke
        botocore.client.BaseClient._make_api_call = original_call


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


# -- one spike ------------------------------------------------------------------------------------


@dataclass
class SpikeResult:
    size: int
    projects: int
    milestones: int
    mode: str
    flood: int
    setup_s: float
    wall_s: float
    entries_s: float
    flush_s: float
    milestones_s: float
    time_to_bill_s: list[float]
    peak_mib: float
    erp: dict[str, Any]
    invoices: int
    charges: int
    usage: Usage
    webhooks: int
    files: int = 0
    file_bytes: int = 0
    flood_processed: dict[str, int] = field(default_factory=dict)  # records the flood's consumers handled

    @property
    def per_entry_ms(self) -> float:
        return 1000 * self.wall_s / self.size

    @property
    def erp_requests(self) -> int:
        return int(self.erp.get("total", 0))

    @property
    def floor_s(self) -> float:
        return self.erp_requests * ERP_LATENCY_MS / 1000 / ERP_CONCURRENCY_LIMIT

    def summary(self) -> dict[str, Any]:
        ttb = self.time_to_bill_s
        return {
            "entries": self.size,
            "projects": self.projects,
            "milestones": self.milestones,
            "posting_mode": self.mode,
            "flood_records": self.flood,
            "flood_records_processed_meanwhile": self.flood_processed,
            "setup_s": round(self.setup_s, 2),
            "wall_s": round(self.wall_s, 2),
            "entries_phase_s": round(self.entries_s, 2),
            "period_end_flush_s": round(self.flush_s, 2),
            "milestones_phase_s": round(self.milestones_s, 2),
            "per_entry_ms": round(self.per_entry_ms, 2),
            "time_to_bill_p50_s": round(percentile(ttb, 50), 2),
            "time_to_bill_p95_s": round(percentile(ttb, 95), 2),
            "charges_recorded": self.charges,
            "invoices": self.invoices,
            "peak_memory_mib": round(self.peak_mib, 1),
            "erp_requests": self.erp_requests,
            "erp_throttled": self.erp.get("throttled", 0),
            "erp_peak_in_flight": self.erp.get("peak_in_flight", 0),
            "erp_by_record_type": self.erp.get("by_record_type", {}),
            "erp_floor_s": round(self.floor_s, 2),
            "webhooks": self.webhooks,
            "files": self.files,
            "file_bytes": self.file_bytes,
            "usage": self.usage.as_json(),
        }


def _erp_secret(stack: Any, mode: str) -> None:
    from infra.local import config

    secrets = stack.boto3_client("secretsmanager")
    [secret_id] = [arn for logical, arn in stack.local.secrets.items() if "ErpCredentials" in logical]
    value = {**config.ERP_CREDENTIALS, "mapping": {"time_posting": mode}}
    secrets.put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))


def _erp_faults(stack: Any) -> None:
    response = requests.post(
        f"{stack.erp_url}/_sandbox/faults",
        json={
            "concurrency_limit": ERP_CONCURRENCY_LIMIT,
            "concurrency_retry_after": 1,
            "latency_ms": ERP_LATENCY_MS,
        },
        timeout=10,
    )
    response.raise_for_status()


def _erp_stats(stack: Any) -> dict[str, Any]:
    response = requests.get(f"{stack.erp_url}/_sandbox/stats", timeout=10)
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {
        "total": after["total"] - before["total"],
        "throttled": after["throttled"] - before["throttled"],
        "by_method": {k: v - before["by_method"].get(k, 0) for k, v in after["by_method"].items()},
        "by_record_type": {
            k: v - before["by_record_type"].get(k, 0) for k, v in after["by_record_type"].items()
        },
        "peak_in_flight": after["peak_in_flight"],
    }


def _charges(stack: Any) -> list[dict[str, Any]]:
    from r2r_core.state import StateStore

    table = stack.local.table_for_env("STATE_TABLE_NAME")
    store = StateStore(table, stack.boto3_client("dynamodb"))
    return [i for i in store.scan_prefix("ENG#") if str(i.get("sk", "")).startswith("CHARGE#")]


def _flood(stack: Any, count: int) -> None:
    """A bulk worker resync (Workday extract → resource_sync) and a rate-card resync, ``count`` each."""
    header = "Employee_ID,Legal_First_Name,Legal_Last_Name,Email_Address,Active,Role,Region,Last_Updated\n"
    rows = "".join(
        f"{90000 + i},Flood,Worker{i},w{i}@example.com,1,Cloud Engineer,EMEA,2026-11-01T08:00:00Z\n"
        for i in range(count)
    )
    stack.put_file("inbound/workday/resync.csv", (header + rows).encode(), drain=False)
    events = stack.boto3_client("events")
    bus = next(iter(stack.local.buses.values()))
    from r2r_core.model.events import EVENT_SOURCE

    batch = []
    for i in range(count):
        detail = {
            "type": "rate_card.upserted",
            "schema_version": "1.0",
            "event_id": f"flood-rc-{i}",
            "source_system": "psa",
            "source_record_id": f"rc-flood-{i}",
            "source_record_version": 1,
            "correlation_id": f"flood-rc-{i}",
            "occurred_at": "2026-11-01T08:00:00Z",
            "data": {"id": f"rc-flood-{i}", "version": 1, "name": "flood", "currency": "USD", "rates": []},
        }
        batch.append(
            {
                "EventBusName": bus,
                "Source": EVENT_SOURCE,
                "DetailType": "rate_card.upserted",
                "Detail": json.dumps(detail),
            }
        )
        if len(batch) == 10:
            events.put_events(Entries=batch)
            batch = []
    if batch:
        events.put_events(Entries=batch)


def run_spike(
    repo_root: Path,
    *,
    size: int,
    projects: int,
    milestones: int,
    mode: str = "summary",
    flood: int = 0,
    drain_timeout: float = 3600.0,
) -> SpikeResult:
    """One spike on a fresh local stack; raises if the stack does not drain within ``drain_timeout``."""
    from infra.local.stack import LocalStack

    plan = [workload.Project(i) for i in range(projects)]
    per_project, extra = divmod(size, projects)
    with LocalStack.start(repo_root, schedules=False) as stack:
        _erp_secret(stack, mode)
        setup_started = time.monotonic()
        for project in plan:
            stack.post_webhook(
                "crm", workload.closed_won(repo_root, project), f"msg_bench_cw_{project.index}"
            )
        stack.drain(timeout=drain_timeout)
        _erp_faults(stack)
        setup_s = time.monotonic() - setup_started
        entries = [
            entry
            for project in plan
            for entry in workload.time_entries(project, per_project + (1 if project.index < extra else 0))
        ]
        before = _erp_stats(stack)
        pids = [os.getpid()] + ([stack._moto.pid] if stack._moto is not None else [])
        dropped_at: dict[str, float] = {}
        files, file_bytes = 0, 0
        with PeakMemory(pids) as memory, measure_usage(stack) as usage:
            started = time.monotonic()
            if flood:
                _flood(stack, flood)
            for n, start in enumerate(range(0, len(entries), ROWS_PER_FILE)):
                chunk = entries[start : start + ROWS_PER_FILE]
                at = datetime.now(UTC).timestamp()
                body = workload.timesheet_csv(chunk)
                stack.put_file(f"inbound/timesheets/bench-{n:04d}.csv", body, drain=False)
                files, file_bytes = files + 1, file_bytes + len(body)
                dropped_at.update((e["id"], at) for e in chunk)
            # With a flood, wait for the billing flows only: the flood goes on meanwhile (it competes for
            # the machine and the ERP as it would at month-end) and is stopped with the stack.
            scope = BILLING_FUNCTIONS if flood else None
            stack.drain(timeout=drain_timeout, stable_s=1.0, only=scope)
            entries_s = time.monotonic() - started
            stack.tick("billing_period_close")
            stack.drain(timeout=drain_timeout, stable_s=1.0, only=scope)
            flush_s = time.monotonic() - started - entries_s
            for project in plan[:milestones]:
                stack.post_webhook(
                    "psa", workload.milestone_completed(project), f"msg_bench_ms_{project.index}"
                )
            stack.drain(timeout=drain_timeout, stable_s=1.0, only=scope)
            wall_s = time.monotonic() - started
            flood_done = {k: usage.records.get(k, 0) for k in FLOOD_FUNCTIONS} if flood else {}
        erp = _delta(_erp_stats(stack), before)
        charges = _charges(stack)
        time_to_bill = [
            datetime.fromisoformat(str(c["recorded_at"])).timestamp() - dropped_at[str(c["source_id"])]
            for c in charges
            if str(c.get("source_id")) in dropped_at and c.get("recorded_at")
        ]
        invoices = len(stack.erp_records().get("invoice", []))
    return SpikeResult(
        size=size,
        projects=projects,
        milestones=milestones,
        mode=mode,
        flood=flood,
        setup_s=setup_s,
        wall_s=wall_s,
        entries_s=entries_s,
        flush_s=flush_s,
        milestones_s=wall_s - entries_s - flush_s,
        time_to_bill_s=time_to_bill,
        peak_mib=memory.peak_mib,
        erp=erp,
        invoices=invoices,
        charges=len(charges),
        usage=usage,
        webhooks=milestones,
        files=files,
        file_bytes=file_bytes,
        flood_processed=flood_done,
    )


# -- the section ----------------------------------------------------------------------------------


def _not_run(name: str, estimate_s: float, budget_left_s: float, size: int) -> Figure:
    return Figure(
        section=SECTION,
        name=name,
        value=round(estimate_s, 1),
        unit="s (estimate, NOT measured)",
        detail={
            "measured": False,
            "entries": size,
            "why": f"estimated {estimate_s:.0f} s from the first size's run (start and set-up, the "
            f"spike in proportion to the entries); {budget_left_s:.0f} s of the section's time budget "
            "were left on this machine",
        },
    )


def spike_sizes(text: str) -> tuple[int, ...]:
    """``R2R_BENCH_SPIKE_SIZES``: positive entry counts separated by commas, e.g. ``1000,5000``."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ValueError(
            "R2R_BENCH_SPIKE_SIZES must be positive entry counts separated by commas (e.g. 1000,5000), "
            f"not {text!r}"
        )
    return tuple(int(part) for part in parts)


def spike_budget(text: str | None, default: float) -> float:
    """``R2R_BENCH_SPIKE_BUDGET_S``: the section's time budget in seconds (``default`` when unset)."""
    if text is None or not text.strip():
        return default
    try:
        budget = float(text)
    except ValueError:
        budget = math.nan
    if not budget > 0 or math.isinf(budget):
        raise ValueError(f"R2R_BENCH_SPIKE_BUDGET_S must be a number of seconds above 0, not {text!r}")
    return budget


def estimate_s(measured: SpikeResult, size: int) -> float:
    """How long a fresh stack takes for ``size`` entries of the measured run's shape: its start and set-up,
    and its whole spike in proportion to the entries. An upper bound: the period-end flush and the
    milestones grow with the projects and milestones, less than with the entries (at 20,000 entries the
    flush took 110 s against 79 s at 5,000), so a size estimated to fit does."""
    return STACK_START_S + measured.setup_s + measured.wall_s * size / measured.size


def run(ctx: BenchContext) -> list[Figure]:
    sizes: tuple[int, ...] = QUICK_SIZES if ctx.quick else FULL_SIZES
    if os.environ.get("R2R_BENCH_SPIKE_SIZES"):  # e.g. "5000,20000,50000"
        sizes = spike_sizes(os.environ["R2R_BENCH_SPIKE_SIZES"])
    projects = QUICK_PROJECTS if ctx.quick else FULL_PROJECTS
    milestones = QUICK_MILESTONES if ctx.quick else FULL_MILESTONES
    budget = spike_budget(
        os.environ.get("R2R_BENCH_SPIKE_BUDGET_S"), QUICK_BUDGET_S if ctx.quick else FULL_BUDGET_S
    )
    started = time.monotonic()

    def left() -> float:
        return budget - (time.monotonic() - started)

    def spike(size: int) -> SpikeResult:
        return run_spike(ctx.repo_root, size=size, projects=min(projects, size), milestones=milestones)

    # The first size always runs; then the largest size that fits (what the linear-growth target
    # compares with the first), then the first size's flooded rerun (isolation), then the other sizes that
    # still fit, smallest first. A size that does not fit is reported as not run, with its estimate.
    first = spike(sizes[0])
    measured: dict[int, SpikeResult] = {first.size: first}
    larger = sorted(set(sizes[1:]), reverse=True)
    for size in larger:
        if estimate_s(first, size) <= left():
            measured[size] = spike(size)
            break
    isolation, smaller = _isolation(ctx, first, left())
    for size in sorted(larger):
        if size not in measured and estimate_s(first, size) <= left():
            measured[size] = spike(size)

    figures: list[Figure] = []
    for size in sizes:
        if size in measured:
            figures += _size_figures(measured[size])
        else:
            estimate = estimate_s(first, size)
            figures.append(_not_run(f"spike {size} entries: wall time", estimate, left(), size))
    figures += isolation
    if smaller is not None:
        figures.append(_growth_below(smaller, first))
    largest = max(measured)
    if largest != first.size:
        last = measured[largest]
        figures.append(
            Figure(
                SECTION,
                f"time per entry at {last.size} vs {first.size} entries",
                round(last.per_entry_ms / first.per_entry_ms, 3),
                "x",
                target=TARGET_LINEAR,
                detail={"small_ms": round(first.per_entry_ms, 2), "large_ms": round(last.per_entry_ms, 2)},
            )
        )
    else:
        figures.append(
            Figure(
                SECTION,
                f"time per entry at {max(sizes)} vs {first.size} entries",
                0.0,
                "x (NOT measured)",
                detail={
                    "measured": False,
                    "target": TARGET_LINEAR,
                    "why": "only the first size fitted the section's time budget",
                },
            )
        )
    return figures


def _size_figures(result: SpikeResult) -> list[Figure]:
    size = result.size
    detail = {"measured": True, "runs": 1, **result.summary()}
    return [
        Figure(SECTION, f"spike {size} entries: wall time", round(result.wall_s, 2), "s", detail=detail),
        Figure(SECTION, f"spike {size} entries: time per entry", round(result.per_entry_ms, 2), "ms"),
        Figure(
            SECTION,
            f"spike {size} entries: time-to-bill p50",
            round(percentile(result.time_to_bill_s, 50), 2),
            "s",
        ),
        Figure(
            SECTION,
            f"spike {size} entries: time-to-bill p95",
            round(percentile(result.time_to_bill_s, 95), 2),
            "s",
        ),
        Figure(SECTION, f"spike {size} entries: peak memory", round(result.peak_mib, 1), "MiB"),
        Figure(
            SECTION,
            f"spike {size} entries: wall time vs ERP concurrency floor",
            round(result.wall_s / result.floor_s, 2) if result.floor_s else math.inf,
            "x",
            target=TARGET_FLOOR,
            detail={
                "erp_requests": result.erp_requests,
                "floor_s": round(result.floor_s, 2),
                "floor": f"requests x {ERP_LATENCY_MS} ms / {ERP_CONCURRENCY_LIMIT}",
            },
        ),
    ]


def _growth_below(smaller: SpikeResult, first: SpikeResult) -> Figure:
    """How time per entry grows from the isolation pair's smaller size (same shape: entries per project,
    milestones) to the first size: measured growth below the sizes the linear target names, no target."""
    return Figure(
        SECTION,
        f"time per entry at {first.size} vs {smaller.size} entries",
        round(first.per_entry_ms / smaller.per_entry_ms, 3),
        "x",
        detail={
            "measured": True,
            "small_ms": round(smaller.per_entry_ms, 2),
            "large_ms": round(first.per_entry_ms, 2),
            "note": f"the isolation pair's run without the flood against the first size; the target "
            f"({TARGET_LINEAR} x) is for the largest size against the first",
        },
    )


def _isolation(
    ctx: BenchContext, baseline: SpikeResult, left_s: float
) -> tuple[list[Figure], SpikeResult | None]:
    """The isolation figures, and the smaller spike run for them when the first size's rerun did not fit."""
    name = f"isolation: billing time-to-bill p95 with a flood vs without ({baseline.size} entries)"
    # A fresh stack's set-up plus the spike, a little slower with the flood (which is not waited for).
    estimate = 1.6 * (baseline.wall_s + baseline.setup_s)
    if estimate > left_s:
        # The first size's rerun does not fit: a smaller pair (without, then with the flood) may, which
        # still says whether the flood reaches billing; the figure names its size.
        size = min(ISOLATION_FALLBACK_SIZE, baseline.size // 2)
        projects = max(1, baseline.projects * size // baseline.size)
        per_entry_s = baseline.wall_s / baseline.size
        setup_per_project_s = baseline.setup_s / baseline.projects
        pair = 2.6 * (per_entry_s * size + setup_per_project_s * projects)
        if size >= ISOLATION_MIN_SIZE and pair <= left_s:
            smaller = run_spike(
                ctx.repo_root, size=size, projects=projects, milestones=min(baseline.milestones, projects)
            )
            return _isolation(ctx, smaller, float("inf"))[0], smaller
        return [
            Figure(
                ISOLATION,
                name,
                round(estimate, 1),
                "s (estimate, NOT measured)",
                detail={
                    "measured": False,
                    "why": f"a flooded rerun is estimated at {estimate:.0f} s, a smaller pair of {size} "
                    f"entries at {pair:.0f} s; {left_s:.0f} s were left",
                },
            )
        ], None
    flooded = run_spike(
        ctx.repo_root,
        size=baseline.size,
        projects=baseline.projects,
        milestones=baseline.milestones,
        flood=baseline.size,
    )
    p95 = percentile(flooded.time_to_bill_s, 95) / percentile(baseline.time_to_bill_s, 95)
    p50 = percentile(flooded.time_to_bill_s, 50) / percentile(baseline.time_to_bill_s, 50)
    return [
        Figure(
            ISOLATION,
            name,
            round(p95, 3),
            "x",
            target=TARGET_ISOLATION,
            detail={
                "measured": True,
                "p50_ratio": round(p50, 3),
                "without_flood": baseline.summary(),
                "with_flood": flooded.summary(),
                "flood": f"{baseline.size} Workday worker records (resource_sync) "
                f"+ {baseline.size} rate-card events",
            },
        ),
        Figure(
            ISOLATION,
            f"isolation: spike wall time with a flood vs without ({baseline.size} entries)",
            round(flooded.wall_s / baseline.wall_s, 3),
            "x",
        ),
        Figure(
            ISOLATION,
            "isolation: ERP requests throttled (429) during the flooded spike",
            int(flooded.erp.get("throttled", 0)),
            "requests",
            detail={
                "erp_peak_in_flight": flooded.erp.get("peak_in_flight", 0),
                "erp_concurrency_limit": ERP_CONCURRENCY_LIMIT,
                "flood_records_processed_meanwhile": flooded.flood_processed,
                "why": "the master-data writers keep to erpMasterDataShare, the financial flows to "
                "erpConcurrencyShare: together under the account's limit, so billing is never throttled "
                "by the flood",
            },
        ),
    ], None
