"""The system of record per canonical object: which system owns (and may change) which data.

r2r never overwrites data in the system that owns it; what another system holds is a copy. One
table, read by the integration catalog (``r2r catalog``) and by anyone deciding where a fix goes.
"""

from __future__ import annotations

from typing import NamedTuple

ERP, PSA, HRIS, CRM = "ERP", "PSA", "HRIS", "CRM"


class Ownership(NamedTuple):
    canonical_object: str
    data: str
    system: str
    example: str


SYSTEM_OF_RECORD: tuple[Ownership, ...] = (
    Ownership("client", "customer master (legal name, billing details, tax registration)", ERP, "NetSuite"),
    Ownership(
        "financial_posting", "financial postings (time bills, expense reports, invoices)", ERP, "NetSuite"
    ),
    Ownership("invoice_status", "invoice status (open, paid, voided, credited)", ERP, "NetSuite"),
    Ownership("project", "projects", PSA, "Certinia / Kantata"),
    Ownership("assignment", "assignments (resource, role, dates)", PSA, "Certinia / Kantata"),
    Ownership("time_entry", "time entries and their approval", PSA, "Certinia / Kantata"),
    Ownership("expense", "expenses and their approval", PSA, "Certinia / Kantata"),
    Ownership("milestone", "milestones and their completion", PSA, "Certinia / Kantata"),
    Ownership("resource", "worker identity and status (hire, termination)", HRIS, "Workday"),
    Ownership("cost_rate", "worker cost rates", HRIS, "Workday"),
    Ownership("opportunity", "opportunities (stage, amount, close date)", CRM, "Salesforce"),
    Ownership("engagement", "contract terms (billing type, rate card, milestones, caps)", CRM, "Salesforce"),
)


def owner_of(canonical_object: str) -> str:
    """The system that owns ``canonical_object`` (``KeyError`` if the table does not name it)."""
    for row in SYSTEM_OF_RECORD:
        if row.canonical_object == canonical_object:
            return row.system
    raise KeyError(canonical_object)
