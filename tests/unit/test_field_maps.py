"""The connectors' declarative FIELD_MAPs agree with what the mappers produce on the fixtures.

For every fixture notification in ``events/salesforce`` and ``events/certinia`` and every event it maps
to (``expected/``, itself checked by the contract tests), each FIELD_MAP row of that sObject and event type
whose source field is in the notification is checked against the event's data: ``copy`` / ``decimal`` /
``date`` / ``flag`` equal the source value, ``id`` contains it, ``lookup`` / ``derived`` fields exist.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from r2r_core.connectors import certinia, salesforce
from r2r_core.connectors.base import FieldMapping
from r2r_core.connectors.salesforce import parse_outbound_message

ROOT = Path(__file__).resolve().parents[2]
FIELD_MAPS: dict[str, tuple[FieldMapping, ...]] = {**salesforce.FIELD_MAP, **certinia.FIELD_MAP}
_MISSING = object()


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _check(row: FieldMapping, source: str, value: Any) -> str | None:
    if value is _MISSING:
        return f"{row.target} is not in the event"
    if row.how == "copy" and value != source:
        return f"{row.target} = {value!r}, source {source!r}"
    if row.how == "decimal" and (value is None or Decimal(str(value)) != Decimal(source)):
        return f"{row.target} = {value!r}, source {source!r}"
    if row.how == "date" and value != source[:10]:
        return f"{row.target} = {value!r}, source {source!r}"
    if row.how == "flag" and value is not (source.lower() == "true"):
        return f"{row.target} = {value!r}, source {source!r}"
    if row.how == "id" and (not isinstance(value, str) or source not in value):
        return f"{row.target} = {value!r} does not hold {source!r}"
    return None


def _checked_rows() -> tuple[set[tuple[str, FieldMapping]], list[str]]:
    checked: set[tuple[str, FieldMapping]] = set()
    problems: list[str] = []
    for folder in ("salesforce", "certinia"):
        for file in sorted((ROOT / "events" / folder).glob("*.xml")):
            expected = json.loads((ROOT / "events" / folder / "expected" / f"{file.stem}.json").read_text())
            outcomes = {item["notification"]: item for item in expected}
            for notification in parse_outbound_message(file.read_bytes()).notifications:
                rows = FIELD_MAPS.get(notification.sobject_type, ())
                for event in outcomes.get(notification.id, {}).get("events", []):
                    for row in rows:
                        source = notification.fields.get(row.source)
                        if row.event_type != event["type"] or source is None:
                            continue
                        problem = _check(row, source, _at(event["data"], row.target))
                        checked.add((notification.sobject_type, row))
                        if problem:
                            where = f"{file.name} {notification.sobject_type}.{row.source}"
                            problems.append(f"{where}: {problem}")
    return checked, problems


def test_field_maps_agree_with_the_mapping_output_on_the_fixtures() -> None:
    checked, problems = _checked_rows()
    assert not problems, "FIELD_MAP disagrees with the mappers:\n" + "\n".join(problems)
    # Every mapped object has rows the fixtures exercise, and most rows are exercised.
    assert {sobject for sobject, _ in checked} == set(FIELD_MAPS)
    total = sum(len(rows) for rows in FIELD_MAPS.values())
    assert len(checked) >= total * 0.7, f"only {len(checked)} of {total} FIELD_MAP rows met a fixture"


def test_field_map_names_known_event_types_and_transforms() -> None:
    from r2r_core.model.events import EVENT_TYPES

    for sobject, rows in FIELD_MAPS.items():
        for row in rows:
            assert row.event_type in EVENT_TYPES, (sobject, row)
            assert row.how in {"copy", "decimal", "date", "flag", "id", "lookup", "derived"}, (sobject, row)


@pytest.mark.parametrize(
    ("source", "value", "how"),
    [("Negotiation", "Closed Won", "copy"), ("10.5", "10.0", "decimal"), ("true", False, "flag")],
)
def test_a_wrong_row_is_caught(source: str, value: Any, how: str) -> None:
    assert _check(FieldMapping("F", "opportunity.updated", "x", how), source, value) is not None
