"""Closed-won deal → ERP customer and project (job), upserted by external id; crosswalk and terms recorded.

The customer is created from the first closed-won deal of a client and then left to the ERP, which owns
the customer master; the job follows the deal's project (the PSA and CRM own projects and terms).
"""

from __future__ import annotations

from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.erp import records
from r2r_core.erp.mapping import ErpMapping
from r2r_core.kpis import project_setup_kpi
from r2r_core.model.entities import ClosedWonDeal
from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, StateStore, now_iso
from r2r_core.telemetry import emit

logger = Logger(child=True)


class Erp(Protocol):
    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str: ...


def set_up_project(
    envelope: EventEnvelope,
    *,
    store: StateStore,
    audit: AuditLog,
    erp: Erp,
    mapping: ErpMapping | None = None,
) -> dict[str, str]:
    deal = ClosedWonDeal.model_validate(envelope.data)
    client, engagement, project = deal.client, deal.engagement, deal.project
    mapping = mapping or ErpMapping()

    customer_eid = records.external_id("customer", client.id)
    known_customer = store.crosswalk("client", client.id)
    if known_customer is not None and known_customer.get("internal_id"):
        # The ERP owns the customer master (r2r_core.ownership): once the customer exists, finance keeps
        # its legal name, billing details and tax registration there; a later deal never overwrites them.
        customer_id = str(known_customer["internal_id"])
    else:
        customer_id = erp.upsert(
            "customer",
            customer_eid,
            records.customer_body(
                client.legal_name or client.name,
                currency=client.currency,
                email=client.email,
                subsidiary_id=mapping.subsidiary_id,
                currency_id=mapping.currency_id(client.currency),
            ),
        )
        store.put_crosswalk("client", client.id, internal_id=customer_id, external_id=customer_eid)

    job_eid = records.external_id("job", project.id)
    job_id = erp.upsert(
        "job",
        job_eid,
        records.job_body(
            project.name,
            customer_id=customer_id,
            start_date=project.start_date,
            end_date=project.end_date,
            currency=engagement.currency,
            currency_id=mapping.currency_id(engagement.currency),
        ),
    )
    store.put_crosswalk("project", project.id, internal_id=job_id, external_id=job_eid)

    written = store.put_versioned(
        {
            "pk": f"ENG#{engagement.id}",
            "sk": "TERMS",
            "version": deal.version,
            "deal": deal.model_dump_json(),
            "client_id": client.id,
            "project_id": project.id,
            "erp_customer_id": customer_id,
            "erp_job_id": job_id,
            "region": engagement.region,
            "business_unit": engagement.business_unit,
            "correlation_id": envelope.correlation_id,
            "updated_at": now_iso(),
        }
    )
    action = "terms_recorded" if written else "stale_terms_ignored"
    audit.append(
        kind="engagement",
        entity_id=engagement.id,
        action=action,
        event_id=envelope.event_id,
        correlation_id=envelope.correlation_id,
        detail={
            "opportunity_id": deal.id,
            "version": deal.version,
            "erp_customer_id": customer_id,
            "erp_job_id": job_id,
            "source_system": envelope.source_system,
        },
    )
    logger.info(
        "project set up",
        extra={
            "engagement_id": engagement.id,
            "erp_customer_id": customer_id,
            "erp_job_id": job_id,
            "action": action,
        },
    )
    emit(
        [project_setup_kpi(succeeded=True, region=engagement.region, business_unit=engagement.business_unit)]
    )
    return {"erp_customer_id": customer_id, "erp_job_id": job_id}


def load_terms(store: StateStore, engagement_id: str) -> tuple[ClosedWonDeal, dict[str, Any]] | None:
    """The closed-won deal an engagement was set up from, with its stored item."""
    item = store.get(f"ENG#{engagement_id}", "TERMS")
    if item is None:
        return None
    return ClosedWonDeal.model_validate_json(item["deal"]), item
