import base64
from datetime import UTC, datetime, timedelta

import pytest

from r2r_core.webhooks import WebhookAuthError, sign, verify

SECRET = "whsec_" + base64.b64encode(b"r2r-unit-test-secret-0001").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"r2r-unit-test-secret-0002").decode()
BODY = b'{"type":"time_entry.approved","timestamp":"2026-11-21T09:30:00Z","data":{}}'


def test_a_correctly_signed_delivery_verifies_and_yields_the_webhook_id() -> None:
    headers = sign(SECRET, "msg_1", BODY)
    assert verify([SECRET], headers, BODY) == "msg_1"


def test_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in sign(SECRET, "msg_1", BODY).items()}
    assert verify([SECRET], headers, BODY) == "msg_1"


def test_rotation_accepts_either_active_secret() -> None:
    assert verify([NEW_SECRET, SECRET], sign(SECRET, "old", BODY), BODY) == "old"
    assert verify([NEW_SECRET, SECRET], sign(NEW_SECRET, "new", BODY), BODY) == "new"


def test_tampered_body_is_rejected() -> None:
    headers = sign(SECRET, "msg_1", BODY)
    with pytest.raises(WebhookAuthError, match="signature does not match"):
        verify([SECRET], headers, BODY.replace(b"time_entry", b"milestone"))


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(WebhookAuthError, match="signature does not match"):
        verify([NEW_SECRET], sign(SECRET, "msg_1", BODY), BODY)


def test_missing_headers_are_named() -> None:
    headers = sign(SECRET, "msg_1", BODY)
    del headers["webhook-signature"]
    with pytest.raises(WebhookAuthError, match="missing signature header\\(s\\): webhook-signature"):
        verify([SECRET], headers, BODY)


def test_timestamp_older_than_five_minutes_is_rejected_even_with_a_valid_signature() -> None:
    headers = sign(SECRET, "msg_1", BODY, at=datetime.now(UTC) - timedelta(minutes=6))
    with pytest.raises(WebhookAuthError, match="older than the 5 minute tolerance"):
        verify([SECRET], headers, BODY)


def test_timestamp_within_tolerance_is_accepted() -> None:
    headers = sign(SECRET, "msg_1", BODY, at=datetime.now(UTC) - timedelta(minutes=4))
    assert verify([SECRET], headers, BODY) == "msg_1"


@pytest.mark.parametrize("signature", ["garbage", "v1", "v1,not base64!!"])
def test_malformed_signature_header_is_a_clear_401_reason(signature: str) -> None:
    headers = sign(SECRET, "msg_1", BODY) | {"webhook-signature": signature}
    with pytest.raises(WebhookAuthError):
        verify([SECRET], headers, BODY)


def test_non_utf8_body_is_rejected() -> None:
    headers = sign(SECRET, "msg_1", BODY)
    with pytest.raises(WebhookAuthError, match="UTF-8"):
        verify([SECRET], headers, b"\xff\xfe")
