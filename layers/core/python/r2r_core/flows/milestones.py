"""Completed milestone → one run of the milestone-to-invoice state machine (named deterministically)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from aws_lambda_powertools import Logger

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


def start_invoice_run(
    envelope: EventEnvelope, *, store: StateStore, audit: AuditLog, sfn: Any, state_machine_arn: str
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
    return {"started": action == "invoice_run_started", "execution_arn": execution_arn}
