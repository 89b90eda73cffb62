"""What the month-end spike measures: percentiles and DynamoDB capacity from item sizes."""

from __future__ import annotations

import math

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
