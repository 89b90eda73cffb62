"""The shared SQS consumer: a message that still fails on its last receive becomes one exception.

A retryable error (the engagement not set up yet, the ERP still throttling) is retried by SQS; on the
receive after which SQS moves the message to the DLQ (the queue's maxReceiveCount), it is recorded for
finance like a permanent failure, so nothing rests in a DLQ without an exception saying why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from r2r_core.consumer import consume
from r2r_core.errors import BillingRuleError, EngagementNotReady
from r2r_core.model.events import EventEnvelope, WebhookPayload, build_envelope, event_type

SCENARIO = Path(__file__).resolve().parents[2] / "events" / "scenarios" / "sold-to-billed"


def _envelope() -> EventEnvelope:
    delivery = json.loads((SCENARIO / "02-time-priya-sharma-2026-11-16.json").read_text())
    payload = WebhookPayload.model_validate(delivery["body"])
    record = event_type(payload.type).data_model.model_validate(payload.data)
    return build_envelope(
        source_system=delivery["source"], delivery_id=delivery["webhook_id"], payload=payload, record=record
    )


def _event(receive_count: int) -> dict[str, Any]:
    body = json.dumps({"detail-type": "time_entry.approved", "detail": _envelope().model_dump(mode="json")})
    return {
        "Records": [
            {
                "messageId": "m-1",
                "receiptHandle": "h-1",
                "body": body,
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1",
            }
        ]
    }


def _run(error: Exception, receive_count: int, max_receive_count: int | None) -> list[tuple[str, str]]:
    """Consume a one-message batch whose processing raises ``error``; what was recorded for finance."""
    recorded: list[tuple[str, str]] = []

    def process(envelope: EventEnvelope) -> Any:
        raise error

    # The message fails either way (SQS retries it or moves it to the DLQ): a whole failed batch raises.
    with pytest.raises(BatchProcessingError):
        consume(
            _event(receive_count),
            None,
            name="time_posting",
            logger=Logger(service="test"),
            idempotency_table=None,
            process=process,
            on_permanent=lambda envelope, exc: recorded.append(
                (envelope.source_record_id, type(exc).__name__)
            ),
            max_receive_count=max_receive_count,
        )
    return recorded


@pytest.mark.parametrize("receive_count", [1, 4])
def test_a_retryable_failure_before_the_last_receive_is_only_retried(receive_count: int) -> None:
    assert _run(EngagementNotReady("not set up yet"), receive_count, 5) == []


@pytest.mark.parametrize("receive_count", [5, 6])
def test_a_retryable_failure_on_the_last_receive_becomes_an_exception(receive_count: int) -> None:
    recorded = _run(EngagementNotReady("not set up yet"), receive_count, 5)
    assert recorded == [("te-priya-sharma-2026-11-16", "EngagementNotReady")]


def test_without_a_known_receive_limit_retryable_failures_are_never_recorded() -> None:
    assert _run(EngagementNotReady("not set up yet"), 50, None) == []


def test_a_permanent_failure_is_recorded_on_the_first_receive() -> None:
    assert _run(BillingRuleError("no rate"), 1, 5) == [("te-priya-sharma-2026-11-16", "BillingRuleError")]
