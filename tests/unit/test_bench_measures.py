"""What the month-end spike measures: percentiles and DynamoDB capacity from item sizes."""

from __future__ import annotations

import math

from infra.bench.spike import _dynamodb_units, percentile


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
