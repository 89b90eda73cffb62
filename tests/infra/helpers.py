"""Expectations from docs/architecture.md and small readers of a synthesized template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STAGE = "dev"
# Non-default values, so the tests see context reach the template.
CONTEXT = {
    "erpConcurrencyShare": 3,
    "erpMasterDataShare": 2,
    "apiThrottleRateLimit": 25,
    "apiThrottleBurstLimit": 40,
    "invoiceStatusPollMinutes": 10,
    "kantataPollMinutes": 7,
    "kantataBaseUrl": "https://kantata.example.test/api/v1",
    "kantataPageSize": 50,
}

# Folder -> (environment keys besides the common ones, timeout) from docs/architecture.md.
ERP_WRITER_ENV = {
    "STATE_TABLE_NAME",
    "AUDIT_TABLE_NAME",
    "IDEMPOTENCY_TABLE_NAME",
    "EVENT_BUS_NAME",
    "ERP_SECRET_ARN",
    "ERP_BASE_URL",
}
FUNCTIONS: dict[str, tuple[set[str], int]] = {
    "ingest_webhook": (
        {
            "RAW_BUCKET_NAME",
            "EVENT_BUS_NAME",
            "IDEMPOTENCY_TABLE_NAME",
            "AUDIT_TABLE_NAME",
            "WEBHOOK_SECRETS_ARN",
        },
        10,
    ),
    "project_setup": (ERP_WRITER_ENV, 30),
    # Idempotent by source record version (their charge items): no idempotency table.
    "time_posting": (ERP_WRITER_ENV - {"IDEMPOTENCY_TABLE_NAME"}, 30),
    "expense_posting": (ERP_WRITER_ENV - {"IDEMPOTENCY_TABLE_NAME"}, 30),
    "milestone_trigger": (
        {
            "STATE_TABLE_NAME",
            "AUDIT_TABLE_NAME",
            "IDEMPOTENCY_TABLE_NAME",
            "STATE_MACHINE_ARN",
            "EVENT_BUS_NAME",
        },
        30,
    ),
    "invoice_workflow": (
        {"STATE_TABLE_NAME", "AUDIT_TABLE_NAME", "EVENT_BUS_NAME", "ERP_SECRET_ARN", "ERP_BASE_URL"},
        60,
    ),
    "exception_router": ({"STATE_TABLE_NAME", "AUDIT_TABLE_NAME"}, 30),
    "invoice_status_poller": (
        {"STATE_TABLE_NAME", "AUDIT_TABLE_NAME", "EVENT_BUS_NAME", "ERP_SECRET_ARN", "ERP_BASE_URL"},
        30,
    ),
    "invoice_status_writeback": (
        {
            "STATE_TABLE_NAME",
            "AUDIT_TABLE_NAME",
            "IDEMPOTENCY_TABLE_NAME",
            "SALESFORCE_SECRET_ARN",
            "SALESFORCE_BASE_URL",
        },
        30,
    ),
    "reconciliation": ({"STATE_TABLE_NAME", "AUDIT_TABLE_NAME", "ERP_SECRET_ARN", "ERP_BASE_URL"}, 30),
    "billing_period_close": (
        {
            "STATE_TABLE_NAME",
            "AUDIT_TABLE_NAME",
            "STATE_MACHINE_ARN",
            "ERP_SECRET_ARN",
            "ERP_BASE_URL",
            "ERP_CONCURRENCY_SHARE",
            "EVENT_BUS_NAME",  # the revenue of the summaries it posts
        },
        300,  # a month's time summaries at the ERP's pace
    ),
    "file_intake": ({"STATE_TABLE_NAME", "AUDIT_TABLE_NAME", "EVENT_BUS_NAME"}, 30),
    "operator_api": ({"STATE_TABLE_NAME", "AUDIT_TABLE_NAME"}, 15),
    "resource_sync": (
        {"STATE_TABLE_NAME", "AUDIT_TABLE_NAME", "IDEMPOTENCY_TABLE_NAME", "ERP_SECRET_ARN", "ERP_BASE_URL"},
        30,
    ),
    "resource_allocation": (ERP_WRITER_ENV - {"EVENT_BUS_NAME"}, 30),
    "psa_provisioning": (
        {
            "STATE_TABLE_NAME",
            "AUDIT_TABLE_NAME",
            "IDEMPOTENCY_TABLE_NAME",
            "SALESFORCE_SECRET_ARN",
            "SALESFORCE_BASE_URL",
        },
        30,
    ),
    "kantata_poller": (
        {
            "STATE_TABLE_NAME",
            "AUDIT_TABLE_NAME",
            "EVENT_BUS_NAME",
            "RAW_BUCKET_NAME",
            "KANTATA_SECRET_ARN",
            "KANTATA_BASE_URL",
            "KANTATA_PAGE_SIZE",
        },
        120,
    ),
    "ingest_salesforce_outbound": (
        {
            "RAW_BUCKET_NAME",
            "EVENT_BUS_NAME",
            "IDEMPOTENCY_TABLE_NAME",
            "STATE_TABLE_NAME",
            "AUDIT_TABLE_NAME",
            "SALESFORCE_OUTBOUND_SECRETS_ARN",
        },
        30,
    ),
}
FUNCTIONS["salesforce_events"] = (
    {
        "RAW_BUCKET_NAME",
        "EVENT_BUS_NAME",
        "IDEMPOTENCY_TABLE_NAME",
        "STATE_TABLE_NAME",
        "AUDIT_TABLE_NAME",
        "SALESFORCE_SECRET_ARN",
        "SALESFORCE_BASE_URL",
    },
    30,
)
COMMON_ENV = {"STAGE", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
# Consumer folder -> (bus, detail-type or None, expected MaximumConcurrency).
CONSUMERS = {
    "project_setup": ("custom", "opportunity.closed_won", CONTEXT["erpConcurrencyShare"]),
    "time_posting": ("custom", "time_entry.approved", CONTEXT["erpConcurrencyShare"]),
    "expense_posting": ("custom", "expense.approved", CONTEXT["erpConcurrencyShare"]),
    "milestone_trigger": ("custom", "milestone.completed", 5),
    "exception_router": ("default", "Step Functions Execution Status Change", 5),
    "invoice_status_writeback": ("custom", "invoice.status_changed", 5),
    "file_intake": ("default", "Object Created", 5),
    # The Salesforce Event Relay partner bus: every event of its partner event source.
    "salesforce_events": ("partner", None, 5),
    "resource_sync": ("custom", "resource.upserted", CONTEXT["erpMasterDataShare"]),
    "psa_provisioning": ("custom", "opportunity.closed_won", 5),
    "resource_allocation": ("custom", "assignment.upserted", CONTEXT["erpMasterDataShare"]),
}
# Consumers fed by a schedule rule on the default bus: folder -> (rate expression, MaximumConcurrency).
SCHEDULED_CONSUMERS = {
    "invoice_status_poller": (f"rate({CONTEXT['invoiceStatusPollMinutes']} minutes)", 2),
    "reconciliation": ("rate(1 day)", 2),
    # Posts the ended periods' time summaries to the ERP: the smaller share, like the other ERP readers.
    "billing_period_close": ("rate(1 day)", 2),
    "kantata_poller": (f"rate({CONTEXT['kantataPollMinutes']} minutes)", 2),
}


def of_type(resources: dict[str, dict[str, Any]], cfn_type: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in resources.items() if r["Type"] == cfn_type}


def ref_id(value: Any) -> str:
    """Logical id named by a ``Ref`` or ``Fn::GetAtt`` (or raise)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    raise AssertionError(f"not a reference: {value!r}")


def functions_by_folder(resources: dict[str, dict[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """``r2r:source`` folder name -> (logical id, resource) for the app's functions."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for lid, res in of_type(resources, "AWS::Lambda::Function").items():
        source = (res.get("Metadata") or {}).get("r2r:source")
        if source:
            found[Path(source).name] = (lid, res)
    return found


def flatten(value: Any) -> str:
    """A CloudFormation string value with its intrinsics rendered as ``${Ref:X}``/``${GetAtt:X.Y}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(flatten(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "${Ref:" + str(value["Ref"]) + "}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "${GetAtt:" + ".".join(value["Fn::GetAtt"]) + "}"
    return json.dumps(value)
