"""What the Kantata tests seed in the Kantata sandbox: a consultant week of approved time and an expense,
in the engagement that sold-to-billed's closed-won deal sets up (rate card: Solution Architect EMEA 210.00,
Cloud Engineer EMEA 145.00)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLOSED_WON: dict[str, Any] = json.loads(
    (ROOT / "events" / "scenarios" / "sold-to-billed" / "01-opportunity-closed-won.json").read_text()
)
ENGAGEMENT = "eng-acme-cloud-2026"
ROLES = {"501": "Solution Architect", "502": "Cloud Engineer"}
# (user, role) pairs that alternate over the entries; minutes cycle through these.
PEOPLE = (("77001", "501"), ("77002", "502"))
MINUTES = (480, 450, 420, 390, 20)
MONDAY = date(2026, 11, 16)


def work_day(index: int) -> date:
    """The weekdays of 16-27 November 2026 in turn, one per pair of entries (the rate card runs to
    the end of 2026)."""
    day, step = MONDAY, (index // len(PEOPLE)) % 10
    while step:
        day += timedelta(days=1)
        if day.weekday() < 5:
            step -= 1
    return day


def seed_week(sandbox: Any, workspace_id: str, *, entries: int) -> dict[str, list[str]]:
    """``entries`` approved time entries and one billable expense (with a receipt) in ``workspace_id``."""
    for role_id, name in ROLES.items():
        sandbox.seed("roles", {"id": role_id, "name": name})
    time_entries = []
    for index in range(entries):
        user, role = PEOPLE[index % len(PEOPLE)]
        time_entries.append(
            sandbox.seed(
                "time_entries",
                {
                    "date_performed": work_day(index).isoformat(),
                    "time_in_minutes": MINUTES[index % len(MINUTES)],
                    "billable": True,
                    "notes": f"Acme cloud migration, entry {index + 1}",
                    "rate_in_cents": 21000 if role == "501" else 14500,
                    "currency": "USD",
                    "currency_base_unit": 100,
                    "approved": True,
                    "is_invoiced": False,
                    "workspace_id": workspace_id,
                    "user_id": user,
                    "role_id": role,
                },
            )
        )
    expense = sandbox.seed(
        "expenses",
        {
            "date": "2026-11-17",
            "category": "Travel",
            "amount_in_cents": 41270,
            "currency": "USD",
            "currency_base_unit": 100,
            "is_billable": True,
            "is_invoiced": False,
            "reimbursable": True,
            "receipt_id": "990011",
            "workspace_id": workspace_id,
            "user_id": "77001",
        },
    )
    return {"time_entries": time_entries, "expenses": [expense]}
