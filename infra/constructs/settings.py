"""Stage settings: everything the app reads from CDK context, parsed and validated once.

Context values given on the command line (``-c key=value``) arrive as strings, values
from ``cdk.json`` keep their JSON type; both are accepted here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from constructs import Node

DEFAULT_STAGE = "dev"
_STAGE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,19}$")

# Context keys (documented in cdk.json and docs/architecture.md).
CTX_STAGE = "stage"
CTX_API_RATE = "apiThrottleRateLimit"
CTX_API_BURST = "apiThrottleBurstLimit"
CTX_ERP_CONCURRENCY = "erpConcurrencyShare"
CTX_ERP_MASTER_DATA_CONCURRENCY = "erpMasterDataShare"
CTX_REMOVE_DATA = "removeDataOnDestroy"
CTX_ERP_BASE_URL = "erpBaseUrl"
CTX_SALESFORCE_BASE_URL = "salesforceBaseUrl"
CTX_INVOICE_STATUS_POLL_MINUTES = "invoiceStatusPollMinutes"
CTX_SALESFORCE_EVENT_SOURCE = "salesforceEventSourceName"

# The partner event source a Salesforce Event Relay creates: aws.partner/salesforce.com/<orgId>/<relayId>
# (or, through AppFlow, aws.partner/appflow/salesforce.com/<account>/<flow>). The dev default names the
# local stack's example org; every real stage gives its own (cdk.json or -c).
DEFAULT_SALESFORCE_EVENT_SOURCE = "aws.partner/salesforce.com/00D5g000004XyZaEAK/0YL5g0000000R2RAAA"
_EVENT_SOURCE_PATTERN = re.compile(
    r"^aws\.partner/(?:salesforce\.com/00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?/[A-Za-z0-9]{15,18}"
    r"|appflow/salesforce\.com/[0-9]{12}/[A-Za-z0-9._\-]{1,128})$"
)
CTX_OPERATOR_PRINCIPAL_ARN = "operatorPrincipalArn"
# An IAM principal that may assume the operator roles: an account root, a role or a user.
_IAM_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+)$")
CTX_SALESFORCE_INTEGRATION_USERS = "salesforceIntegrationUserIds"
CTX_KANTATA_BASE_URL = "kantataBaseUrl"
CTX_KANTATA_POLL_MINUTES = "kantataPollMinutes"
CTX_KANTATA_PAGE_SIZE = "kantataPageSize"


def _as_int(key: str, value: Any, *, minimum: int, maximum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"context {key!r} must be an integer, got {value!r}") from exc
    if not minimum <= number <= maximum:
        raise ValueError(f"context {key!r} must be between {minimum} and {maximum}, got {number}")
    return number


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no", ""}:
        return False
    raise ValueError(f"context {key!r} must be true or false, got {value!r}")


def salesforce_event_source(value: Any, stage: str) -> str:
    """The partner event source of ``stage``: a string, or an object of stage → source name."""
    if isinstance(value, dict):
        if stage not in value:
            raise ValueError(
                f"context {CTX_SALESFORCE_EVENT_SOURCE!r} names no event source for stage {stage!r} "
                f"(stages: {sorted(value)})"
            )
        value = value[stage]
    text = str(value).strip()
    if not _EVENT_SOURCE_PATTERN.match(text):
        raise ValueError(
            f"context {CTX_SALESFORCE_EVENT_SOURCE!r} must be a Salesforce partner event source "
            f"(aws.partner/salesforce.com/<orgId>/<relayId>), got {text[:120]!r}"
        )
    return text


def _as_principal_arn(key: str, value: Any) -> str:
    text = str(value).strip()
    if text and not _IAM_PRINCIPAL_ARN.match(text):
        raise ValueError(
            f"context {key!r} must be an IAM account root, role or user ARN "
            f"(arn:aws:iam::<account>:root|role/<name>|user/<name>), got {value!r}"
        )
    return text


def validate_stage(stage: str) -> str:
    if not _STAGE_PATTERN.match(stage):
        raise ValueError(
            f"stage {stage!r} must start with a letter and contain only a-z, 0-9 and '-' (max 20 chars)"
        )
    return stage


@dataclass(frozen=True)
class StageSettings:
    """What one deployment stage (``r2r-<stage>``) is configured with."""

    stage: str = DEFAULT_STAGE
    api_rate_limit: int = 50
    api_burst_limit: int = 100
    erp_concurrency_share: int = 5
    # The ERP writers of master data (worker employees, resource allocations): kept small so a bulk resync
    # leaves the account's ERP concurrency to the financial flows (time, expenses, invoices).
    erp_master_data_share: int = 2
    remove_data_on_destroy: bool = False
    erp_base_url: str = "https://example.suitetalk.api.netsuite.com"
    salesforce_base_url: str = "https://example.my.salesforce.com"
    invoice_status_poll_minutes: int = 15
    salesforce_event_source_name: str = DEFAULT_SALESFORCE_EVENT_SOURCE
    # Who may assume the operator roles; empty: the account root (then IAM policies in the account decide).
    operator_principal_arn: str = ""
    # r2r's Salesforce integration user ids (comma-separated): notifications of their edits are echoes.
    salesforce_integration_user_ids: str = ""
    kantata_base_url: str = "https://api.mavenlink.com/api/v1"
    kantata_poll_minutes: int = 5
    kantata_page_size: int = 100

    @property
    def stack_name(self) -> str:
        return f"r2r-{self.stage}"

    @classmethod
    def from_node(cls, node: Node) -> StageSettings:
        """Read the settings from the construct tree's context (defaults where absent)."""

        def get(key: str, default: Any) -> Any:
            value = node.try_get_context(key)
            return default if value is None else value

        defaults = cls()
        stage = validate_stage(str(get(CTX_STAGE, defaults.stage)))
        return cls(
            stage=stage,
            api_rate_limit=_as_int(
                CTX_API_RATE, get(CTX_API_RATE, defaults.api_rate_limit), minimum=1, maximum=10_000
            ),
            api_burst_limit=_as_int(
                CTX_API_BURST, get(CTX_API_BURST, defaults.api_burst_limit), minimum=1, maximum=5_000
            ),
            # Lambda's MaximumConcurrency for SQS mappings accepts 2..1000.
            erp_concurrency_share=_as_int(
                CTX_ERP_CONCURRENCY,
                get(CTX_ERP_CONCURRENCY, defaults.erp_concurrency_share),
                minimum=2,
                maximum=1000,
            ),
            erp_master_data_share=_as_int(
                CTX_ERP_MASTER_DATA_CONCURRENCY,
                get(CTX_ERP_MASTER_DATA_CONCURRENCY, defaults.erp_master_data_share),
                minimum=2,
                maximum=1000,
            ),
            remove_data_on_destroy=_as_bool(
                CTX_REMOVE_DATA, get(CTX_REMOVE_DATA, defaults.remove_data_on_destroy)
            ),
            erp_base_url=str(get(CTX_ERP_BASE_URL, defaults.erp_base_url)),
            salesforce_base_url=str(get(CTX_SALESFORCE_BASE_URL, defaults.salesforce_base_url)),
            invoice_status_poll_minutes=_as_int(
                CTX_INVOICE_STATUS_POLL_MINUTES,
                get(CTX_INVOICE_STATUS_POLL_MINUTES, defaults.invoice_status_poll_minutes),
                minimum=1,
                maximum=1440,
            ),
            salesforce_event_source_name=salesforce_event_source(
                get(CTX_SALESFORCE_EVENT_SOURCE, defaults.salesforce_event_source_name), stage
            ),
            operator_principal_arn=_as_principal_arn(
                CTX_OPERATOR_PRINCIPAL_ARN,
                get(CTX_OPERATOR_PRINCIPAL_ARN, defaults.operator_principal_arn),
            ),
            salesforce_integration_user_ids=_as_user_ids(
                get(CTX_SALESFORCE_INTEGRATION_USERS, defaults.salesforce_integration_user_ids)
            ),
            kantata_base_url=str(get(CTX_KANTATA_BASE_URL, defaults.kantata_base_url)),
            kantata_poll_minutes=_as_int(
                CTX_KANTATA_POLL_MINUTES,
                get(CTX_KANTATA_POLL_MINUTES, defaults.kantata_poll_minutes),
                minimum=1,
                maximum=1440,
            ),
            # Kantata's documented maximum per_page is 200.
            kantata_page_size=_as_int(
                CTX_KANTATA_PAGE_SIZE,
                get(CTX_KANTATA_PAGE_SIZE, defaults.kantata_page_size),
                minimum=1,
                maximum=200,
            ),
        )


def _as_user_ids(value: Any) -> str:
    ids = [str(v).strip() for v in (value if isinstance(value, list) else str(value).split(","))]
    for user_id in ids:
        if user_id and not re.fullmatch(r"005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?", user_id):
            raise ValueError(
                f"context {CTX_SALESFORCE_INTEGRATION_USERS!r}: {user_id!r} is not a Salesforce user id "
                "(005...)"
            )
    return ",".join(i for i in ids if i)
