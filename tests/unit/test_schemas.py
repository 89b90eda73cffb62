"""The committed JSON Schemas match the model, and every sample validates against both."""

import json
from pathlib import Path

import jsonschema
import pytest

from r2r_core.model.events import EVENT_TYPES, WebhookPayload, build_envelope, event_type
from r2r_core.schema_export import render_schemas

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "events" / "schemas"


def test_committed_schemas_are_current() -> None:
    rendered = render_schemas()
    committed = {path.name: path.read_text() for path in SCHEMAS.glob("*.json")}
    stale = sorted(
        name for name in rendered.keys() | committed.keys() if rendered.get(name) != committed.get(name)
    )
    assert not stale, f"events/schemas is stale for {stale}: run `make schemas` and commit"


def test_there_is_one_sample_per_event_type() -> None:
    samples = {path.stem for path in (ROOT / "events" / "samples").glob("*.json")}
    assert samples == set(EVENT_TYPES)


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_sample_is_valid_as_model_and_as_published_schema(name: str) -> None:
    payload = WebhookPayload.model_validate_json((ROOT / "events" / "samples" / f"{name}.json").read_text())
    assert payload.type == name
    record = event_type(name).data_model.model_validate(payload.data)
    envelope = build_envelope(source_system="psa", delivery_id=f"msg_{name}", payload=payload, record=record)
    schema = json.loads((SCHEMAS / f"{name}.v{EVENT_TYPES[name].schema_version}.json").read_text())
    jsonschema.validate(json.loads(envelope.model_dump_json()), schema)


def test_schema_rejects_a_wrong_type_in_data() -> None:
    schema = json.loads((SCHEMAS / "time_entry.approved.v1.0.json").read_text())
    payload = WebhookPayload.model_validate_json(
        (ROOT / "events" / "samples" / "time_entry.approved.json").read_text()
    )
    record = event_type(payload.type).data_model.model_validate(payload.data)
    document = json.loads(
        build_envelope(source_system="psa", delivery_id="x", payload=payload, record=record).model_dump_json()
    )
    document["data"]["billable"] = "perhaps"
    with pytest.raises(jsonschema.ValidationError, match="perhaps"):
        jsonschema.validate(document, schema)
