"""What the HRIS says about a worker (``RES#<resource id>`` / ``HRIS``), and the rule it feeds.

``resource.upserted`` / ``resource.terminated`` (Workday worker extracts) are stored versioned, so an
older extract after a newer one changes nothing. The item keeps the worker's cost rate (``cost_rate``) and
ERP employee id (``erp_employee_id``); ``resource_sync`` also upserts the ERP ``employee``
(:mod:`r2r_core.flows.resource_allocation`). Time posting refuses time worked by a terminated
worker after the termination date: a permanent error, so it becomes an exception for finance and no
timeBill is written (never a silent drop).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from typing import Any

from r2r_core.erp import records
from r2r_core.erp.mapping import ErpMapping
from r2r_core.errors import Permanent
from r2r_core.flows.invocation_reads import InvocationReads
from r2r_core.flows.resource_allocation import (
    Erp,
    allocate_waiting,
    projects_of,
    refresh_forecast,
    sync_employee,
)
from r2r_core.model.entities import Resource, TimeEntry
from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, StateStore, now_iso

STATUS_SK = "HRIS"


class ResourceTerminated(Permanent):
    """Time was approved for a worker the HRIS has terminated, for a day after the termination date."""


def status_key(resource_id: str) -> dict[str, str]:
    return {"pk": f"RES#{resource_id}", "sk": STATUS_SK}


def record_resource(
    envelope: EventEnvelope,
    *,
    store: StateStore,
    audit: AuditLog,
    erp: Erp | None = None,
    mapping: ErpMapping | None = None,
) -> dict[str, Any]:
    """Keep the worker's HRIS status and cost rate; with ``erp``, upsert the ERP employee too and
    re-forecast the projects the worker is allocated to when the cost rate changed."""
    resource = Resource.model_validate(envelope.data)
    previous = store.get(**status_key(resource.id))
    if previous is not None and int(previous["version"]) > resource.version:
        return {"resource_id": resource.id, "status": resource.status.value, "written": False}
    item = {
        **status_key(resource.id),
        "version": resource.version,
        "status": resource.status.value,
        "termination_date": resource.termination_date.isoformat() if resource.termination_date else None,
        "name": resource.name,
        "role": resource.role,
        "region": resource.region,
        "business_unit": resource.business_unit,
        "cost_rate": {
            "amount": format(resource.cost_rate.amount, "f"),
            "currency": resource.cost_rate.currency,
        }
        if resource.cost_rate
        else None,
        # Kept across versions: allocations need the worker's ERP employee.
        "erp_employee_id": (previous or {}).get("erp_employee_id"),
        "source_system": envelope.source_system,
        "event_id": envelope.event_id,
        "updated_at": now_iso(),
    }
    written = store.put_versioned(item)
    if written:
        audit.append(
            kind="resource",
            entity_id=resource.id,
            action=f"hris_{resource.status.value}",
            event_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
            detail={"version": resource.version, "termination_date": item["termination_date"]},
        )
    result: dict[str, Any] = {"resource_id": resource.id, "status": resource.status.value, "written": written}
    if erp is None:
        return result
    # Written now, or a redelivery of the version already stored (whose ERP write may have failed).
    employee_id, body = sync_employee(resource, erp=erp, mapping=mapping)
    store.update_if(
        *status_key(resource.id).values(),
        set_values={"erp_employee_id": employee_id},
        condition="#version = :v",
        values={":v": resource.version},
    )
    audit.append(
        kind="resource",
        entity_id=resource.id,
        action="erp_employee_upserted",
        event_id=envelope.event_id,
        correlation_id=envelope.correlation_id,
        detail={
            "erp_employee_id": employee_id,
            "external_id": records.external_id("resource", resource.id),
            "isInactive": body.get("isInactive"),
            "laborCost": body.get("laborCost"),
        },
    )
    result["erp_employee_id"] = employee_id
    result["allocated"] = allocate_waiting(
        resource.id,
        store=store,
        audit=audit,
        erp=erp,
        event_id=envelope.event_id,
        correlation_id=envelope.correlation_id,
    )
    same_version_again = previous is not None and int(previous["version"]) == resource.version
    rate_changed = (previous or {}).get("cost_rate") != item["cost_rate"]
    if same_version_again or rate_changed or result["allocated"]:
        result["forecasts"] = [
            refresh_forecast(
                project_id,
                store=store,
                audit=audit,
                erp=erp,
                event_id=envelope.event_id,
                correlation_id=envelope.correlation_id,
            )
            for project_id in projects_of(store, resource.id)
        ]
    return result


def worker_status_keys(bodies: Iterable[str]) -> list[tuple[str, str]]:
    """The HRIS status keys of the workers of an SQS batch's time entries, for ``InvocationReads.expect``
    (a body that cannot be read here is skipped: the consumer reports it when it parses it)."""
    keys = []
    for body in bodies:
        try:
            event = json.loads(body)
            resource = (event.get("detail", event).get("data") or {}).get("resource_id")
        except (ValueError, AttributeError):
            continue
        if isinstance(resource, str) and resource:
            keys.append((f"RES#{resource}", STATUS_SK))
    return keys


def refuse_time_after_termination(
    store: StateStore, entry: TimeEntry, *, reads: InvocationReads | None = None
) -> None:
    """Raise :class:`ResourceTerminated` when ``entry`` was worked after its worker's termination date
    (the worker's status read once per invocation with ``reads``)."""
    key = status_key(entry.resource_id)
    known = reads.item(store, key["pk"], key["sk"]) if reads is not None else store.get(**key)
    if not known or known.get("status") != "terminated" or not known.get("termination_date"):
        return
    terminated_on = date.fromisoformat(str(known["termination_date"]))
    if entry.work_date > terminated_on:
        raise ResourceTerminated(
            f"time entry {entry.id}: worker {entry.resource_id} was terminated on "
            f"{terminated_on.isoformat()} (HRIS), the entry is for {entry.work_date.isoformat()}; "
            "correct the timesheet or the HRIS record"
        )
