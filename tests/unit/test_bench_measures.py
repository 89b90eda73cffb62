"""What the month-end spike measures: percentiles and DynamoDB capacity from item sizes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from infra.bench.spike import _dynamodb_units, _item_size, percentile


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (50.0, 95.0, 100.0)
    assert percentile([3.0], 95) == 3.0
    assert math.isnan(percentile([], 50))


def test_writes_cost_a_unit_per_kilobyte_and_consistent_reads_a_unit_per_four() -> None:
    small, large = {"Item": {"pk": {"S": "x"}}}, {"Item": {"pk": {"S": "x" * 2500}}}
    assert _dynamodb_units("PutItem", small, {}, 0, 0) == 1
    assert _dynamodb_units("PutItem", large, {}, 0, 0) == 3
    assert _dynamodb_units("UpdateItem", {}, {}, 0, 1500) == 2  # at the function's average item size
    assert _dynamodb_units("GetItem", {}, {}, 0, 0) == 1  # a miss still costs one
    assert _dynamodb_units("GetItem", {}, {"Item": {"d": {"S": "y" * 9000}}}, 0, 0) == 3
    # A projected query is billed on whole items: its items count at the average size written.
    projected = {"ProjectionExpression": "#p0"}
    assert _dynamodb_units("Query", projected, {"Items": [{}] * 10}, 2048, 0) == 5
    assert _dynamodb_units("Query", {}, {"Items": []}, 2048, 0) == 1
    # A filter does not lower the bill: every item evaluated (ScannedCount) is read, at the average size.
    filtered = {"FilterExpression": "#s = :s"}
    assert _dynamodb_units("Scan", filtered, {"Items": [{}], "ScannedCount": 400}, 2048, 0) == 200
    assert _dynamodb_units("Query", filtered, {"Items": [], "ScannedCount": 20}, 1024, 0) == 5


def test_a_batch_write_costs_the_units_of_the_items_dynamodb_processed() -> None:
    small, large = {"pk": {"S": "a"}}, {"pk": {"S": "b" * 2500}}
    sent = {"RequestItems": {"audit": [{"PutRequest": {"Item": small}}, {"PutRequest": {"Item": large}}]}}
    assert _dynamodb_units("BatchWriteItem", sent, {"UnprocessedItems": {}}, 0, 0) == 1 + 3
    # What DynamoDB left unprocessed is not written by this call (it is sent, and counted, again).
    left = {"UnprocessedItems": {"audit": [{"PutRequest": {"Item": large}}]}}
    assert _dynamodb_units("BatchWriteItem", sent, left, 0, 0) == 1


def test_a_batch_get_costs_each_key_read_as_a_get_of_it() -> None:
    keys = [{"pk": {"S": k}} for k in ("a", "b", "c", "d")]
    sent = {"RequestItems": {"state": {"Keys": keys, "ConsistentRead": True}}}
    found = {"Responses": {"state": [{"pk": {"S": "a"}}, {"pk": {"S": "b"}, "d": {"S": "y" * 9000}}]}}
    # a: 1, b: 3 (9 KB), c and d absent: 1 each
    assert _dynamodb_units("BatchGetItem", sent, found, 0, 0) == 1 + 3 + 1 + 1
    # A key DynamoDB left unprocessed was not read by this call (it is asked, and counted, again).
    left = {**found, "UnprocessedKeys": {"state": {"Keys": [keys[3]]}}}
    assert _dynamodb_units("BatchGetItem", sent, left, 0, 0) == 1 + 3 + 1


def test_item_size_follows_dynamodbs_rule_not_the_wire_json() -> None:
    # Names plus values: a string by its UTF-8 bytes, a number a byte per two significant digits plus one.
    assert _item_size({"pk": {"S": "ENG#1"}}) == 2 + 5
    assert _item_size({"n": {"N": "123.450"}}) == 1 + 4  # 12345: three bytes, plus one
    assert _item_size({"n": {"N": "-0.001"}}) == 1 + 2
    assert _item_size({"ok": {"BOOL": True}, "none": {"NULL": True}}) == 2 + 1 + 4 + 1
    # Lists and maps: 3 bytes each, plus a byte per element (and a map's keys).
    assert _item_size({"l": {"L": [{"S": "ab"}, {"N": "7"}]}}) == 1 + 3 + (1 + 2) + (1 + 2)
    assert _item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + (1 + 1 + 1)
    # A 34-attribute charge of short values is well under the 1.3+ KB its JSON takes.
    charge = {f"attribute_{i:02d}": {"S": "value-" + "x" * 10} for i in range(34)}
    assert _item_size(charge) == 34 * (12 + 16)
    assert _dynamodb_units("PutItem", {"Item": charge}, {}, 0, 0) == 1


def test_isolation_falls_back_to_a_smaller_pair_that_fits_and_names_its_size(monkeypatch: Any) -> None:
    from infra.bench import spike
    from infra.bench.figures import BenchContext

    def result(size: int, projects: int, flood: int) -> spike.SpikeResult:
        ttb = [10.0, 20.0] if not flood else [11.0, 22.0]
        return spike.SpikeResult(
            size=size, projects=projects, milestones=5, mode="summary", flood=flood, setup_s=5.0,
            wall_s=size * 0.1, entries_s=1.0, flush_s=1.0, milestones_s=1.0, time_to_bill_s=ttb,
            peak_mib=1.0, erp={"total": 10, "throttled": 0}, invoices=1, charges=size,
            usage=spike.Usage(), webhooks=5,
        )  # fmt: skip

    runs: list[tuple[int, int]] = []

    def fake_run(_root: Any, *, size: int, projects: int, milestones: int, flood: int = 0, **_: Any) -> Any:
        runs.append((size, flood))
        return result(size, projects, flood)

    monkeypatch.setattr(spike, "run_spike", fake_run)
    ctx = BenchContext(repo_root=Path("."), out_dir=Path("."))
    baseline = result(5000, 500, 0)  # 500 s + 5 s set-up: a rerun needs about 800 s
    figures, smaller = spike._isolation(ctx, baseline, left_s=300.0)
    assert runs == [(1000, 0), (1000, 1000)]  # the smaller pair: without, then with the flood
    assert figures[0].name.endswith("(1000 entries)") and figures[0].value == 1.1
    # The pair's run without the flood also measures growth from 1,000 to 5,000 entries (no target).
    assert smaller is not None and smaller.size == 1000
    growth = spike._growth_below(smaller, baseline)
    assert growth.name == "time per entry at 5000 vs 1000 entries" and growth.value == 1.0
    assert growth.target is None
    runs.clear()
    unmeasured, none = spike._isolation(ctx, baseline, left_s=100.0)  # not even the pair fits
    assert runs == [] and unmeasured[0].unit == "s (estimate, NOT measured)" and none is None


def test_spike_sizes_and_budget_from_the_environment_name_what_is_wrong() -> None:
    from infra.bench.spike import spike_budget, spike_sizes

    assert spike_sizes("1000, 5000,") == (1000, 5000)
    assert spike_budget(None, 900.0) == 900.0
    assert spike_budget("7200", 900.0) == 7200.0
    for bad in ("abc", "1000,-5", "0", ","):
        with pytest.raises(ValueError, match="R2R_BENCH_SPIKE_SIZES must be positive entry counts"):
            spike_sizes(bad)
    for bad in ("soon", "0", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match="R2R_BENCH_SPIKE_BUDGET_S must be a number of seconds"):
            spike_budget(bad, 900.0)


def test_aws_calls_a_function_makes_from_its_own_worker_threads_count_as_its_own() -> None:
    """The period-end flush posts from a thread pool run in copies of the function's context: its calls
    (and so their cost) belong to billing_period_close, not to nobody."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    import boto3
    from moto import mock_aws

    from infra.bench.spike import measure_usage

    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")

        def invoke(name_or_arn: str, event: Any, request_id: str | None = None) -> Any:
            ddb.list_tables()
            context = contextvars.copy_context()
            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(lambda _: context.copy().run(ddb.list_tables), range(3)))
            return {}

        spec = SimpleNamespace(name="fn-close", source_dir=Path("functions/billing_period_close"))
        stack = SimpleNamespace(
            runtime=SimpleNamespace(invoke=invoke), local=SimpleNamespace(functions={"x": spec})
        )
        with measure_usage(stack) as usage:
            stack.runtime.invoke("arn:aws:lambda:us-east-1:1:function:fn-close", {"Records": [{}]})
            ddb.list_tables()  # outside any function: not counted
        assert usage.calls["billing_period_close dynamodb:ListTables"] == 4
        assert usage.invocations["billing_period_close"] == 1


def test_the_spike_runs_the_first_size_then_the_largest_that_fits_then_isolation(monkeypatch: Any) -> None:
    """The largest size that fits comes right after the first (the linear-growth figure needs it); a size
    that does not fit is reported with its estimate, never a number that was not measured."""
    from infra.bench import spike
    from infra.bench.figures import BenchContext

    runs: list[tuple[int, int]] = []

    def fake_run(_root: Any, *, size: int, projects: int, milestones: int, flood: int = 0, **_: Any) -> Any:
        runs.append((size, flood))
        entries_s = size * 0.01  # 10 ms an entry; flush and milestones 1 s each, whatever the size
        return spike.SpikeResult(
            size=size, projects=projects, milestones=milestones, mode="summary", flood=flood, setup_s=5.0,
            wall_s=entries_s + 2.0, entries_s=entries_s, flush_s=1.0, milestones_s=1.0,
            time_to_bill_s=[1.0, 2.0], peak_mib=1.0, erp={"total": 10, "throttled": 0}, invoices=1,
            charges=size, usage=spike.Usage(), webhooks=5,
        )  # fmt: skip

    monkeypatch.setattr(spike, "run_spike", fake_run)
    monkeypatch.setenv("R2R_BENCH_SPIKE_SIZES", "5000,20000,50000")
    # The first run's 52 s of spike in proportion: 50,000 is estimated at 25 + 5 + 520 = 550 s, 20,000 at
    # 25 + 5 + 208 = 238 s: only 20,000 fits in 300 s.
    monkeypatch.setattr(spike, "STACK_START_S", 25.0)
    monkeypatch.setenv("R2R_BENCH_SPIKE_BUDGET_S", "300")
    figures = {f.name: f for f in spike.run(BenchContext(repo_root=Path("."), out_dir=Path(".")))}
    assert runs[:2] == [(5000, 0), (20000, 0)]
    assert runs[2:] == [(5000, 5000)]  # then the first size's flooded rerun
    assert figures["spike 50000 entries: wall time"].unit == "s (estimate, NOT measured)"
    assert figures["spike 50000 entries: wall time"].value == 550.0
    assert figures["spike 20000 entries: time per entry"].value == round((200 + 2) / 20000 * 1000, 2)
    linear = figures["time per entry at 20000 vs 5000 entries"]
    assert linear.target == spike.TARGET_LINEAR and linear.value < 1
