"""One Salesforce record (Opportunity or a Certinia object) → canonical events, whatever the channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from r2r_core.connectors.base import Fields, MappingError
from r2r_core.connectors.certinia import MAPPERS, Mapped
from r2r_core.connectors.directory import Directory
from r2r_core.connectors.salesforce import map_opportunity

SUPPORTED = ("Opportunity", *MAPPERS)


def map_record(
    sobject_type: str, values: Mapping[str, Any], *, directory: Directory, delivery_id: str, record: str
) -> Mapped:
    """Map one record's latest values; ``record`` names it in errors."""
    fields = Fields(record, values)
    if sobject_type == "Opportunity":
        return Mapped(map_opportunity(fields, delivery_id=delivery_id))
    mapper = MAPPERS.get(sobject_type)
    if mapper is None:
        raise MappingError(
            record, "sObject type", f"{sobject_type!r} is not mapped by r2r (mapped: {', '.join(SUPPORTED)})"
        )
    return mapper(fields, directory, delivery_id)
