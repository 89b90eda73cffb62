"""Export a JSON Schema per canonical event type into a folder (``make schemas``).

``tests/unit/test_schemas.py`` fails when the committed schemas differ from the model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from r2r_core.model.events import EVENT_TYPES, typed_envelope_model


def render_schemas() -> dict[str, str]:
    """File name → JSON text for every event type."""
    files: dict[str, str] = {}
    for name, kind in sorted(EVENT_TYPES.items()):
        schema = typed_envelope_model(name).model_json_schema(mode="validation")
        schema["$id"] = f"https://schemas.r2r.dev/events/{name}/{kind.schema_version}.json"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        files[f"{name}.v{kind.schema_version}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rendered = render_schemas()
    for stale in folder.glob("*.json"):
        if stale.name not in rendered:
            stale.unlink()
    written = []
    for file_name, text in rendered.items():
        path = folder / file_name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "events/schemas")
    for path in write_schemas(target):
        print(path)
