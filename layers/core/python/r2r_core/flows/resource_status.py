"""What the HRIS says about a worker (``RES#<resource id>`` / ``HRIS``), and the rule it feeds.

``resource.upserted`` / ``resource.terminated`` (Workday worker extracts) are stored versioned, so an
older extract after a newer one changes nothing. Time posting refuses time worked by a terminated
worker after the termination date: a permanent error, so it becomes an exception for finance and no
timeBill is written (never a silent drop).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from r2r_core.errors import Permanent
from r2r_core.model.entities import Resource, TimeEntry
from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, StateStore, now_iso

STATUS_SK = "HRIS"


class ResourceTerminated(Permanent):
    """Time was approved for a worker the HRIS has terminated, for a day after the termination date."""


def status_key(resource_id: str) -> dict[str, str]:
    return {"pk": f"RES#{resource_id}", "sk": STATUS_SK}


def record_resource(envelope: EventEnvelope, *, store: StateStore, audit: AuditLog) -> dict[str, Any]:
    resource = Resource.model_validate(envelope.data)
    item = {
        **status_key(resource.id),
        "version": resource.version,
        "status": resource.status.value,
        "termination_date": resource.termination_date.isoformat() if resource.termination_date else None,
        "name": resource.name,
        "role": resource.role,
        "region": resource.region,
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
    return {"resource_id": resource.id, "status": resource.status.value, "written": written}


def refuse_time_after_termination(store: StateStore, entry: TimeEntry) -> None:
    """Raise :class:`ResourceTerminated` when ``entry`` was worked after its worker's termination date."""
    known = store.get(**status_key(entry.resource_id))
    if not known or known.get("status") != "terminated" or not known.get("termination_date"):
        return
    terminated_on = date.fromisoformat(str(known["termination_date"]))
    if entry.work_date > terminated_on:
        raise ResourceTerminated(
            f"time entry {entry.id}: worker {entry.resource_id} was terminated on "
            f"{terminated_on.isoformat()} (HRIS), the entry is for {entry.work_date.isoformat()}; "
            "correct the timesheet or the HRIS record"
        )
