"""Closed-won deal → the engagement's project in the PSA (Certinia ``pse__Proj__c``), crosswalk recorded.

The project is upserted through the Salesforce REST API by r2r's external id field ``R2R_Id__c`` =
the canonical project id (``PATCH /services/data/<v>/sobjects/pse__Proj__c/R2R_Id__c/<project id>``):
the same key the invoice status write-back names the project by (``pse__Billing_Event__c`` →
``pse__Project__r.R2R_Id__c``), so a retried or redelivered write lands on one record.

What is recorded, for the people and for echo suppression (a change of this record coming back through
the Salesforce channels is r2r's own write, not a new change):

- the crosswalk both ways: ``XWALK#project#<project id>`` / ``SYS#certinia`` (``internal_id`` = the
  ``pse__Proj__c`` Id, ``external_id`` = the project id, ``external_id_field`` = ``R2R_Id__c``,
  ``version``) and ``XWALK#certinia#pse__Proj__c#<Salesforce Id>`` / ``SYS#r2r`` (the project id);
- what r2r last wrote to the record, ``ECHO#salesforce#pse__Proj__c#<project id>`` / ``LAST_WRITE``
  (values, their hash, the record Id, ``written_by`` = the integration user's connected app), the shape
  :func:`r2r_core.flows.invoice_status.is_echo` reads;
- an audit record ``project#<project id>`` / ``psa_project_provisioned`` with the record Id.

An older deal version after a newer one writes nothing; values already written are not written again.
Salesforce 5xx / request limits / timeouts are retried (``SalesforceTransientError``, the message stays
on the queue); a refused write (``SalesforcePermanentError``) becomes one exception for finance.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.model.entities import BillingType, ClosedWonDeal
from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, StateStore, now_iso

logger = Logger(child=True)

SALESFORCE = "salesforce"
CERTINIA = "certinia"
PSA_PROJECT = "pse__Proj__c"
# The external id field r2r writes pse__Proj__c by (an administrator adds it, External ID + Unique).
PSA_PROJECT_EXTERNAL_ID = "R2R_Id__c"
# Set on every record r2r creates, so a change feed reader sees at once whose write it was.
WRITTEN_BY = "r2r-integration"
_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
# Certinia's picklist values for pse__Billing_Type__c.
_BILLING_TYPE = {
    BillingType.TIME_AND_MATERIALS: "Time and Materials",
    BillingType.CAPPED_TIME_AND_MATERIALS: "Time and Materials",
    BillingType.RETAINER: "Time and Materials",
    BillingType.FIXED_FEE: "Fixed Price",
    BillingType.MIXED: "T&M/Fixed",
}


class SalesforceWriter(Protocol):
    def upsert(self, sobject: str, external_id_field: str, value: str, fields: Mapping[str, Any]) -> str: ...


def _salesforce_id(canonical_id: str, prefix: str) -> str | None:
    """``0065g00000Jk1mN`` from ``opp-0065g00000Jk1mN`` (ids the Salesforce connector made), else None."""
    head, _, rest = canonical_id.partition("-")
    return rest if head == prefix and _SALESFORCE_ID.match(rest) else None


def psa_project_fields(deal: ClosedWonDeal) -> dict[str, Any]:
    """The ``pse__Proj__c`` fields r2r owns for a closed-won deal's project."""
    project, engagement = deal.project, deal.engagement
    fields: dict[str, Any] = {
        "Name": project.name[:80],  # Name is 80 characters on a custom object
        "pse__Start_Date__c": project.start_date.isoformat(),
        "pse__End_Date__c": project.end_date.isoformat() if project.end_date else None,
        "pse__Stage__c": "Planned",
        "pse__Billing_Type__c": _BILLING_TYPE[engagement.billing_type],
        "pse__Is_Billable__c": project.billable,
        "pse__Is_Active__c": True,
        "pse__Region__c": project.region,
        "pse__Practice__c": project.business_unit,
        "CurrencyIsoCode": engagement.currency,
        "R2R_Engagement_Id__c": engagement.id,
        "R2R_Written_By__c": WRITTEN_BY,
    }
    # Link the opportunity and account by Salesforce Id when the deal came from Salesforce, else by
    # r2r's external id on the opportunity (the invoice write-back's key, R2R_Id__c).
    opportunity = _salesforce_id(deal.id, "opp")
    if opportunity:
        fields["pse__Opportunity__c"] = opportunity
    else:
        fields["pse__Opportunity__r"] = {"R2R_Id__c": deal.id}
    account = _salesforce_id(deal.client.id, "acct")
    if account:
        fields["pse__Account__c"] = account
    return {key: value for key, value in fields.items() if value is not None}


def fields_hash(fields: Mapping[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def echo_key(project_id: str) -> tuple[str, str]:
    return f"ECHO#{SALESFORCE}#{PSA_PROJECT}#{project_id}", "LAST_WRITE"


def provision_psa_project(
    envelope: EventEnvelope, *, store: StateStore, audit: AuditLog, salesforce: SalesforceWriter
) -> dict[str, Any]:
    """Upsert the deal's project in Certinia; returns ``psa_project_id`` and what was done (``action``)."""
    deal = ClosedWonDeal.model_validate(envelope.data)
    project = deal.project
    known = store.crosswalk("project", project.id, system=CERTINIA)
    if known is not None and int(known.get("version", 0)) > deal.version:
        logger.info("older deal version: PSA project left as is", extra={"project_id": project.id})
        return {"psa_project_id": known["internal_id"], "action": "stale_version_ignored"}

    fields = psa_project_fields(deal)
    digest = fields_hash(fields)
    last = store.get(*echo_key(project.id))
    if known is not None and last is not None and last.get("hash") == digest:
        # Already there (a redelivery, or a new deal version that changes nothing the PSA holds):
        # writing again would only make an echo.
        action, record_id = "unchanged", str(known["internal_id"])
    else:
        record_id = salesforce.upsert(PSA_PROJECT, PSA_PROJECT_EXTERNAL_ID, project.id, fields)
        action = "psa_project_provisioned" if known is None else "psa_project_updated"
        store.update_if(
            *echo_key(project.id),
            set_values={
                "version": deal.version,
                "hash": digest,
                # With the external id: a change event of the record carries it too.
                "fields": json.dumps(
                    {**fields, PSA_PROJECT_EXTERNAL_ID: project.id}, sort_keys=True, default=str
                ),
                "record_id": record_id,
                "external_id_field": PSA_PROJECT_EXTERNAL_ID,
                "written_by": WRITTEN_BY,
                "updated_at": now_iso(),
            },
            condition="attribute_not_exists(pk) OR #version <= :v",
            values={":v": deal.version},
        )
    store.put_crosswalk(
        "project",
        project.id,
        internal_id=record_id,
        external_id=project.id,
        system=CERTINIA,
        extra={
            "version": deal.version,
            "sobject": PSA_PROJECT,
            "external_id_field": PSA_PROJECT_EXTERNAL_ID,
            "engagement_id": deal.engagement.id,
        },
    )
    store.put_crosswalk(
        f"{CERTINIA}#{PSA_PROJECT}",
        record_id,
        internal_id=project.id,
        external_id=project.id,
        system="r2r",
        extra={"kind": "project", "engagement_id": deal.engagement.id},
    )
    audit.append(
        kind="project",
        entity_id=project.id,
        action=action,
        event_id=envelope.event_id,
        correlation_id=envelope.correlation_id,
        detail={
            "system": CERTINIA,
            "sobject": PSA_PROJECT,
            "psa_project_id": record_id,
            "external_id_field": PSA_PROJECT_EXTERNAL_ID,
            "opportunity_id": deal.id,
            "version": deal.version,
        },
    )
    logger.info(
        "PSA project provisioned",
        extra={"project_id": project.id, "psa_project_id": record_id, "action": action},
    )
    return {"psa_project_id": record_id, "action": action}
