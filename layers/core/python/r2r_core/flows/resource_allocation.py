"""Assignments → the ERP project's resource allocations and its cost forecast; workers → ERP employees.

**Allocation** (``assignment.upserted``): one NetSuite ``resourceAllocation`` per assignment, upserted by
external id ``r2r-allocation-<assignment id>``: the project (the job set up from the closed-won deal), the
worker (the ``employee`` r2r keeps from the HRIS, ``r2r-resource-<resource id>``), the planned hours
(``allocationAmount``, unit hours) and the assignment's dates. The assignment is remembered under the
project (``PROJ#<project id>`` / ``ALLOC#<assignment id>``, versioned) and under the worker
(``RES#<resource id>`` / ``ALLOC#<assignment id>``) so a new cost rate finds the projects to re-forecast.
A project not yet set up in the ERP is retryable (the message waits on its queue; after its retries it
rests in the DLQ for a redrive). A worker the HRIS has not sent yet does not fail the message: the
assignment is kept ``waiting_for_worker`` and allocated by ``resource_sync`` when the worker's employee is
written. An assignment without planned hours is remembered and allocates nothing.

**Cost forecast**: per allocation, hours × the worker's HRIS cost rate (``RES#<id>`` / ``HRIS``,
``cost_rate``), rounded half-up to the currency's minor unit once per allocation; the forecast is their
sum, in the cost rates' currency, written on the job (``estimatedLaborCost``, ``estimatedTime``) and kept
as ``PROJ#<project id>`` / ``FORECAST`` with its lines. Hours of workers without a cost rate are
``uncosted_hours`` (never costed at zero). Cost rates in several currencies are refused (no FX rate for
costs): a permanent error, one exception for finance.

**Employee** (``resource.upserted`` / ``resource.terminated``, from ``resource_sync``): the NetSuite
``employee`` upserted by ``r2r-resource-<resource id>`` (the same external id time bills and expense
reports name): names, email, ``isInactive`` and ``releaseDate`` (terminated), ``laborCost`` (cost rate),
``title`` (job profile), department and location (the account mapping's segments), subsidiary by region.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.erp import records
from r2r_core.erp.mapping import ErpMapping
from r2r_core.errors import Permanent, Retryable
from r2r_core.model.entities import Assignment, Resource
from r2r_core.model.events import EventEnvelope
from r2r_core.model.money import minor_unit_quantum
from r2r_core.state import AuditLog, StateStore, now_iso

logger = Logger(child=True)

FORECAST_SK = "FORECAST"


class Erp(Protocol):
    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str: ...

    def update(self, record_type: str, internal_id: str, body: Mapping[str, Any]) -> None: ...


class ProjectNotInErp(Retryable):
    """The assignment's project has no ERP job yet (its closed-won deal is not set up)."""


class CostCurrencyConflict(Permanent):
    """A project's workers have cost rates in several currencies: no single forecast amount."""


def allocation_key(project_id: str, assignment_id: str) -> tuple[str, str]:
    return f"PROJ#{project_id}", f"ALLOC#{assignment_id}"


def _resource(store: StateStore, resource_id: str) -> dict[str, Any] | None:
    return store.get(f"RES#{resource_id}", "HRIS")


# ---- allocations ---------------------------------------------------------------------------------


def allocate(envelope: EventEnvelope, *, store: StateStore, audit: AuditLog, erp: Erp) -> dict[str, Any]:
    """One assignment version → its ERP resource allocation, then the project's cost forecast.

    A worker the HRIS has not sent yet (no ERP employee) does not fail the message: the assignment is kept
    ``waiting_for_worker`` and ``resource_sync`` allocates it once the employee exists.
    """
    assignment = Assignment.model_validate(envelope.data)
    pk, sk = allocation_key(assignment.project_id, assignment.id)
    known = store.get(pk, sk)
    if known is not None and int(known["version"]) > assignment.version:
        return {"assignment_id": assignment.id, "action": "stale_version_ignored"}

    job = store.crosswalk("project", assignment.project_id)
    if job is None:
        raise ProjectNotInErp(
            f"assignment {assignment.id}: project {assignment.project_id} has no ERP job yet "
            "(its closed-won deal is not set up); retried"
        )
    hours = assignment.planned_hours or Decimal(0)
    item = {
        "pk": pk,
        "sk": sk,
        "version": assignment.version,
        "resource_id": assignment.resource_id,
        "role": assignment.role,
        "hours": format(hours, "f"),
        "start_date": assignment.start_date.isoformat(),
        "end_date": (assignment.end_date or assignment.start_date).isoformat(),
        "allocation_external_id": records.external_id("allocation", assignment.id),
        "status": "no_planned_hours" if hours <= 0 else "waiting_for_worker",
        "updated_at": now_iso(),
    }
    worker = _resource(store, assignment.resource_id)
    if hours > 0 and worker is not None and worker.get("erp_employee_id"):
        item.update(_write_allocation(erp, item, job_id=str(job["internal_id"]), assignment_id=assignment.id))
    store.put_versioned(item)
    store.put({"pk": f"RES#{assignment.resource_id}", "sk": sk, "project_id": assignment.project_id})
    action = {
        "allocated": "allocation_upserted",
        "waiting_for_worker": "allocation_waiting_for_worker",
        "no_planned_hours": "allocation_without_planned_hours",
    }[str(item["status"])]
    audit.append(
        kind="assignment",
        entity_id=assignment.id,
        action=action,
        event_id=envelope.event_id,
        correlation_id=envelope.correlation_id,
        detail={
            "project_id": assignment.project_id,
            "resource_id": assignment.resource_id,
            "hours": item["hours"],
            "erp_allocation_id": item.get("erp_allocation_id"),
            "version": assignment.version,
        },
    )
    forecast = refresh_forecast(
        assignment.project_id,
        store=store,
        audit=audit,
        erp=erp,
        event_id=envelope.event_id,
        correlation_id=envelope.correlation_id,
    )
    return {
        "assignment_id": assignment.id,
        "action": action,
        "erp_allocation_id": item.get("erp_allocation_id"),
        **forecast,
    }


def _write_allocation(
    erp: Erp, item: Mapping[str, Any], *, job_id: str, assignment_id: str
) -> dict[str, Any]:
    allocation_id = erp.upsert(
        "resourceAllocation",
        str(item["allocation_external_id"]),
        records.resource_allocation_body(
            job_id=job_id,
            employee_external_id=records.external_id("resource", str(item["resource_id"])),
            hours=Decimal(str(item["hours"])),
            start_date=date.fromisoformat(str(item["start_date"])),
            end_date=date.fromisoformat(str(item["end_date"])),
            notes=f"r2r assignment {assignment_id} ({item['role']})",
        ),
    )
    return {"erp_allocation_id": allocation_id, "status": "allocated"}


def allocate_waiting(
    resource_id: str, *, store: StateStore, audit: AuditLog, erp: Erp, event_id: str, correlation_id: str
) -> list[str]:
    """Allocate the worker's assignments that waited for its ERP employee; returns their ids."""
    done = []
    for ref in store.query_prefix(f"RES#{resource_id}", "ALLOC#"):
        project_id, assignment_id = str(ref["project_id"]), str(ref["sk"]).removeprefix("ALLOC#")
        item = store.get(*allocation_key(project_id, assignment_id))
        job = store.crosswalk("project", project_id)
        if item is None or item.get("status") != "waiting_for_worker" or job is None:
            continue
        written = _write_allocation(erp, item, job_id=str(job["internal_id"]), assignment_id=assignment_id)
        store.update_if(
            *allocation_key(project_id, assignment_id),
            set_values={**written, "updated_at": now_iso()},
            condition="#version = :v",
            values={":v": item["version"]},
        )
        audit.append(
            kind="assignment",
            entity_id=assignment_id,
            action="allocation_upserted",
            event_id=event_id,
            correlation_id=correlation_id,
            detail={"project_id": project_id, "resource_id": resource_id, **written},
        )
        done.append(assignment_id)
    return done


# ---- cost forecast -------------------------------------------------------------------------------


def forecast_lines(
    allocations: Iterable[Mapping[str, Any]], cost_rates: Mapping[str, Mapping[str, str] | None]
) -> dict[str, Any]:
    """Pure: the forecast of ``allocations`` (``resource_id``, ``hours``) at ``cost_rates`` (by resource).

    Each costed line is hours × rate rounded half-up to the currency once; the total is the sum of the
    rounded lines. Raises :class:`CostCurrencyConflict` when the rates are in several currencies.
    """
    lines: list[dict[str, str]] = []
    uncosted = Decimal(0)
    hours_total = Decimal(0)
    currencies: set[str] = set()
    total = Decimal(0)
    for allocation in allocations:
        hours = Decimal(str(allocation["hours"]))
        if hours <= 0:
            continue
        hours_total += hours
        rate = cost_rates.get(str(allocation["resource_id"]))
        if not rate:
            uncosted += hours
            continue
        currency = str(rate["currency"])
        currencies.add(currency)
        amount = (hours * Decimal(str(rate["amount"]))).quantize(
            minor_unit_quantum(currency), rounding=ROUND_HALF_UP
        )
        total += amount
        lines.append(
            {
                "assignment_id": str(allocation.get("assignment_id", "")),
                "resource_id": str(allocation["resource_id"]),
                "hours": format(hours, "f"),
                "cost_rate": format(Decimal(str(rate["amount"])), "f"),
                "amount": format(amount, "f"),
                "currency": currency,
            }
        )
    if len(currencies) > 1:
        raise CostCurrencyConflict(
            "cost rates of the project's workers are in several currencies "
            f"({', '.join(sorted(currencies))}): r2r has no FX rate for costs; align the HRIS cost rates"
        )
    return {
        "currency": next(iter(currencies), None),
        "labor_cost": format(total, "f") if currencies else None,
        "hours": format(hours_total, "f"),
        "costed_hours": format(hours_total - uncosted, "f"),
        "uncosted_hours": format(uncosted, "f"),
        "lines": lines,
    }


def refresh_forecast(
    project_id: str, *, store: StateStore, audit: AuditLog, erp: Erp, event_id: str, correlation_id: str
) -> dict[str, Any]:
    """Recompute a project's cost forecast from its allocations and write it on the ERP job."""
    allocations = [
        {**item, "assignment_id": item["sk"].removeprefix("ALLOC#")}
        for item in store.query_prefix(f"PROJ#{project_id}", "ALLOC#")
    ]
    rates: dict[str, Mapping[str, str] | None] = {}
    for allocation in allocations:
        resource_id = str(allocation["resource_id"])
        if resource_id not in rates:
            worker = _resource(store, resource_id)
            rates[resource_id] = (worker or {}).get("cost_rate") or None
    forecast = forecast_lines(allocations, rates)
    job = store.crosswalk("project", project_id)
    if job is None:  # pragma: no cover - allocate checks it first; a cost-rate refresh only finds set-up jobs
        raise ProjectNotInErp(f"project {project_id} has no ERP job yet")
    previous = store.get(f"PROJ#{project_id}", FORECAST_SK)
    changed = previous is None or any(
        previous.get(key) != forecast[key] for key in ("labor_cost", "currency", "hours", "uncosted_hours")
    )
    if changed and forecast["currency"] is not None:
        erp.update(
            "job",
            str(job["internal_id"]),
            records.job_cost_forecast_body(
                labor_cost=Decimal(forecast["labor_cost"]),
                currency=forecast["currency"],
                hours=Decimal(forecast["costed_hours"]),
            ),
        )
    if changed:
        store.put(
            {
                **{k: v for k, v in forecast.items() if k != "lines"},
                "pk": f"PROJ#{project_id}",
                "sk": FORECAST_SK,
                "lines": json.dumps(forecast["lines"], sort_keys=True),
                "erp_job_id": str(job["internal_id"]),
                "updated_at": now_iso(),
            }
        )
        audit.append(
            kind="project",
            entity_id=project_id,
            action="cost_forecast_updated",
            event_id=event_id,
            correlation_id=correlation_id,
            detail={k: v for k, v in forecast.items() if k != "lines"},
        )
    return {
        "forecast_labor_cost": forecast["labor_cost"],
        "forecast_currency": forecast["currency"],
        "uncosted_hours": forecast["uncosted_hours"],
    }


# ---- employees -----------------------------------------------------------------------------------


def sync_employee(
    resource: Resource, *, erp: Erp, mapping: ErpMapping | None = None
) -> tuple[str, dict[str, Any]]:
    """Upsert the worker's ERP ``employee``; returns its internal id and the body written."""
    mapping = mapping or ErpMapping()
    terminated = resource.status.value == "terminated"
    segments = mapping.segments(resource.region, resource.business_unit).as_fields()
    body = records.employee_body(
        resource.name,
        email=resource.email,
        inactive=terminated,
        release_date=resource.termination_date if terminated else None,
        labor_cost=resource.cost_rate.amount if resource.cost_rate else None,
        labor_cost_currency=resource.cost_rate.currency if resource.cost_rate else None,
        title=resource.job_profile or resource.role,
        subsidiary_id=mapping.subsidiary_for(resource.region),
        segments=segments,
    )
    employee_id = erp.upsert("employee", records.external_id("resource", resource.id), body)
    return employee_id, body


def projects_of(store: StateStore, resource_id: str) -> list[str]:
    """The projects a worker is allocated to (``RES#<id>`` / ``ALLOC#…``), for a cost-rate refresh."""
    return sorted({str(item["project_id"]) for item in store.query_prefix(f"RES#{resource_id}", "ALLOC#")})
