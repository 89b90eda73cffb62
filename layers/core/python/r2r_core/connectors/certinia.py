"""Certinia PSA objects (they live in Salesforce) → canonical events, whichever channel brought them.

The same mappers serve Outbound Messages and Event Relay / CDC: each takes one record's latest
field values (:class:`Fields`) and the connector :class:`Directory`, and returns a :class:`Mapped`.

Canonical ids: the project of an opportunity is ``prj-<opportunity id>`` under engagement
``eng-<opportunity id>`` (what ``opportunity.closed_won`` set up); other records keep their
Salesforce id (a time entry is ``<timecard id>-<date>``, a resource is its ``pse__Resource__c``
contact id, a milestone its ``R2R_Milestone_Key__c`` — the id of the milestone in the contract
terms — or else its Salesforce id). Versions are ``SystemModstamp`` in epoch milliseconds.

Field names follow public Certinia code; ``R2R_…__c`` fields are formula fields the admin adds
(README, "Salesforce and Certinia"). Lookups such as ``pse__Region__c`` hold record ids, so the
region *name* comes from ``R2R_Region__c`` when present.  # shape unconfirmed: check with describe
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from r2r_core.connectors.base import FieldMapping, Fields, MappingError, NotReady, envelope, version_of
from r2r_core.connectors.directory import Directory, Remember
from r2r_core.connectors.salesforce import modified_at
from r2r_core.model.events import EventEnvelope

SOURCE_SYSTEM = "certinia"
PROJECT, ASSIGNMENT, PUBLISHED = "certinia_project", "certinia_assignment", "published"
DAY_FIELDS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
APPROVED_MILESTONE = {"approved", "complete", "completed"}


@dataclass
class Mapped:
    """Events to publish, directory items to remember once they are published, and a note when
    nothing is published (why)."""

    envelopes: list[EventEnvelope] = field(default_factory=list)
    remember: list[Remember] = field(default_factory=list)
    note: str | None = None


class _Context:
    def __init__(self, fields: Fields, directory: Directory, delivery_id: str) -> None:
        self.fields = fields
        self.directory = directory
        self.delivery_id = delivery_id
        self.changed = modified_at(fields)
        self.version = version_of(self.changed)
        self.count = 0

    def event(self, type_name: str, data: dict[str, Any]) -> EventEnvelope:
        self.count += 1
        return envelope(
            type_name=type_name,
            source_system=SOURCE_SYSTEM,
            delivery_id=f"{self.delivery_id}/{self.count}",
            occurred_at=self.changed,
            data=data,
            record=self.fields.record,
        )

    def project(self, field_name: str = "pse__Project__c") -> dict[str, Any]:
        sf_id = self.fields.req_salesforce_id(field_name)
        found = self.directory.get(PROJECT, sf_id)
        if found is None:
            raise NotReady(self.fields.record, f"project {sf_id} ({field_name}) is not known to r2r yet")
        found["sf_id"] = sf_id
        return found

    def region(self, project: dict[str, Any]) -> str:
        return self.fields.text("R2R_Region__c", required=False) or str(project["region"])


def map_project(fields: Fields, directory: Directory, delivery_id: str) -> Mapped:
    """``pse__Proj__c`` → ``project.upserted``; remembers the engagement it belongs to."""
    ctx = _Context(fields, directory, delivery_id)
    sf_id = fields.req_salesforce_id("Id")
    opportunity = fields.salesforce_id("pse__Opportunity__c", required=False)
    anchor = opportunity or sf_id
    account = fields.req_salesforce_id("pse__Account__c")
    region = fields.text("R2R_Region__c", required=False) or fields.req_text("pse__Region__c")
    data = {
        "id": f"prj-{anchor}",
        "version": ctx.version,
        "engagement_id": f"eng-{anchor}",
        "client_id": f"acct-{account}",
        "name": fields.req_text("Name", max_length=200),
        "start_date": fields.req_day("pse__Start_Date__c").isoformat(),
        "end_date": _iso(fields.day("pse__End_Date__c", required=False)),
        "region": region,
        "business_unit": fields.text("R2R_Practice__c", required=False)
        or fields.text("pse__Practice__c", required=False),
        "billable": fields.flag("pse__Is_Billable__c", default=True),
    }
    event = ctx.event("project.upserted", data)
    ref = {
        "engagement_id": data["engagement_id"],
        "project_id": data["id"],
        "client_id": data["client_id"],
        "region": region,
        "currency": fields.text("CurrencyIsoCode", required=False),
    }
    return Mapped([event], [Remember(PROJECT, sf_id, ctx.version, ref)])


def map_assignment(fields: Fields, directory: Directory, delivery_id: str) -> Mapped:
    """``pse__Assignment__c`` → ``assignment.upserted``; remembers role and resource for timecards."""
    ctx = _Context(fields, directory, delivery_id)
    sf_id = fields.req_salesforce_id("Id")
    project = ctx.project()
    resource = fields.req_salesforce_id("pse__Resource__c")
    role = fields.req_text("pse__Role__c")
    rate = fields.decimal("pse__Bill_Rate__c", required=False)
    currency = fields.text("CurrencyIsoCode", required=False) or project.get("currency")
    if rate is not None and not currency:
        raise fields.fail("CurrencyIsoCode", "is required with pse__Bill_Rate__c (the project has none)")
    data = {
        "id": sf_id,
        "version": ctx.version,
        "project_id": project["project_id"],
        "resource_id": resource,
        "role": role,
        "bill_rate_override": {"amount": str(rate), "currency": currency} if rate is not None else None,
        "start_date": fields.req_day("pse__Start_Date__c").isoformat(),
        "end_date": _iso(fields.day("pse__End_Date__c", required=False)),
        "planned_hours": _str(fields.decimal("pse__Planned_Hours__c", required=False)),
    }
    event = ctx.event("assignment.upserted", data)
    ref = {"role": role, "resource_id": resource, "project_sf_id": project["sf_id"]}
    return Mapped([event], [Remember(ASSIGNMENT, sf_id, ctx.version, ref)])


def map_timecard(fields: Fields, directory: Directory, delivery_id: str) -> Mapped:
    """``pse__Timecard_Header__c`` (one resource, one week) → one time entry per day with hours.

    Only an ``Approved`` card publishes approved entries. Against what r2r last published for the
    card: a day no longer approved (card rejected after approval, or the day's hours removed) gets
    a version with ``status: unapproved`` (the billing core credits it when invoiced), and a day
    whose hours, billability, role or region changed gets a new version (decided afresh).
    """
    ctx = _Context(fields, directory, delivery_id)
    sf_id = fields.req_salesforce_id("Id")
    previous = directory.get(PUBLISHED, f"pse__Timecard_Header__c#{sf_id}") or {"version": 0, "days": {}}
    if previous["version"] >= ctx.version:
        return Mapped(note=f"stale: r2r already published version {previous['version']} of this timecard")
    status = fields.req_text("pse__Status__c")
    approved = status == "Approved"
    start = fields.req_day("pse__Start_Date__c")
    end = fields.day("pse__End_Date__c", required=False) or start + timedelta(days=6)
    if not timedelta(0) <= end - start <= timedelta(days=6):
        raise fields.fail("pse__End_Date__c", "a timecard covers at most 7 days from pse__Start_Date__c")
    hours_by_day: dict[str, str] = {}
    for offset in range((end - start).days + 1):
        day = start + timedelta(days=offset)
        name = f"pse__{DAY_FIELDS[(day.weekday() + 1) % 7]}_Hours__c"
        hours = fields.decimal(name, required=False)
        if hours is None or hours == 0:
            continue
        if not 0 < hours <= 24:
            raise fields.fail(name, f"{hours} hours is not between 0 and 24")
        hours_by_day[day.isoformat()] = str(hours)
    if not approved and not previous["days"]:
        return Mapped(note=f"timecard is {status}: nothing approved to publish")

    project = ctx.project()
    assignment_id = fields.req_salesforce_id("pse__Assignment__c")
    assignment = directory.get(ASSIGNMENT, assignment_id)
    if assignment is None:
        raise NotReady(fields.record, f"assignment {assignment_id} is not known to r2r yet")
    resource = fields.req_salesforce_id("pse__Resource__c")
    billable = fields.flag("pse__Billable__c", default=True)
    region = ctx.region(project)
    common = {
        "version": ctx.version,
        "engagement_id": project["engagement_id"],
        "project_id": project["project_id"],
        "resource_id": resource,
        "assignment_id": assignment_id,
        "role": assignment["role"],
        "region": region,
        "billable": billable,
        "approved_at": ctx.changed.isoformat(),
    }
    now_days = {
        day: {
            "hours": hours,
            "fp": f"{hours}|{billable}|{assignment['role']}|{region}|{project['project_id']}",
        }
        for day, hours in (hours_by_day.items() if approved else ())
    }
    mapped = Mapped()
    for work_day, entry in sorted(previous["days"].items()):
        if work_day not in now_days:
            mapped.envelopes.append(
                ctx.event(
                    "time_entry.approved",
                    {
                        **common,
                        "id": f"{sf_id}-{work_day}",
                        "work_date": work_day,
                        "hours": entry["hours"],
                        "status": "unapproved",
                    },
                )
            )
    for work_day, entry in sorted(now_days.items()):
        if previous["days"].get(work_day, {}).get("fp") != entry["fp"]:
            mapped.envelopes.append(
                ctx.event(
                    "time_entry.approved",
                    {**common, "id": f"{sf_id}-{work_day}", "work_date": work_day, "hours": entry["hours"]},
                )
            )
    # ``common`` lets a later DELETE (Change Data Capture) withdraw the days without the record.
    kept = {k: v for k, v in common.items() if k not in ("version", "approved_at")}
    mapped.remember.append(
        Remember(
            PUBLISHED, f"pse__Timecard_Header__c#{sf_id}", ctx.version, {"days": now_days, "common": kept}
        )
    )
    if not mapped.envelopes:
        mapped.note = "no day changed since the last version r2r published"
    return mapped


def map_milestone(fields: Fields, directory: Directory, delivery_id: str) -> Mapped:
    """``pse__Milestone__c`` approved or complete → ``milestone.completed``."""
    ctx = _Context(fields, directory, delivery_id)
    sf_id = fields.req_salesforce_id("Id")
    status = (fields.text("pse__Status__c", required=False) or "").lower()
    if status not in APPROVED_MILESTONE and not fields.flag("pse__Approved__c", default=False):
        return Mapped(note=f"milestone status {status or '(none)'}: not complete")
    project = ctx.project()
    currency = fields.text("CurrencyIsoCode", required=False) or project.get("currency")
    if not currency:
        raise fields.fail("CurrencyIsoCode", "is required (the project has no currency either)")
    completed_on = (
        fields.day("pse__Actual_Date__c", required=False)
        or fields.day("pse__Target_Date__c", required=False)
        or ctx.changed.date()
    )
    data = {
        "id": fields.text("R2R_Milestone_Key__c", required=False, max_length=128) or sf_id,
        "version": ctx.version,
        "engagement_id": project["engagement_id"],
        "project_id": project["project_id"],
        "name": fields.req_text("Name"),
        "amount": {"amount": str(fields.req_decimal("pse__Milestone_Amount__c")), "currency": currency},
        "status": "completed",
        "completed_on": completed_on.isoformat(),
    }
    return Mapped([ctx.event("milestone.completed", data)])


def map_expense(fields: Fields, directory: Directory, delivery_id: str) -> Mapped:
    """``pse__Expense__c`` approved → ``expense.approved``; then rejected → ``status: unapproved``."""
    ctx = _Context(fields, directory, delivery_id)
    sf_id = fields.req_salesforce_id("Id")
    key = f"pse__Expense__c#{sf_id}"
    previous = directory.get(PUBLISHED, key) or {"version": 0, "approved": False}
    if previous["version"] >= ctx.version:
        return Mapped(note=f"stale: r2r already published version {previous['version']} of this expense")
    status = fields.text("pse__Status__c", required=False) or ""
    approved = status == "Approved" or fields.flag("pse__Approved__c", default=False)
    if not approved and not previous["approved"]:
        return Mapped(note=f"expense is {status or 'not approved'}: nothing to publish")
    project = ctx.project()
    currency = fields.text("CurrencyIsoCode", required=False) or project.get("currency")
    if not currency:
        raise fields.fail("CurrencyIsoCode", "is required (the project has no currency either)")
    data = {
        "id": sf_id,
        "version": ctx.version,
        "engagement_id": project["engagement_id"],
        "project_id": project["project_id"],
        "resource_id": fields.req_salesforce_id("pse__Resource__c"),
        "expense_date": fields.req_day("pse__Expense_Date__c").isoformat(),
        "category": fields.req_text("pse__Type__c"),
        "amount": {"amount": str(fields.req_decimal("pse__Amount__c")), "currency": currency},
        "billable": fields.flag("pse__Billable__c", default=True),
        "receipt_attached": fields.flag("R2R_Receipt_Attached__c", default=False),
        "status": "approved" if approved else "unapproved",
        "approved_at": ctx.changed.isoformat(),
    }
    kept = {k: v for k, v in data.items() if k not in ("version", "status", "approved_at")}
    return Mapped(
        [ctx.event("expense.approved", data)],
        [Remember(PUBLISHED, key, ctx.version, {"approved": approved, "data": kept})],
    )


def withdraw(
    sobject: str, sf_id: str, directory: Directory, *, delivery_id: str, deleted_at: datetime, record: str
) -> Mapped:
    """A deleted record (Change Data Capture ``DELETE``) → the canonical withdrawal, where there is one.

    A timecard's approved days and an approved expense are published again with ``status: unapproved``
    (the billing core credits what was invoiced), from what r2r last published for them. Other objects
    have no canonical removal: the result is a note (the caller audits the ignore).
    """
    if sobject not in ("pse__Timecard_Header__c", "pse__Expense__c"):
        return Mapped(note=f"{sobject} deleted: the canonical model has no removal for it (ignored)")
    version = version_of(deleted_at)
    key = f"{sobject}#{sf_id}"
    previous = directory.get(PUBLISHED, key)
    if previous is None:
        return Mapped(note=f"{sobject} deleted: r2r never published it (nothing to withdraw)")
    if previous["version"] >= version:
        return Mapped(note=f"stale: r2r already published version {previous['version']} of this record")
    if sobject == "pse__Expense__c":
        if not previous.get("approved"):
            return Mapped(
                note="expense deleted: it is not approved in r2r (nothing to withdraw)",
                remember=[
                    Remember(PUBLISHED, key, version, {**_without_version(previous), "approved": False})
                ],
            )
        if "data" not in previous:
            raise MappingError(
                record, "(deleted record)", "r2r does not hold what it published; withdraw by hand"
            )
        data = {
            **previous["data"],
            "version": version,
            "status": "unapproved",
            "approved_at": deleted_at.isoformat(),
        }
        return Mapped(
            [_removal("expense.approved", data, delivery_id, 1, at=deleted_at, record=record)],
            [Remember(PUBLISHED, key, version, {"approved": False, "data": previous["data"]})],
        )
    days = previous.get("days") or {}
    if not days:
        return Mapped(
            note="timecard deleted: no approved day in r2r (nothing to withdraw)",
            remember=[Remember(PUBLISHED, key, version, {"days": {}, "common": previous.get("common", {})})],
        )
    if "common" not in previous:
        raise MappingError(
            record, "(deleted record)", "r2r does not hold what it published; withdraw by hand"
        )
    common = {**previous["common"], "version": version, "approved_at": deleted_at.isoformat()}
    envelopes = [
        _removal(
            "time_entry.approved",
            {
                **common,
                "id": f"{sf_id}-{day}",
                "work_date": day,
                "hours": entry["hours"],
                "status": "unapproved",
            },
            delivery_id,
            index,
            at=deleted_at,
            record=record,
        )
        for index, (day, entry) in enumerate(sorted(days.items()), start=1)
    ]
    return Mapped(envelopes, [Remember(PUBLISHED, key, version, {"days": {}, "common": previous["common"]})])


def _removal(
    type_name: str, data: dict[str, Any], delivery_id: str, index: int, *, at: datetime, record: str
) -> EventEnvelope:
    return envelope(
        type_name=type_name,
        source_system=SOURCE_SYSTEM,
        delivery_id=f"{delivery_id}/{index}",
        occurred_at=at,
        data=data,
        record=record,
    )


def _without_version(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != "version"}


MAPPERS: dict[str, Callable[[Fields, Directory, str], Mapped]] = {
    "pse__Proj__c": map_project,
    "pse__Assignment__c": map_assignment,
    "pse__Timecard_Header__c": map_timecard,
    "pse__Milestone__c": map_milestone,
    "pse__Expense__c": map_expense,
}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None


# --- Field map (declarative; the integration catalog lists it, a test proves it against the fixtures) ---

_PRJ, _ASG, _TE = "project.upserted", "assignment.upserted", "time_entry.approved"
_MS, _EXP = "milestone.completed", "expense.approved"
FIELD_MAP: dict[str, tuple[FieldMapping, ...]] = {
    sobject: tuple(FieldMapping(*row) for row in rows)
    for sobject, rows in {
        "pse__Proj__c": (
            ("pse__Opportunity__c", _PRJ, "id", "id"),
            ("pse__Opportunity__c", _PRJ, "engagement_id", "id"),
            ("pse__Account__c", _PRJ, "client_id", "id"),
            ("Name", _PRJ, "name", "copy"),
            ("pse__Start_Date__c", _PRJ, "start_date", "date"),
            ("pse__End_Date__c", _PRJ, "end_date", "date"),
            ("R2R_Region__c", _PRJ, "region", "copy"),
            ("pse__Region__c", _PRJ, "region", "derived"),
            ("R2R_Practice__c", _PRJ, "business_unit", "copy"),
            ("pse__Is_Billable__c", _PRJ, "billable", "flag"),
        ),
        "pse__Assignment__c": (
            ("Id", _ASG, "id", "copy"),
            ("pse__Project__c", _ASG, "project_id", "lookup"),
            ("pse__Resource__c", _ASG, "resource_id", "copy"),
            ("pse__Role__c", _ASG, "role", "copy"),
            ("pse__Bill_Rate__c", _ASG, "bill_rate_override.amount", "decimal"),
            ("CurrencyIsoCode", _ASG, "bill_rate_override.currency", "copy"),
            ("pse__Start_Date__c", _ASG, "start_date", "date"),
            ("pse__End_Date__c", _ASG, "end_date", "date"),
            ("pse__Planned_Hours__c", _ASG, "planned_hours", "decimal"),
        ),
        "pse__Timecard_Header__c": (
            ("Id", _TE, "id", "id"),
            ("pse__Project__c", _TE, "project_id", "lookup"),
            ("pse__Project__c", _TE, "engagement_id", "lookup"),
            ("pse__Assignment__c", _TE, "assignment_id", "copy"),
            ("pse__Assignment__c", _TE, "role", "lookup"),
            ("pse__Resource__c", _TE, "resource_id", "copy"),
            ("pse__Billable__c", _TE, "billable", "flag"),
            ("R2R_Region__c", _TE, "region", "copy"),
            ("pse__Start_Date__c", _TE, "work_date", "derived"),
            ("pse__<Day>_Hours__c", _TE, "hours", "derived"),
            ("pse__Status__c", _TE, "status", "derived"),
        ),
        "pse__Milestone__c": (
            ("R2R_Milestone_Key__c", _MS, "id", "copy"),
            ("pse__Project__c", _MS, "project_id", "lookup"),
            ("Name", _MS, "name", "copy"),
            ("pse__Milestone_Amount__c", _MS, "amount.amount", "decimal"),
            ("CurrencyIsoCode", _MS, "amount.currency", "copy"),
            ("pse__Actual_Date__c", _MS, "completed_on", "date"),
            ("pse__Status__c", _MS, "status", "derived"),
        ),
        "pse__Expense__c": (
            ("Id", _EXP, "id", "copy"),
            ("pse__Project__c", _EXP, "project_id", "lookup"),
            ("pse__Resource__c", _EXP, "resource_id", "copy"),
            ("pse__Expense_Date__c", _EXP, "expense_date", "date"),
            ("pse__Type__c", _EXP, "category", "copy"),
            ("pse__Amount__c", _EXP, "amount.amount", "decimal"),
            ("CurrencyIsoCode", _EXP, "amount.currency", "copy"),
            ("pse__Billable__c", _EXP, "billable", "flag"),
            ("R2R_Receipt_Attached__c", _EXP, "receipt_attached", "flag"),
            ("pse__Status__c", _EXP, "status", "derived"),
        ),
    }.items()
}
