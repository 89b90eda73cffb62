"""Completed milestone → one run of the milestone-to-invoice state machine (named deterministically).

A milestone accepted after its run invoiced it (a newer version with ``status: accepted``) starts no second
run (the execution name is fixed per milestone): its fixed-fee acceptance revenue is recognised here, once
(``REVENUE#rev-milestone-<id>``, the same record the run's last step publishes when the milestone arrives
already accepted).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from aws_lambda_powertools import Logger

from r2r_core.billing.revenue import revenue_for_milestone
from r2r_core.flows.charges import Publisher, record_revenue
from r2r_core.flows.project_setup import load_terms
from r2r_core.model.entities import Milestone, MilestoneStatus
from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, StateStore, now_iso

logger = Logger(child=True)

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def execution_name(engagement_id: str, milestone_id: str) -> str:
    """Step Functions execution name (≤ 80 chars, safe characters), the same for every delivery."""
    raw = f"{engagement_id}-{milestone_id}"
    name = _NAME_UNSAFE.sub("_", raw)
    if len(name) > 80 or name != raw:
        name = f"{name[:63]}-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"
    return name


def recognise_late_acceptance(
    envelope: EventEnvelope,
    milestone: Milestone,
    *,
    store: StateStore,
    audit: AuditLog,
    publisher: Publisher | None,
) -> str | None:
    """An accepted version of a milestone its run already invoiced: record and publish the acceptance
    revenue (idempotent by the revenue id); None when the run has not invoiced it yet (its last step
    recognises it then)."""
    pk = f"ENG#{milestone.engagement_id}"
    stored = store.get(pk, f"MILESTONE#{milestone.id}")
    if (
        stored is None
        or stored.get("status") != "invoiced"
        or milestone.status is not MilestoneStatus.ACCEPTED
    ):
        return None
    loaded = load_terms(store, milestone.engagement_id)
    if loaded is None:
        return None
    deal, _ = loaded
    if milestone.id not in {m.id for m in deal.engagement.milestones}:
        return None
    if int(stored.get("version", 0)) < milestone.version:
        store.update_if(
            pk,
            f"MILESTONE#{milestone.id}",
            set_values={
                "accepted_version": milestone.version,
                "accepted_milestone": milestone.model_dump_json(),
                "accepted_at": now_iso(),
            },
            condition="attribute_exists(pk)",
            values={},
        )
    revenue_id = record_revenue(
        store,
        publisher,
        event=revenue_for_milestone(deal.engagement, milestone),
        correlation_id=envelope.correlation_id,
    )
    audit.append(
        kind="milestone",
        entity_id=milestone.id,
        action="accepted_after_invoice",
        event_id=envelope.event_id,
        correlation_id=envelope.correlation_id,
        detail={"revenue_event_id": revenue_id, "version": milestone.version},
    )
    return revenue_id


def start_invoice_run(
    envelope: EventEnvelope,
    *,
    store: StateStore,
    audit: AuditLog,
    sfn: Any,
    state_machine_arn: str,
    publisher: Publisher | None = None,
) -> dict[str, Any]:
    milestone = Milestone.model_validate(envelope.data)
    if milestone.status is MilestoneStatus.PLANNED:
        audit.append(
            kind="milestone",
            entity_id=milestone.id,
            action="not_completed_ignored",
            event_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
        )
        return {"started": False, "reason": "milestone is not completed"}
    store.put_versioned(
        {
            "pk": f"ENG#{milestone.engagement_id}",
            "sk": f"MILESTONE#{milestone.id}",
            "version": milestone.version,
            "milestone": milestone.model_dump_json(),
            "status": "completed",
            "completed_at": now_iso(),
            "correlation_id": envelope.correlation_id,
        },
        unless_status="invoiced",
    )
    revenue_id = recognise_late_acceptance(envelope, milestone, store=store, audit=audit, publisher=publisher)
    name = execution_name(milestone.engagement_id, milestone.id)
    execution_input = {
        "engagement_id": milestone.engagement_id,
        "milestone_id": milestone.id,
        "correlation_id": envelope.correlation_id,
        "event_id": envelope.event_id,
    }
    try:
        response = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input)
        )
        execution_arn = response["executionArn"]
        action = "invoice_run_started"
    except sfn.exceptions.ExecutionAlreadyExists:
        # A duplicate delivery, or a redrive: the first run owns this milestone's invoice.
        execution_arn = f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
        action = "invoice_run_already_started"
    audit.append(
        kind="milestone",
        entity_id=milestone.id,
        action=action,
        event_id=envelope.event_id,
        correlation_id=envelope.correlation_id,
        detail={"execution_arn": execution_arn, "engagement_id": milestone.engagement_id},
    )
    logger.info(
        "milestone invoice run",
        extra={"milestone_id": milestone.id, "execution_name": name, "action": action},
    )
    result: dict[str, Any] = {"started": action == "invoice_run_started", "execution_arn": execution_arn}
    if revenue_id is not None:
        result["revenue_event_id"] = revenue_id
    return result
