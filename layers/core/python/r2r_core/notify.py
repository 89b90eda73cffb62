"""A short notification to finance when an exception is recorded (SNS), if ``EXCEPTIONS_TOPIC_ARN`` is set.

Called by the code that records exceptions, right after ``StateStore.put_exception`` created one, so each
exception is announced once. The notification is a summary (kind, client, project, amount at risk, error,
owner, id); the record itself stays in the StateTable (``r2r exceptions show <id>``). A failed publish is
logged and does not fail the caller: the exception is recorded either way and stays visible to finance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from r2r_core.runtime import aws_client, environ

logger = Logger(child=True)

TOPIC_ENV = "EXCEPTIONS_TOPIC_ARN"
_SUBJECT_MAX = 100  # SNS subject limit


def exception_message(record: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, message) of the notification for one exception record."""
    client = record.get("client_name") or record.get("client_id") or "unknown client"
    subject = f"r2r exception: {record.get('kind', 'exception')} ({client})"
    amount = record.get("amount_at_risk")
    at_risk = f"{amount} {record.get('currency') or ''}".strip() if amount not in (None, "") else "-"
    lines = [
        f"Exception {record.get('id')} ({record.get('kind')}) for {client}.",
        f"Project: {record.get('project_id') or '-'}; engagement: {record.get('engagement_id') or '-'}.",
        f"Amount at risk: {at_risk}.",
        f"Source: {record.get('source_system') or '-'} {record.get('source_record_id') or ''}".rstrip() + ".",
        f"Error: {record.get('error_type')}: {record.get('error')}",
        f"Owner: {record.get('owner') or '-'}.",
        f"Details: r2r exceptions show {record.get('id')}",
    ]
    return subject[:_SUBJECT_MAX], "\n".join(lines)


def notify_exception(record: Mapping[str, Any]) -> bool:
    """Publish the notification of a newly recorded exception; True when published."""
    topic = environ().get(TOPIC_ENV)
    if not topic:
        return False
    subject, message = exception_message(record)
    attributes = {
        key: {"DataType": "String", "StringValue": str(record[key])}
        for key in ("kind", "owner", "region", "business_unit")
        if record.get(key)
    }
    try:
        aws_client("sns").publish(
            TopicArn=topic, Subject=subject, Message=message, MessageAttributes=attributes
        )
    except (BotoCoreError, ClientError):
        logger.exception("exception notification not published", extra={"exception_id": record.get("id")})
        return False
    return True
