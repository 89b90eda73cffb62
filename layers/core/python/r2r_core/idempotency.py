"""Powertools Idempotency on business keys (never on the SQS messageId, which a redrive changes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from r2r_core.runtime import aws_client

# Long enough to outlast every redelivery: Salesforce retries for 24 h, DLQs keep 14 days.
DEFAULT_EXPIRY_SECONDS = 15 * 24 * 3600


def once(
    fn: Callable[..., Any],
    *,
    table_name: str,
    key_jmespath: str,
    validation_jmespath: str | None = None,
    expires_after_seconds: int = DEFAULT_EXPIRY_SECONDS,
) -> tuple[Callable[..., Any], IdempotencyConfig]:
    """Wrap ``fn(data=...)`` so it runs once per key; returns the wrapper and its config.

    Call ``config.register_lambda_context(context)`` at every invocation, so a timed-out
    call does not stay in progress until expiry.
    """
    persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=aws_client("dynamodb"))
    config = IdempotencyConfig(
        event_key_jmespath=key_jmespath,
        payload_validation_jmespath=validation_jmespath or "",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=expires_after_seconds,
    )
    wrapped = idempotent_function(data_keyword_argument="data", persistence_store=persistence, config=config)(
        fn
    )
    return wrapped, config
