"""Function settings, validated once per environment from ``runtime.environ()``.

A missing variable is a deployment error and is reported by name at the first invocation.
"""

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from r2r_core.runtime import environ


class _Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)


class IngestSettings(_Settings):
    raw_bucket_name: str = Field(alias="RAW_BUCKET_NAME")
    event_bus_name: str = Field(alias="EVENT_BUS_NAME")
    idempotency_table_name: str = Field(alias="IDEMPOTENCY_TABLE_NAME")
    audit_table_name: str = Field(alias="AUDIT_TABLE_NAME")
    webhook_secrets_arn: str = Field(alias="WEBHOOK_SECRETS_ARN")
    max_body_bytes: int = Field(default=1_048_576, alias="MAX_BODY_BYTES")


class SalesforceOutboundSettings(_Settings):
    raw_bucket_name: str = Field(alias="RAW_BUCKET_NAME")
    event_bus_name: str = Field(alias="EVENT_BUS_NAME")
    idempotency_table_name: str = Field(alias="IDEMPOTENCY_TABLE_NAME")
    state_table_name: str = Field(alias="STATE_TABLE_NAME")
    audit_table_name: str = Field(alias="AUDIT_TABLE_NAME")
    outbound_secrets_arn: str = Field(alias="SALESFORCE_OUTBOUND_SECRETS_ARN")
    max_body_bytes: int = Field(default=4 * 1_048_576, alias="MAX_BODY_BYTES")
    # r2r's Salesforce integration users (comma-separated ids): their edits are r2r's own echo.
    integration_user_ids: str = Field(default="", alias="SALESFORCE_INTEGRATION_USER_IDS")


class SalesforceEventsSettings(_Settings):
    raw_bucket_name: str = Field(alias="RAW_BUCKET_NAME")
    event_bus_name: str = Field(alias="EVENT_BUS_NAME")
    idempotency_table_name: str = Field(alias="IDEMPOTENCY_TABLE_NAME")
    state_table_name: str = Field(alias="STATE_TABLE_NAME")
    audit_table_name: str = Field(alias="AUDIT_TABLE_NAME")
    salesforce_secret_arn: str = Field(alias="SALESFORCE_SECRET_ARN")
    salesforce_base_url: str = Field(alias="SALESFORCE_BASE_URL")


class ConsumerSettings(_Settings):
    state_table_name: str = Field(alias="STATE_TABLE_NAME")
    audit_table_name: str = Field(alias="AUDIT_TABLE_NAME")
    idempotency_table_name: str | None = Field(default=None, alias="IDEMPOTENCY_TABLE_NAME")
    event_bus_name: str | None = Field(default=None, alias="EVENT_BUS_NAME")
    erp_secret_arn: str | None = Field(default=None, alias="ERP_SECRET_ARN")
    erp_base_url: str | None = Field(default=None, alias="ERP_BASE_URL")
    state_machine_arn: str | None = Field(default=None, alias="STATE_MACHINE_ARN")
    salesforce_secret_arn: str | None = Field(default=None, alias="SALESFORCE_SECRET_ARN")
    salesforce_base_url: str | None = Field(default=None, alias="SALESFORCE_BASE_URL")
    # The queue's maxReceiveCount: the receive after which a failing message is in the DLQ.
    max_receive_count: int | None = Field(default=None, alias="MAX_RECEIVE_COUNT")


class OperatorApiSettings(_Settings):
    """The operator API reads the state and audit tables; it writes an exception's status and audit."""

    state_table_name: str = Field(alias="STATE_TABLE_NAME")
    audit_table_name: str = Field(alias="AUDIT_TABLE_NAME")


class KantataPollerSettings(_Settings):
    state_table_name: str = Field(alias="STATE_TABLE_NAME")
    audit_table_name: str = Field(alias="AUDIT_TABLE_NAME")
    event_bus_name: str = Field(alias="EVENT_BUS_NAME")
    raw_bucket_name: str = Field(alias="RAW_BUCKET_NAME")
    kantata_secret_arn: str = Field(alias="KANTATA_SECRET_ARN")
    kantata_base_url: str = Field(alias="KANTATA_BASE_URL")
    page_size: int = Field(default=100, ge=1, le=200, alias="KANTATA_PAGE_SIZE")


S = TypeVar("S", bound=_Settings)
_CACHE: dict[tuple[type, frozenset[tuple[str, str]]], _Settings] = {}


def load(model: type[S], env: Mapping[str, str] | None = None) -> S:
    values = environ() if env is None else env
    key = (model, frozenset((k, v) for k, v in values.items() if k.isupper()))
    cached = _CACHE.get(key)
    if cached is None:
        cached = model.model_validate(dict(values))
        _CACHE[key] = cached
    return cached  # type: ignore[return-value]
