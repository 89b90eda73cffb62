"""What a connector remembers about source records between deliveries (StateTable ``SRCREF#…``).

Mapping stays pure: a mapper reads the directory and returns :class:`Remember` items; the intake
applies them only after the events are published, so a failed publish leaves nothing half-written.

=====================================  =======  =============================================
pk                                     sk       what
=====================================  =======  =============================================
``SRCREF#certinia_project#<sf id>``    ``REF``  engagement, project, client, region, currency
``SRCREF#certinia_assignment#<sf id>`` ``REF``  role, resource, project of an assignment
``SRCREF#published#<object>#<id>``     ``REF``  what r2r last published for a timecard/expense
=====================================  =======  =============================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from r2r_core.state import StateStore, now_iso


@dataclass(frozen=True)
class Remember:
    kind: str
    key: str
    version: int
    value: dict[str, Any] = field(default_factory=dict)


class Directory(Protocol):
    def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def put(self, item: Remember) -> bool: ...


class StateDirectory:
    """The directory in StateTable; a newer version of a reference replaces an older one."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        item = self.store.get(f"SRCREF#{kind}#{key}", "REF")
        if item is None:
            return None
        value: dict[str, Any] = json.loads(item["value"])
        value["version"] = int(item["version"])
        return value

    def put(self, item: Remember) -> bool:
        return self.store.put_versioned(
            {
                "pk": f"SRCREF#{item.kind}#{item.key}",
                "sk": "REF",
                "version": item.version,
                "value": json.dumps(item.value, sort_keys=True),
                "updated_at": now_iso(),
            }
        )


class MemoryDirectory:
    """An in-memory directory (contract tests, unit tests)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        found = self.items.get((kind, key))
        return dict(found) if found is not None else None

    def put(self, item: Remember) -> bool:
        existing = self.items.get((item.kind, item.key))
        if existing is not None and existing["version"] >= item.version:
            return False
        self.items[(item.kind, item.key)] = {**item.value, "version": item.version}
        return True
