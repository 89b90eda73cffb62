"""Warm throughput: approved time entries per second through r2r's own code path, in process.

Each entry goes the way a delivery goes through ``ingest_webhook`` and ``time_posting``, without AWS:

1. mapping: the webhook body (``{type, timestamp, data}`` JSON, as a PSA sends it) parsed and validated
   by the ingest's own :func:`r2r_core.flows.ingest.parse_delivery` (→ :class:`TimeEntry`);
2. billing decision: :func:`r2r_core.billing.decisions.decide_time_entry` against the engagement and rate
   card of ``events/samples/opportunity.closed_won.json`` (mixed billing, four rates, two regions);
3. ERP request: :func:`r2r_core.flows.time_posting.time_bill_request` (the ``timeBill`` body ``post_time``
   sends) with an account mapping (items by role, departments, classes, locations) and the JSON bytes the
   NetSuite client sends.

Beside it, the floor: pydantic-core's ``validate_json`` of the same bodies into a model of the same shape
(``{type, timestamp, data: TimeEntry}``), the least any Python service must do to accept one entry. Both
run on the same payloads, interleaved, in this process; rates are per CPU second (``time.process_time``)
so that other work on a shared machine does not count against either side.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from infra.bench.figures import BenchContext, Figure, median

SECTION = "throughput"
TARGET_RATIO = 0.25
ROLES = (
    ("Cloud Engineer", "NA"),
    ("Cloud Engineer", "EMEA"),
    ("Solution Architect", "NA"),
    ("Solution Architect", "EMEA"),
)
MAPPING = {
    "subsidiary_id": "2",
    "service_items_by_role": {"Cloud Engineer": "501", "Solution Architect": "502"},
    "items": {"time": "500"},
    "departments": {"NA": "11", "EMEA": "12"},
    "classes": {"Cloud Services": "21"},
    "locations": {"NA": "31", "EMEA": "32"},
}


def webhook_bodies(count: int) -> list[bytes]:
    """``count`` distinct approved time entries for the sample engagement, as webhook bodies."""
    first = date(2026, 11, 16)
    bodies = []
    for n in range(count):
        role, region = ROLES[n % len(ROLES)]
        day = first + timedelta(days=n % 40)
        body = {
            "type": "time_entry.approved",
            "timestamp": f"{day.isoformat()}T18:{n % 60:02d}:00Z",
            "data": {
                "id": f"te-bench-{n:06d}",
                "version": 1 + n % 3,
                "engagement_id": "eng-acme-cloud-2026",
                "project_id": "prj-acme-cloud-2026",
                "resource_id": f"res-bench-{n % 97:03d}",
                "assignment_id": f"asg-bench-{n % 97:03d}",
                "role": role,
                "region": region,
                "work_date": day.isoformat(),
                "hours": str(Decimal(25 + n % 600) / Decimal(100)),  # 0.25 .. 6.24 h
                "billable": n % 10 != 0,
                "approved_at": f"{day.isoformat()}T18:{n % 60:02d}:00Z",
                "notes": "Acme cloud migration, wave 1",
            },
        }
        bodies.append(json.dumps(body).encode("utf-8"))
    return bodies


def r2r_pipeline(repo_root: Path) -> Callable[[bytes], bytes]:
    """One entry through mapping, billing decision and ERP request building; returns the request bytes."""
    from r2r_core.billing.decisions import Consumption, decide_time_entry
    from r2r_core.erp.client import _dumps as erp_request_json
    from r2r_core.erp.mapping import ErpMapping
    from r2r_core.flows.ingest import parse_delivery
    from r2r_core.flows.time_posting import time_bill_request
    from r2r_core.model.entities import ClosedWonDeal, TimeEntry

    sample = json.loads((repo_root / "events" / "samples" / "opportunity.closed_won.json").read_bytes())
    deal = ClosedWonDeal.model_validate(sample["data"])
    engagement, project = deal.engagement, deal.project
    account = ErpMapping.from_secret({"mapping": MAPPING})
    consumption = Consumption()
    job_id = "4711"

    def one(body: bytes) -> bytes:
        entry = parse_delivery(body).data
        assert isinstance(entry, TimeEntry)
        decision = decide_time_entry(entry, engagement, consumption, project_billable=project.billable)
        request = time_bill_request(
            entry, decision, job_id=job_id, business_unit=engagement.business_unit, account=account
        )
        return erp_request_json(request)

    return one


def validation_floor() -> Callable[[bytes], Any]:
    """pydantic-core ``validate_json`` of a body into ``{type, timestamp, data: TimeEntry}``."""
    from pydantic import AwareDatetime, BaseModel, TypeAdapter

    from r2r_core.model.entities import TimeEntry

    class TimeEntryDelivery(BaseModel):
        type: str
        timestamp: AwareDatetime
        data: TimeEntry

    return TypeAdapter(TimeEntryDelivery).validate_json


def rate(work: Callable[[bytes], Any], bodies: list[bytes]) -> float:
    """Entries per CPU second for one pass over ``bodies``."""
    started = time.process_time()
    for body in bodies:
        work(body)
    return len(bodies) / max(time.process_time() - started, 1e-9)


def run(ctx: BenchContext) -> list[Figure]:
    count = 2_000 if ctx.quick else 10_000
    repeats = 3 if ctx.quick else max(ctx.repeats, 5)
    bodies = webhook_bodies(count)
    pipeline, floor = r2r_pipeline(ctx.repo_root), validation_floor()
    billable = sum(b'"isBillable":true' in pipeline(body) for body in bodies)  # also warms both paths
    for body in bodies[:100]:
        floor(body)
    r2r_rates, floor_rates = [], []
    for _ in range(repeats):
        floor_rates.append(rate(floor, bodies))
        r2r_rates.append(rate(pipeline, bodies))
    r2r_per_s, floor_per_s = median(r2r_rates), median(floor_rates)
    detail = {"entries": count, "repeats": repeats, "billable": billable, "clock": "process CPU time"}
    return [
        Figure(
            SECTION, "mapping + billing decision + ERP request", round(r2r_per_s), "entries/s", detail=detail
        ),
        Figure(SECTION, "floor: pydantic-core validate_json", round(floor_per_s), "entries/s", detail=detail),
        Figure(
            SECTION,
            "r2r vs validate_json floor",
            round(r2r_per_s / floor_per_s, 3),
            "x",
            TARGET_RATIO,
            better="higher",
            detail={"r2r": [round(r) for r in r2r_rates], "floor": [round(r) for r in floor_rates]},
        ),
    ]
