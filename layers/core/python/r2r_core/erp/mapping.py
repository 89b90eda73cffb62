"""Per-account NetSuite mapping: which internal ids r2r writes for subsidiary, items and segments.

Every NetSuite account has its own internal ids for the subsidiary, the service items, the
department / class / location segments and the tax codes. They live in the ``ErpCredentials``
secret under ``"mapping"`` (an administrator fills them in once, see the README), e.g.::

    {"mapping": {
        "subsidiary_id": "1",
        "subsidiaries": {"EMEA": "2", "NA": "1"},   # by region (employees); else subsidiary_id
        "items": {"time": "20", "milestone": "21", "expense": "22", "adjustment": "23", "default": "20"},
        "service_items_by_role": {"Cloud Engineer": "31", "Solution Architect": "32"},
        "departments": {"EMEA": "4"},          # by region (or business unit, region wins)
        "classes": {"Cloud": "7"},             # by business unit
        "locations": {"EMEA": "2"},            # by region
        "tax_codes": {"DE": "11", "default": "10"},   # by client billing country
        "expense_categories": {"travel": "5"},
        "currency_ids": {"EUR": "2"},
        "time_posting": "summary",             # "detail" (default): one timeBill per entry
        "summary_flush_changes": 500           # summary mode: flush a period after this many changes
    }}

``time_posting`` chooses how approved time reaches this account (see ``r2r_core.flows.time_summary``):
``detail`` posts one timeBill per entry; ``summary`` records every charge in r2r as usual (full
lineage) but posts one timeBill per (project, role, region, billing period, rate, billable), recomputed
from r2r's charges at a flush: when ``summary_flush_changes`` charges of an engagement and period have
changed, before an invoice run of the engagement, and by the daily period-end tick for ended periods.

The older top-level ``items`` and ``expense_categories`` keys are still read. Anything left out is
simply not sent (NetSuite then applies the record's defaults), except the invoice item, which falls
back to ``items.default`` and then to ``"1"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from r2r_core.memo import ObjectMemo

__all__ = ["ErpMapping", "Segments"]

_IdMap = dict[str, str]


class Segments(BaseModel):
    """Classification of a transaction: NetSuite's department, class and location (internal ids)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    department_id: str | None = None
    class_id: str | None = None
    location_id: str | None = None

    def as_fields(self) -> dict[str, dict[str, str]]:
        """``{"department": {"id": ...}, "class": ..., "location": ...}`` for what is known."""
        fields: dict[str, dict[str, str]] = {}  # in this order; asked once per record: no loop
        # The field values read from the instance's dict (where pydantic keeps them): a third cheaper
        # than three attribute reads of a model, once per record.
        values = self.__dict__
        if found := values["department_id"]:
            fields["department"] = {"id": found}
        if found := values["class_id"]:
            fields["class"] = {"id": found}
        if found := values["location_id"]:
            fields["location"] = {"id": found}
        return fields


class ErpMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    subsidiary_id: str | None = None
    subsidiaries: _IdMap = Field(default_factory=dict)
    items: _IdMap = Field(default_factory=dict)
    service_items_by_role: _IdMap = Field(default_factory=dict)
    departments: _IdMap = Field(default_factory=dict)
    classes: _IdMap = Field(default_factory=dict)
    locations: _IdMap = Field(default_factory=dict)
    tax_codes: _IdMap = Field(default_factory=dict)
    expense_categories: _IdMap = Field(default_factory=dict)
    currency_ids: _IdMap = Field(default_factory=dict)
    # How approved time is posted to this account: one timeBill per entry, or summaries per period.
    time_posting: Literal["detail", "summary"] = "detail"
    summary_flush_changes: int = Field(default=500, ge=1, le=100_000)

    @property
    def posts_time_in_summary(self) -> bool:
        return self.time_posting == "summary"

    @field_validator(
        "subsidiaries",
        "items",
        "service_items_by_role",
        "departments",
        "classes",
        "locations",
        "tax_codes",
        "expense_categories",
        "currency_ids",
        mode="before",
    )
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): str(v) for k, v in value.items() if v is not None and not str(k).startswith("_")}
        return value

    @field_validator("subsidiary_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @classmethod
    def from_secret(cls, document: Mapping[str, Any] | str | bytes | None) -> ErpMapping:
        """From the ``ErpCredentials`` secret (its ``mapping`` key, plus the legacy top-level keys)."""
        if document is None:
            return cls()
        if isinstance(document, str | bytes):
            document = json.loads(document)
            assert isinstance(document, Mapping)
        values: dict[str, Any] = {}
        for legacy in ("items", "expense_categories"):
            if isinstance(document.get(legacy), Mapping):
                values[legacy] = document[legacy]
        nested = document.get("mapping")
        if isinstance(nested, Mapping):
            for key, value in nested.items():
                # A legacy top-level map and the nested one merge, the nested one winning per key.
                if isinstance(value, Mapping) and isinstance(values.get(key), Mapping):
                    values[key] = {**values[key], **value}
                else:
                    values[key] = value
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
            raise ValueError("ERP mapping configuration is invalid at: " + ", ".join(fields)) from None

    def item_for(self, kind: str, role: str | None = None) -> str:
        """The service item of an invoice line: by role for time, else by line kind, else default."""
        if role and kind == "time":
            found = self.service_items_by_role.get(role)  # ids are text: None only when not mapped
            if found is not None:
                return found
        return self.items.get(kind) or self.items.get("default") or "1"

    def segments(self, region: str | None, business_unit: str | None) -> Segments:
        """Department by region (else business unit), class by business unit, location by region.

        Remembered per mapping object, region and business unit (``Segments`` is frozen, so one
        instance serves every record): building it cost a third of a ``timeBill`` body.
        """
        table = _SEGMENTS.table(self)
        key = (region, business_unit)
        found: Segments | None = table.get(key)
        if found is None:
            found = self._segments(region, business_unit)
            _SEGMENTS.put(table, key, found)
        return found

    def _segments(self, region: str | None, business_unit: str | None) -> Segments:
        department = (self.departments.get(region) if region else None) or (
            self.departments.get(business_unit) if business_unit else None
        )
        # The maps are validated id → id text already: no need to validate again on every record.
        return Segments.model_construct(
            department_id=department,
            class_id=self.classes.get(business_unit) if business_unit else None,
            location_id=self.locations.get(region) if region else None,
        )

    def subsidiary_for(self, region: str | None) -> str | None:
        """The subsidiary of a region (an employee's), else the account's one subsidiary."""
        return (self.subsidiaries.get(region) if region else None) or self.subsidiary_id

    def tax_code_for(self, country: str | None) -> str | None:
        """The tax code of the client's billing country, else ``default``, else none."""
        if country and country.upper() in self.tax_codes:
            return self.tax_codes[country.upper()]
        return self.tax_codes.get("default")

    def currency_id(self, currency: str) -> str | None:
        return self.currency_ids.get(currency.upper())


# Per ErpMapping object (r2r_core.memo: by identity, dropped with the mapping); a mapping has a few
# regions and business units.
_SEGMENTS = ObjectMemo(max_objects=16, max_keys=256)
