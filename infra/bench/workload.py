"""Synthetic month-end workloads for the benchmarks: closed-won deals and a month of approved time.

Built from the sold-to-billed scenario's closed-won opportunity (its rate card and terms), renamed per
project, so the billing rules, ERP bodies and invoices are exactly the product's. A *realistic month*:
every project has two roles (Solution Architect, Cloud Engineer) with ``consultants_per_role`` people each,
and every consultant logs one approved entry per working day of October 2026 (22 days; a period that has
ended, so the period-end tick posts it).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from r2r_core.model.events import EventEnvelope, WebhookPayload, build_envelope, event_type

ROLES = ("Solution Architect", "Cloud Engineer")
REGION = "EMEA"
MONTH_START = date(2026, 10, 1)
WORK_DAYS = [
    MONTH_START + timedelta(days=d) for d in range(31) if (MONTH_START + timedelta(days=d)).weekday() < 5
]
APPROVED_AT = "2026-10-31T18:00:00Z"
TIME_HEADER = (
    "entry_id,engagement_id,project_id,resource_id,role,region,work_date,hours,billable,status,updated_at\n"
)


@dataclass(frozen=True)
class Project:
    index: int

    @property
    def engagement_id(self) -> str:
        return f"eng-bench-{self.index:04d}"

    @property
    def project_id(self) -> str:
        return f"prj-bench-{self.index:04d}"

    @property
    def milestone_id(self) -> str:
        return f"ms-bench-{self.index:04d}"


def _template(repo_root: Path) -> dict[str, Any]:
    path = repo_root / "events" / "scenarios" / "sold-to-billed" / "01-opportunity-closed-won.json"
    return json.loads(path.read_text(encoding="utf-8"))["body"]


def closed_won(repo_root: Path, project: Project) -> dict[str, Any]:
    """The webhook body of a time-and-materials deal with one milestone, for ``project``."""
    body = copy.deepcopy(_template(repo_root))
    data = body["data"]
    n = f"{project.index:04d}"
    data["id"] = f"opp-bench-{n}"
    data["client"]["id"] = f"client-bench-{n}"
    data["client"]["name"] = f"Bench client {n}"
    engagement = data["engagement"]
    engagement.update(
        id=project.engagement_id,
        client_id=f"client-bench-{n}",
        opportunity_id=data["id"],
        name=f"Bench engagement {n}",
        start_date="2026-10-01",
    )
    engagement["milestones"] = [
        {
            "id": project.milestone_id,
            "name": f"Bench milestone {n}",
            "amount": {"amount": "1000.00", "currency": "USD"},
            "due_date": "2026-11-30",
        }
    ]
    data["project"].update(
        id=project.project_id,
        engagement_id=project.engagement_id,
        client_id=f"client-bench-{n}",
        start_date="2026-10-01",
    )
    return body


def milestone_completed(project: Project) -> dict[str, Any]:
    return {
        "type": "milestone.completed",
        "timestamp": "2026-11-02T09:00:00Z",
        "data": {
            "id": project.milestone_id,
            "version": 1,
            "engagement_id": project.engagement_id,
            "project_id": project.project_id,
            "name": f"Bench milestone {project.index:04d}",
            "amount": {"amount": "1000.00", "currency": "USD"},
            "status": "completed",
            "completed_on": "2026-11-02",
        },
    }


def time_entries(project: Project, count: int, consultants_per_role: int = 3) -> Iterator[dict[str, Any]]:
    """``count`` approved entries of the project, spread over its consultants and November's work days."""
    people = [(role, k) for role in ROLES for k in range(consultants_per_role)]
    for i in range(count):
        role, k = people[i % len(people)]
        day = WORK_DAYS[(i // len(people)) % len(WORK_DAYS)]
        slot = i // (len(people) * len(WORK_DAYS))  # more entries than days: a second entry per day
        resource = f"res-bench-{project.index:04d}-{role.split()[0].lower()}-{k}"
        yield {
            "id": f"te-bench-{project.index:04d}-{i:05d}",
            "version": 1,
            "engagement_id": project.engagement_id,
            "project_id": project.project_id,
            "resource_id": resource,
            "assignment_id": f"asg-{resource}",
            "role": role,
            "region": REGION,
            "work_date": day.isoformat(),
            "hours": "4" if slot else "8",
            "billable": True,
            "approved_at": APPROVED_AT,
        }


def month_entries(project: Project, consultants_per_role: int = 3) -> list[dict[str, Any]]:
    """A realistic month: every consultant, every working day, 8 h."""
    return list(
        time_entries(project, len(ROLES) * consultants_per_role * len(WORK_DAYS), consultants_per_role)
    )


def timesheet_csv(entries: list[dict[str, Any]]) -> bytes:
    """Entries as a timesheet file drop (``inbound/timesheets/``)."""
    rows = [
        f"{e['id']},{e['engagement_id']},{e['project_id']},{e['resource_id']},{e['role']},{e['region']},"
        f"{e['work_date']},{e['hours']},true,approved,{APPROVED_AT}\n"
        for e in entries
    ]
    return (TIME_HEADER + "".join(rows)).encode()


def envelope_of(body: dict[str, Any], source: str, delivery_id: str) -> EventEnvelope:
    """The canonical envelope ingest would build for a webhook body."""
    payload = WebhookPayload.model_validate(body)
    record = event_type(payload.type).data_model.model_validate(payload.data)
    return build_envelope(source_system=source, delivery_id=delivery_id, payload=payload, record=record)


def time_envelope(entry: dict[str, Any]) -> EventEnvelope:
    body = {"type": "time_entry.approved", "timestamp": APPROVED_AT, "data": entry}
    return envelope_of(body, "psa", f"msg_{entry['id']}_v{entry['version']}")
