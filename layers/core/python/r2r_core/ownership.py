"""System of record: which system owns (and alone may change) which object and field — enforced.

This module is the reviewed configuration. Three tables:

- ``SYSTEM_OF_RECORD``: per canonical object, the owning system and the fields of the canonical
  model it owns (``r2r catalog`` prints it; a test fails when a field of an event's data model has
  no owner, so a new field cannot slip in unreviewed).
- ``EVENT_OBJECTS``: per canonical event type, which object each top-level field of its ``data``
  describes (``"*"`` = every field not named). ``id`` and ``version`` identify the record and belong
  to no one.
- ``SOURCE_SYSTEMS``: the ``source_system`` names events carry (webhook ``{source}``, connectors,
  file drops, r2r's own publishers) and the system each one is.

:func:`check` decides, for one event, whether its source may deliver it. Every ingest path (signed
webhook, Salesforce Outbound Messages, file drops) drops what a non-owner sent before publishing, and
the shared SQS consumer (``r2r_core.consumer``) checks again before any effect, so an event from a
non-owner is never applied, whatever path it took; both record an audit entry and a metric.

**Mixed updates** (owned and non-owned fields in one event) are ignored as a whole. Canonical events
are whole-record snapshots, versioned by the source record: a snapshot with the non-owned fields
removed would read, downstream, as those fields being cleared, and accepting its version would move
the record's version past data that was never applied. The audit entry names every field the source
does not own, so the fix (stop sending them, or send from the owner) is clear.

**Seeds** are the one reviewed exception: the closed-won deal carries its ``client`` and ``project``
because r2r sets up the ERP customer and project from it (``project_setup``). Those fields are
accepted from the CRM as the deal's setup data; the ERP (customer master) and the PSA (projects) own
the records afterwards, and their own events (``client.upserted`` from the ERP, ``project.upserted``
from the PSA) are the only ones accepted for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple


class System(StrEnum):
    ERP = "ERP"
    PSA = "PSA"
    HRIS = "HRIS"
    CRM = "CRM"
    R2R = "r2r"  # what r2r derives itself (revenue, cap warnings): no outside system may send it


ERP, PSA, HRIS, CRM, R2R = System.ERP, System.PSA, System.HRIS, System.CRM, System.R2R


class Ownership(NamedTuple):
    canonical_object: str
    data: str
    system: str
    example: str
    fields: tuple[str, ...] = ()  # the canonical fields this row covers (documentation and review)


SYSTEM_OF_RECORD: tuple[Ownership, ...] = (
    Ownership(
        "client",
        "customer master (legal name, billing details, tax registration)",
        ERP,
        "NetSuite",
        (
            "name",
            "legal_name",
            "billing_country",
            "currency",
            "tax_registration",
            "region",
            "business_unit",
            "email",
        ),
    ),
    Ownership(
        "financial_posting",
        "financial postings (time bills, expense reports, invoices)",
        ERP,
        "NetSuite",
        ("invoice.*",),
    ),
    Ownership(
        "invoice_status",
        "invoice status (open, paid, voided, credited)",
        ERP,
        "NetSuite",
        ("invoice.status", "invoice_status_change.*"),
    ),
    Ownership("project", "projects", PSA, "Certinia / Kantata", ("project.*",)),
    Ownership(
        "assignment", "assignments (resource, role, dates)", PSA, "Certinia / Kantata", ("assignment.*",)
    ),
    Ownership("time_entry", "time entries and their approval", PSA, "Certinia / Kantata", ("time_entry.*",)),
    Ownership("expense", "expenses and their approval", PSA, "Certinia / Kantata", ("expense.*",)),
    Ownership("milestone", "milestones and their completion", PSA, "Certinia / Kantata", ("milestone.*",)),
    Ownership(
        "resource",
        "worker identity and status (hire, termination)",
        HRIS,
        "Workday",
        (
            "name",
            "email",
            "role",
            "region",
            "business_unit",
            "job_profile",
            "cost_center",
            "status",
            "termination_date",
        ),
    ),
    Ownership("cost_rate", "worker cost rates", HRIS, "Workday", ("resource.cost_rate",)),
    Ownership(
        "opportunity",
        "opportunities (stage, amount, close date)",
        CRM,
        "Salesforce",
        ("opportunity.*", "closed_won.name", "closed_won.amount", "closed_won.close_date"),
    ),
    Ownership(
        "engagement",
        "contract terms (billing type, rate card, milestones, caps)",
        CRM,
        "Salesforce",
        ("closed_won.engagement", "rate_card.*"),
    ),
    Ownership("revenue", "revenue recognised (derived by the billing core)", R2R, "r2r", ("revenue.*",)),
    Ownership("cap_warning", "cap threshold warnings (derived by the billing core)", R2R, "r2r", ("cap.*",)),
)

OWNER: Mapping[str, System] = {row.canonical_object: System(row.system) for row in SYSTEM_OF_RECORD}


@dataclass(frozen=True)
class Seed:
    """Fields a non-owner delivers as the setup data of a record r2r creates in the owner's system."""

    canonical_object: str
    accepted_from: System


IDENTITY_FIELDS = frozenset({"id", "version"})

EVENT_OBJECTS: Mapping[str, Mapping[str, str | Seed]] = {
    "client.upserted": {"*": "client"},
    "opportunity.closed_won": {
        "name": "opportunity",
        "amount": "opportunity",
        "close_date": "opportunity",
        "engagement": "engagement",
        "client": Seed("client", accepted_from=CRM),
        "project": Seed("project", accepted_from=CRM),
    },
    "opportunity.updated": {"*": "opportunity"},
    "project.upserted": {"*": "project"},
    "resource.upserted": {"*": "resource", "cost_rate": "cost_rate"},
    "resource.terminated": {"*": "resource", "cost_rate": "cost_rate"},
    "assignment.upserted": {"*": "assignment"},
    "rate_card.upserted": {"*": "engagement"},
    "time_entry.approved": {"*": "time_entry"},
    "expense.approved": {"*": "expense"},
    "milestone.completed": {"*": "milestone"},
    "invoice.created": {"*": "financial_posting", "status": "invoice_status"},
    "invoice.status_changed": {"*": "invoice_status"},
    "revenue.recognized": {"*": "revenue"},
    "billing.cap_threshold_reached": {"*": "cap_warning"},
}

# ``source_system`` names → the system they are. A webhook ``{source}`` may also be ``<name>-<suffix>``
# (``crm-emea``, ``psa_kantata``): the part before the first ``-`` / ``_`` decides.
SOURCE_SYSTEMS: Mapping[str, System] = {
    "crm": CRM,
    "salesforce": CRM,
    "psa": PSA,
    "certinia": PSA,
    "kantata": PSA,
    "file_exchange": PSA,  # timesheet and expense exports dropped as files (r2r_core.connectors.files)
    "hris": HRIS,
    "workday": HRIS,
    "erp": ERP,
    "netsuite": ERP,
    "r2r": R2R,
}


def owner_of(canonical_object: str) -> str:
    """The system that owns ``canonical_object`` (``KeyError`` if the table does not name it)."""
    return OWNER[canonical_object].value


def system_of(source_system: str, *, external: bool = False) -> System | None:
    """The system a ``source_system`` name is; ``None`` when the configuration does not know it.

    ``external``: the name came from outside (a webhook path): it can never be r2r itself.
    """
    name = source_system.lower()
    system = SOURCE_SYSTEMS.get(name)
    if system is None:
        for separator in ("-", "_"):
            head = name.split(separator, 1)[0]
            if head != name and head in SOURCE_SYSTEMS and name not in ("file_exchange",):
                system = SOURCE_SYSTEMS[head]
                break
    if external and system is R2R:
        return None
    return system


def field_objects(event_type: str, fields: list[str] | tuple[str, ...]) -> dict[str, str | Seed]:
    """The object each of ``fields`` of ``event_type``'s data describes (identity fields left out)."""
    spec = EVENT_OBJECTS[event_type]
    default = spec.get("*")
    out: dict[str, str | Seed] = {}
    for name in fields:
        if name in IDENTITY_FIELDS:
            continue
        target = spec.get(name, default)
        if target is None:
            raise KeyError(f"{event_type}.{name} has no owner in r2r_core.ownership.EVENT_OBJECTS")
        out[name] = target
    return out


@dataclass(frozen=True)
class Verdict:
    """Whether a source may deliver an event, and which fields it does not own (with their owner)."""

    event_type: str
    source_system: str
    system: System | None
    not_owned: tuple[tuple[str, str], ...]

    @property
    def accepted(self) -> bool:
        return self.system is not None and not self.not_owned

    @property
    def reason(self) -> str:
        if self.system is None:
            return (
                f"source {self.source_system!r} is not a system r2r knows "
                "(r2r_core.ownership.SOURCE_SYSTEMS): it owns nothing"
            )
        fields = ", ".join(f"{name} (owned by {owner})" for name, owner in self.not_owned)
        return f"{self.source_system} ({self.system}) does not own {self.event_type} fields: {fields}"

    def as_detail(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "source_system": self.source_system,
            "system": self.system.value if self.system else None,
            "not_owned": [{"field": name, "owner": owner} for name, owner in self.not_owned],
            "reason": self.reason,
        }


def check(event_type: str, source_system: str, data: Mapping[str, Any], *, external: bool = False) -> Verdict:
    """May ``source_system`` deliver this ``event_type`` with this ``data``? (See the module doc.)

    A field counts when it is present with a value (``None`` is "not sent"). An event type this
    configuration does not know is refused: ownership must be reviewed before r2r accepts it.
    """
    system = system_of(source_system, external=external)
    if event_type not in EVENT_OBJECTS:
        return Verdict(event_type, source_system, system, (("(event type)", "nobody: not configured"),))
    sent = [name for name, value in data.items() if value is not None]
    not_owned: list[tuple[str, str]] = []
    if system is not None:
        spec = EVENT_OBJECTS[event_type]
        for name in sent:
            if name in IDENTITY_FIELDS:
                continue
            target = spec.get(name, spec.get("*"))
            if target is None:  # a field nobody reviewed: nobody owns it, so no source may send it
                not_owned.append((name, "nobody: not configured"))
            elif isinstance(target, Seed):
                if system is not target.accepted_from:
                    not_owned.append(
                        (name, f"{OWNER[target.canonical_object]} (seeded by {target.accepted_from})")
                    )
            elif OWNER[target] is not system:
                not_owned.append((name, OWNER[target].value))
    return Verdict(event_type, source_system, system, tuple(not_owned))


# ---- the flow graph: who consumes what, and what it writes and publishes ---------------------------
# Reviewed beside the ownership tables; ``tests/infra/test_flow_graph.py`` checks it against the code (the
# synthesized template's rules and each function's grants) and asserts the graph has no cycle.


class Flow(NamedTuple):
    """One function: the event types it consumes, the events it publishes, the (system, object)s it writes
    and reads from outside systems (reads that publish events: pollers, connectors)."""

    consumes: tuple[str, ...]
    publishes: tuple[str, ...]
    writes: tuple[tuple[System, str], ...]
    reads: tuple[tuple[System, str], ...] = ()


# What r2r writes into an outside system but never reads back as canonical data: the CRM/PSA copies of
# the invoice status (Opportunity ``R2R_Invoice_*`` fields, Certinia ``pse__Billing_Event__c``).
INVOICE_STATUS_COPY = "invoice_status_copy"
INVOICE_RUN = "sfn:milestone-to-invoice"  # the state machine: started by some functions, run by another

# Functions that turn outside changes into canonical events by the ownership tables above: their
# edges are (owner, object) -> event type, for every object an event type carries (never a seed).
INGEST_FUNCTIONS = frozenset({"ingest_webhook", "ingest_salesforce_outbound", "salesforce_events"})

FLOWS: Mapping[str, Flow] = {
    "project_setup": Flow(("opportunity.closed_won",), (), ((ERP, "client"), (ERP, "project"))),
    "time_posting": Flow(
        ("time_entry.approved",),
        ("revenue.recognized", "billing.cap_threshold_reached"),
        ((ERP, "financial_posting"),),
    ),
    "expense_posting": Flow(("expense.approved",), (), ((ERP, "financial_posting"),)),
    "milestone_trigger": Flow(("milestone.completed",), ("revenue.recognized", INVOICE_RUN), ()),
    # Starts the period-end invoice runs; in summary posting mode it also posts the ended periods' time
    # summaries (timeBills recomputed from r2r's charges) to the ERP and publishes their revenue.
    "billing_period_close": Flow((), (INVOICE_RUN, "revenue.recognized"), ((ERP, "financial_posting"),)),
    "invoice_workflow": Flow(
        (INVOICE_RUN,),
        ("invoice.created", "revenue.recognized", "billing.cap_threshold_reached"),
        ((ERP, "financial_posting"), (ERP, "invoice_status")),
    ),
    "invoice_status_poller": Flow((), ("invoice.status_changed",), (), reads=((ERP, "invoice_status"),)),
    "invoice_status_writeback": Flow(
        ("invoice.status_changed",), (), ((CRM, INVOICE_STATUS_COPY), (PSA, INVOICE_STATUS_COPY))
    ),
    "reconciliation": Flow((), (), (), reads=((ERP, "financial_posting"),)),
    "exception_router": Flow((), (), ()),
    "operator_api": Flow((), (), ()),  # reads r2r's own stores; resolves exceptions in r2r only
    # The ERP employee record is a copy of the HRIS worker (status, cost rate, department): never read back.
    "resource_sync": Flow(("resource.upserted", "resource.terminated"), (), ((ERP, "employee_copy"),)),
    # Closed-won deals provision the engagement as a PSA project (pse__Proj__c, r2r_External_Id__c); the
    # PSA's own project changes come back as project events, which no consumer turns into CRM writes.
    "psa_provisioning": Flow(("opportunity.closed_won",), (), ((PSA, "project"),)),
    # Assignments become ERP resource allocations and the project's cost forecast (copies, never read back).
    "resource_allocation": Flow(("assignment.upserted",), (), ((ERP, "resource_allocation_copy"),)),
    # Kantata OX has no webhooks: the poller reads what changed since its watermarks (it never writes).
    "kantata_poller": Flow(
        (),
        ("time_entry.approved", "expense.approved", "project.upserted"),
        (),
        reads=((PSA, "time_entry"), (PSA, "expense"), (PSA, "project")),
    ),
    "file_intake": Flow(
        (),
        ("resource.upserted", "resource.terminated", "time_entry.approved", "expense.approved"),
        (),
        reads=((HRIS, "resource"), (PSA, "time_entry"), (PSA, "expense")),
    ),
}


def ingest_edges() -> list[tuple[tuple[System, str], str]]:
    """(owner, object) -> event type: how an owner's change enters r2r (seeds and r2r's own excluded)."""
    edges = []
    for event_type, spec in EVENT_OBJECTS.items():
        for target in spec.values():
            if isinstance(target, str) and OWNER[target] is not R2R:
                edges.append(((OWNER[target], target), event_type))
    return sorted(set(edges))


def flow_graph(flows: Mapping[str, Flow] = FLOWS) -> dict[str, set[str]]:
    """The data-flow graph: nodes ``event:<type>``, ``fn:<function>``, ``data:<system>/<object>``."""
    graph: dict[str, set[str]] = {}

    def edge(a: str, b: str) -> None:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())

    for (system, obj), event_type in ingest_edges():
        edge(f"data:{system}/{obj}", f"event:{event_type}")
    for name, flow in flows.items():
        for event_type in flow.consumes:
            edge(f"event:{event_type}", f"fn:{name}")
        for event_type in flow.publishes:
            edge(f"fn:{name}", f"event:{event_type}")
        for system, obj in flow.writes:
            edge(f"fn:{name}", f"data:{system}/{obj}")
        for system, obj in flow.reads:
            edge(f"data:{system}/{obj}", f"fn:{name}")
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or ``None`` when it is acyclic."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, white) == grey:
                return [*stack[stack.index(nxt) :], nxt]
            if colour.get(nxt, white) == white:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = black
        return None

    for node in sorted(graph):
        if colour[node] == white:
            found = visit(node)
            if found:
                return found
    return None
