"""Standard Webhooks signature verification (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

Several secrets may be active for a source at once, so that a secret can be rotated
without downtime. The timestamp tolerance is five minutes.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class WebhookAuthError(Exception):
    """The delivery could not be authenticated; the message says why (never secret material)."""


REQUIRED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def verify(secrets: Sequence[str], headers: Mapping[str, str], body: bytes) -> str:
    """Check the delivery against every active secret; return the webhook id."""
    lower = {key.lower(): value for key, value in headers.items()}
    missing = [name for name in REQUIRED_HEADERS if not lower.get(name)]
    if missing:
        raise WebhookAuthError(f"missing signature header(s): {', '.join(missing)}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookAuthError("body is not UTF-8 text") from exc
    if not secrets:
        raise WebhookAuthError("no signing secret is configured for this source")
    reason = "signature does not match"
    for secret in secrets:
        try:
            Webhook(secret).verify(text, lower, json_parse=False)
            return lower["webhook-id"]
        except WebhookVerificationError as exc:
            reason = _reason(str(exc))
            if "timestamp" in reason:
                break
        except (ValueError, binascii.Error):
            reason = "webhook-signature is malformed (expected space-separated 'v1,<base64>' entries)"
            break
    raise WebhookAuthError(reason)


def _reason(message: str) -> str:
    known = {
        "Message timestamp too old": "webhook-timestamp is older than the 5 minute tolerance",
        "Message timestamp too new": "webhook-timestamp is more than 5 minutes in the future",
        "Invalid Signature Headers": "webhook-timestamp is not a unix timestamp",
        "No matching signature found": "signature does not match",
    }
    return known.get(message, message)


def sign(secret: str, webhook_id: str, body: bytes, at: datetime | None = None) -> dict[str, str]:
    """Headers for a signed delivery (used by the local stack, scenarios and tests)."""
    moment = at or datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, moment, body.decode("utf-8"))
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }
