"""Kantata OX (formerly Mavenlink) records → canonical events.

Kantata has no webhooks: the poller (:mod:`r2r_core.flows.kantata_poll`) reads pages of changed records
and hands each one, with the page's side-loaded objects, to the mappers here. A page looks like::

    {"count": 2, "results": [{"key": "time_entries", "id": "10"}, ...],
     "time_entries": {"10": {...}}, "users": {"7": {...}}, "roles": {"3": {...}}}

``results`` is the ordered list of matches; the top-level keyed objects hold them and whatever was
side-loaded (``include=``). Ids are strings.

**The workspace ↔ engagement link** (the crosswalk, StateTable ``SRCREF#kantata_workspace#<workspace
id>`` / ``REF``): which r2r engagement and project a Kantata workspace bills. It is written when the
workspace is provisioned for a closed-won deal, or by an operator (``r2r kantata link``), and holds the
engagement, project, client, region, business unit, currency and an optional ``default_role``.

**Canonical ids**: a time entry is ``kantata-te-<id>``, an expense ``kantata-exp-<id>``, a worker
``kantata-user-<user id>``; the project is the linked r2r project. The version of a record is its
``updated_at`` in epoch milliseconds, so a record read twice (overlapping polls, a redriven tick) is
published once, and an older read never overwrites a newer one.

**Exact conversions** (never a float): ``time_in_minutes`` (an integer) → hours = minutes / 60 as a
``Decimal``, exact whenever the minutes are a multiple of 3 (every 0.05 h) and otherwise rounded half-up
to the 0.01 h the canonical model holds (20 min → 0.33 h); ``*_in_cents`` (an integer) → ``Money``
in the record's currency (else the workspace's): cents × 10^-minor units, the minor units taken from
Kantata's ``currency_base_unit`` when sent (100 → 2), else ISO 4217; an amount that does not fit the
currency's minor unit is refused, never rounded.

Field names follow Kantata's public API reference. *Shape unconfirmed*: the time entry's ``role_id``
(with ``include=role`` side-loading ``roles``), an expense's ``approved`` and ``receipt_id``, and the
``updated_after`` filter name (see the README, "Kantata OX (polling)").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from r2r_core.connectors.base import FieldMapping, Fields, MappingError, NotReady, envelope, version_of
from r2r_core.connectors.directory import Directory, Remember
from r2r_core.model.events import EventEnvelope
from r2r_core.model.money import Money, UnknownCurrency, minor_units

SOURCE_SYSTEM = "kantata"
TIME_ENTRIES, EXPENSES, WORKSPACES = "time_entries", "expenses", "workspaces"
RESOURCES = (WORKSPACES, TIME_ENTRIES, EXPENSES)  # the poll order: links and currencies first
WORKSPACE_LINK = "kantata_workspace"
PUBLISHED = "published"
HOUR_QUANTUM = Decimal("0.01")
MAX_MINUTES_PER_DAY = 24 * 60
MAX_CENTS_DIGITS = 15


@dataclass
class Mapped:
    """Events to publish, directory items to remember once they are published, and why nothing was."""

    envelopes: list[EventEnvelope] = field(default_factory=list)
    remember: list[Remember] = field(default_factory=list)
    note: str | None = None


class WorkspaceNotLinked(NotReady):
    """Approved time or an expense in a workspace no r2r engagement is linked to."""

    def __init__(self, record: str, workspace_id: str) -> None:
        super().__init__(record, f"workspace {workspace_id} is not linked to an r2r engagement")
        self.workspace_id = workspace_id


# --- pages ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KantataPage:
    """One page of a list endpoint: the matches in ``results`` order, and everything side-loaded."""

    resource: str
    page: int
    per_page: int
    count: int
    records: list[tuple[str, Mapping[str, Any] | None]]  # (id, object or None when the page lacks it)
    included: Mapping[str, Mapping[str, Mapping[str, Any]]]

    @property
    def has_more(self) -> bool:
        return self.page * self.per_page < self.count and bool(self.records)


def parse_page(resource: str, document: Any, *, page: int, per_page: int) -> KantataPage:
    """Read a list answer; a page that is not Kantata's shape raises :class:`MappingError`."""
    where = f"Kantata {resource} page {page}"
    if not isinstance(document, dict):
        raise MappingError(where, "(document)", f"must be a JSON object, not {type(document).__name__}")
    count = document.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise MappingError(where, "count", f"must be a whole number, not {str(count)[:40]!r}")
    results = document.get("results")
    if not isinstance(results, list):
        raise MappingError(where, "results", "must be a list of {key, id}")
    included: dict[str, dict[str, Mapping[str, Any]]] = {}
    for key, value in document.items():
        if key in ("count", "results", "meta") or not isinstance(value, dict):
            continue
        included[key] = {str(k): v for k, v in value.items() if isinstance(v, dict)}
    records: list[tuple[str, Mapping[str, Any] | None]] = []
    for index, ref in enumerate(results):
        if not isinstance(ref, dict) or not isinstance(ref.get("key"), str) or ref.get("id") is None:
            raise MappingError(where, f"results[{index}]", "must be an object with key and id")
        if ref["key"] != resource:
            continue
        record_id = str(ref["id"])
        records.append((record_id, included.get(resource, {}).get(record_id)))
    return KantataPage(
        resource=resource, page=page, per_page=per_page, count=count, records=records, included=included
    )


# --- exact conversions -----------------------------------------------------------------------------


def _whole_number(fields: Fields, name: str) -> int:
    value = fields.raw(name)
    if value is None:
        raise fields.fail(name, "is required")
    if isinstance(value, (bool, float)):
        raise fields.fail(name, f"must be a whole number, not {type(value).__name__} {str(value)[:40]}")
    if isinstance(value, str):
        text = value.lstrip("-")
        if not text.isdigit():
            raise fields.fail(name, f"{value[:40]!r} is not a whole number")
        value = int(value)
    if not isinstance(value, int):
        raise fields.fail(name, f"must be a whole number, not {type(value).__name__}")
    if len(str(abs(value))) > MAX_CENTS_DIGITS:
        raise fields.fail(name, f"{value} has more than {MAX_CENTS_DIGITS} digits")
    return value


def minutes_to_hours(minutes: int) -> Decimal:
    """Hours for whole minutes, without a float: exact to 0.01 h for multiples of 3 minutes, else half-up."""
    return (Decimal(minutes) / Decimal(60)).quantize(HOUR_QUANTUM, rounding=ROUND_HALF_UP)


def hours_of(fields: Fields, name: str = "time_in_minutes") -> Decimal:
    minutes = _whole_number(fields, name)
    if not 0 <= minutes <= MAX_MINUTES_PER_DAY:
        raise fields.fail(name, f"{minutes} minutes is not between 0 and {MAX_MINUTES_PER_DAY} (one day)")
    return minutes_to_hours(minutes)


def cents_to_money(cents: int, currency: str, *, base_unit: int | None = None) -> Money:
    """``cents`` minor units of ``currency`` as exact Money (``base_unit``: units per major unit)."""
    digits = minor_units(currency)
    if base_unit is not None:
        scale = len(str(base_unit)) - 1
        if base_unit < 1 or base_unit != 10**scale:
            raise ValueError(f"currency_base_unit {base_unit} is not a power of ten")
        digits_sent = scale
    else:
        digits_sent = digits
    amount = Decimal(cents).scaleb(-digits_sent)
    quantum = Decimal(1).scaleb(-digits)
    if amount != amount.quantize(quantum):
        raise ValueError(
            f"{cents} cents at base unit {10**digits_sent} is finer than {currency}'s minor unit"
        )
    return Money(amount=amount.quantize(quantum), currency=currency)


def money_of(fields: Fields, name: str, currency: str) -> Money:
    cents = _whole_number(fields, name)
    base = fields.raw("currency_base_unit")
    base_unit = _whole_number(fields, "currency_base_unit") if base is not None else None
    try:
        return cents_to_money(cents, currency, base_unit=base_unit)
    except UnknownCurrency as exc:
        raise fields.fail("currency", str(exc)) from None
    except ValueError as exc:
        raise fields.fail(name, str(exc)) from None


# --- mappers ----------------------------------------------------------------------------------------


class _Context:
    def __init__(self, resource: str, fields: Fields, directory: Directory) -> None:
        self.resource = resource
        self.fields = fields
        self.directory = directory
        self.id = fields.req_text("id", max_length=32)
        self.changed = fields.req_timestamp("updated_at")
        self.version = version_of(self.changed)

    @property
    def published_key(self) -> str:
        return f"kantata_{self.resource}#{self.id}"

    def previous(self) -> dict[str, Any]:
        return self.directory.get(PUBLISHED, self.published_key) or {"version": 0, "approved": False}

    def link(self) -> dict[str, Any]:
        workspace_id = self.fields.req_text("workspace_id", max_length=32)
        found = self.directory.get(WORKSPACE_LINK, workspace_id)
        if found is None:
            raise WorkspaceNotLinked(self.fields.record, workspace_id)
        return found

    def event(self, type_name: str, data: dict[str, Any]) -> EventEnvelope:
        return envelope(
            type_name=type_name,
            source_system=SOURCE_SYSTEM,
            delivery_id=f"{self.resource}/{self.id}/v{self.version}",
            occurred_at=self.changed,
            data=data,
            record=self.fields.record,
        )


def record_name(resource: str, record_id: str) -> str:
    return f"Kantata {resource} {record_id}"


def map_time_entry(
    fields: Fields, included: Mapping[str, Mapping[str, Mapping[str, Any]]], directory: Directory
) -> Mapped:
    """An approved time entry → ``time_entry.approved``; approved, then no longer → ``status: unapproved``."""
    ctx = _Context(TIME_ENTRIES, fields, directory)
    previous = ctx.previous()
    if previous["version"] >= ctx.version:
        return Mapped(note=f"already published version {previous['version']} of this time entry")
    hours = hours_of(fields)
    # An approved entry edited down to 0 minutes withdraws what was approved, like an unapproval.
    approved = fields.flag("approved", default=False) and hours > 0
    if not approved and not previous["approved"]:
        return Mapped(note="not approved (or 0 minutes): nothing to publish")
    link = ctx.link()
    user_id = fields.req_text("user_id", max_length=32)
    data = {
        "id": f"kantata-te-{ctx.id}",
        "version": ctx.version,
        "engagement_id": link["engagement_id"],
        "project_id": link["project_id"],
        "resource_id": f"kantata-user-{user_id}",
        "assignment_id": None,
        "role": _role(fields, included, link),
        "region": link["region"],
        "work_date": fields.req_day("date_performed").isoformat(),
        # A withdrawn entry carries the hours that were approved (the billing core credits them).
        "hours": str(hours) if approved else str(previous.get("hours") or hours),
        "billable": fields.flag("billable", default=True),
        "status": "approved" if approved else "unapproved",
        "approved_at": ctx.changed.isoformat(),
        "notes": fields.text("notes", required=False, max_length=2000),
    }
    event = ctx.event("time_entry.approved", data)
    remembered = {"approved": approved, "hours": data["hours"]}
    return Mapped([event], [Remember(PUBLISHED, ctx.published_key, ctx.version, remembered)])


def _role(
    fields: Fields, included: Mapping[str, Mapping[str, Mapping[str, Any]]], link: Mapping[str, Any]
) -> str:
    role_id = fields.text("role_id", required=False, max_length=32)
    if role_id is None:
        if link.get("default_role"):
            return str(link["default_role"])
        raise fields.fail(
            "role_id", "is required: the entry has no role and the workspace link no default_role"
        )
    role = included.get("roles", {}).get(role_id)
    if role is None:
        raise fields.fail("role_id", f"role {role_id} is not in the page's side-loaded roles")
    return Fields(f"Kantata role {role_id}", role).req_text("name")


def map_expense(
    fields: Fields, included: Mapping[str, Mapping[str, Mapping[str, Any]]], directory: Directory
) -> Mapped:
    """An expense → ``expense.approved``; one no longer approved → ``status: unapproved``.

    Kantata logs workspace expenses without an approval step: an expense without an ``approved``
    field counts as approved; one that says ``approved: false`` does not (*shape unconfirmed*).
    """
    ctx = _Context(EXPENSES, fields, directory)
    previous = ctx.previous()
    if previous["version"] >= ctx.version:
        return Mapped(note=f"already published version {previous['version']} of this expense")
    approved = fields.flag("approved", default=True)
    if not approved and not previous["approved"]:
        return Mapped(note="not approved: nothing to publish")
    link = ctx.link()
    currency = fields.text("currency", required=False, max_length=3) or link.get("currency")
    if not currency:
        raise fields.fail("currency", "is required (the linked workspace has no currency either)")
    user_id = fields.req_text("user_id", max_length=32)
    data = {
        "id": f"kantata-exp-{ctx.id}",
        "version": ctx.version,
        "engagement_id": link["engagement_id"],
        "project_id": link["project_id"],
        "resource_id": f"kantata-user-{user_id}",
        "expense_date": fields.req_day("date").isoformat(),
        "category": fields.req_text("category"),
        "amount": money_of(fields, "amount_in_cents", str(currency)).model_dump(mode="json"),
        "billable": fields.flag("is_billable", default=True),
        "receipt_attached": fields.has("receipt_id"),
        "status": "approved" if approved else "unapproved",
        "approved_at": ctx.changed.isoformat(),
    }
    event = ctx.event("expense.approved", data)
    return Mapped([event], [Remember(PUBLISHED, ctx.published_key, ctx.version, {"approved": approved})])


def map_workspace(
    fields: Fields, included: Mapping[str, Mapping[str, Mapping[str, Any]]], directory: Directory
) -> Mapped:
    """A linked workspace → ``project.upserted`` (the PSA owns projects); its currency is remembered
    on the link so expenses without one are read in it. An unlinked workspace is only noted."""
    ctx = _Context(WORKSPACES, fields, directory)
    link = directory.get(WORKSPACE_LINK, ctx.id)
    if link is None:
        return Mapped(note=f"workspace {ctx.id} is not linked to an r2r engagement")
    if int(link.get("version", 0)) >= ctx.version:
        return Mapped(note=f"already read version {link['version']} of this workspace")
    currency = fields.text("currency", required=False, max_length=3) or link.get("currency")
    if currency:
        try:
            minor_units(str(currency))
        except UnknownCurrency as exc:
            raise fields.fail("currency", str(exc)) from None
    start = fields.day("start_date", required=False)
    data = {
        "id": link["project_id"],
        "version": ctx.version,
        "engagement_id": link["engagement_id"],
        "client_id": link["client_id"],
        "name": fields.req_text("title"),
        "start_date": start.isoformat() if start else link["start_date"],
        "end_date": _iso(fields.day("due_date", required=False)),
        "region": link["region"],
        "business_unit": link.get("business_unit"),
        "billable": True,
    }
    event = ctx.event("project.upserted", data)
    value = {k: v for k, v in link.items() if k != "version"} | {"currency": currency, "title": data["name"]}
    return Mapped([event], [Remember(WORKSPACE_LINK, ctx.id, ctx.version, value)])


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


Mapper = Callable[[Fields, Mapping[str, Mapping[str, Mapping[str, Any]]], Directory], Mapped]
MAPPERS: dict[str, Mapper] = {
    WORKSPACES: map_workspace,
    TIME_ENTRIES: map_time_entry,
    EXPENSES: map_expense,
}
# What each list request side-loads (``include=``): the role names time entries are billed by.
INCLUDES: dict[str, str] = {TIME_ENTRIES: "role", EXPENSES: "", WORKSPACES: ""}


def map_record(
    resource: str,
    record_id: str,
    record: Mapping[str, Any] | None,
    included: Mapping[str, Mapping[str, Mapping[str, Any]]],
    directory: Directory,
) -> Mapped:
    """Map one record of a page (``None``: the page referenced it in ``results`` but did not hold it)."""
    fields = Fields(record_name(resource, record_id), record or {})
    if record is None:
        raise fields.fail(f"{resource}.{record_id}", "is referenced in results but missing from the page")
    if str(record.get("id", record_id)) != record_id:
        raise fields.fail("id", f"{record.get('id')!r} differs from the results reference {record_id!r}")
    return MAPPERS[resource](fields, included, directory)


# --- the workspace ↔ engagement link ------------------------------------------------------------------


def link_value(
    *,
    engagement_id: str,
    project_id: str,
    client_id: str,
    region: str,
    start_date: str,
    business_unit: str | None,
    currency: str | None,
    default_role: str | None = None,
) -> dict[str, Any]:
    return {
        "engagement_id": engagement_id,
        "project_id": project_id,
        "client_id": client_id,
        "region": region,
        "start_date": start_date,
        "business_unit": business_unit,
        "currency": currency,
        "default_role": default_role,
    }


# --- Field map (declarative; the integration catalog lists it) ----------------------------------------

_TE, _EXP, _PRJ = "time_entry.approved", "expense.approved", "project.upserted"
FIELD_MAP: dict[str, tuple[FieldMapping, ...]] = {
    resource: tuple(FieldMapping(*row) for row in rows)
    for resource, rows in {
        TIME_ENTRIES: (
            ("id", _TE, "id", "id"),
            ("updated_at", _TE, "version", "derived"),
            ("workspace_id", _TE, "engagement_id", "lookup"),
            ("workspace_id", _TE, "project_id", "lookup"),
            ("workspace_id", _TE, "region", "lookup"),
            ("user_id", _TE, "resource_id", "id"),
            ("role_id", _TE, "role", "lookup"),
            ("date_performed", _TE, "work_date", "date"),
            ("time_in_minutes", _TE, "hours", "derived"),
            ("billable", _TE, "billable", "flag"),
            ("approved", _TE, "status", "derived"),
            ("notes", _TE, "notes", "copy"),
        ),
        EXPENSES: (
            ("id", _EXP, "id", "id"),
            ("updated_at", _EXP, "version", "derived"),
            ("workspace_id", _EXP, "engagement_id", "lookup"),
            ("workspace_id", _EXP, "project_id", "lookup"),
            ("user_id", _EXP, "resource_id", "id"),
            ("date", _EXP, "expense_date", "date"),
            ("category", _EXP, "category", "copy"),
            ("amount_in_cents", _EXP, "amount.amount", "derived"),
            ("currency", _EXP, "amount.currency", "copy"),
            ("is_billable", _EXP, "billable", "flag"),
            ("receipt_id", _EXP, "receipt_attached", "derived"),
            ("approved", _EXP, "status", "derived"),
        ),
        WORKSPACES: (
            ("id", _PRJ, "id", "lookup"),
            ("updated_at", _PRJ, "version", "derived"),
            ("title", _PRJ, "name", "copy"),
            ("start_date", _PRJ, "start_date", "date"),
            ("due_date", _PRJ, "end_date", "date"),
            ("currency", _PRJ, "(link currency)", "copy"),
        ),
    }.items()
}
