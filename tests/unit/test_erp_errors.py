"""NetSuite error bodies become the right exception class, with code, detail and path."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from r2r_core.erp.errors import (
    ErpAuthError,
    ErpError,
    ErpPermanentError,
    ErpTransientError,
    error_from_response,
    parse_retry_after,
)


def netsuite_body(status: int, title: str, code: str, detail: str, path: str | None = None) -> bytes:
    entry = {"detail": detail, "o:errorCode": code}
    if path:
        entry["o:errorPath"] = path
    return json.dumps(
        {
            "type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
            "title": title,
            "status": status,
            "o:errorDetails": [entry],
        }
    ).encode()


def test_400_invalid_content_is_permanent_and_names_the_field() -> None:
    body = netsuite_body(
        400, "Bad Request", "INVALID_CONTENT", "The field hours must be greater than 0.", "hours"
    )

    error = error_from_response(400, body, {})

    assert type(error) is ErpPermanentError
    assert (error.status, error.code, error.error_path) == (400, "INVALID_CONTENT", "hours")
    assert error.detail == "The field hours must be greater than 0."
    assert error.body == body.decode()
    assert "INVALID_CONTENT" in str(error)


def test_401_is_an_auth_error_which_is_permanent() -> None:
    error = error_from_response(
        401, netsuite_body(401, "Unauthorized", "INVALID_LOGIN", "Invalid login attempt."), {}
    )

    assert isinstance(error, ErpAuthError) and isinstance(error, ErpPermanentError)
    assert (error.status, error.code) == (401, "INVALID_LOGIN")


@pytest.mark.parametrize("status", [404, 405, 409, 415])
def test_other_4xx_are_permanent(status: int) -> None:
    error = error_from_response(status, netsuite_body(status, "x", "NONEXISTENT_ID", "gone"), {})

    assert type(error) is ErpPermanentError and error.status == status


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_throttling_and_server_errors_are_transient(status: int) -> None:
    error = error_from_response(status, netsuite_body(status, "x", "CONCURRENCY_LIMIT_EXCEEDED", "busy"), {})

    assert type(error) is ErpTransientError
    assert error.status == status and error.retry_after is None and not error.ambiguous


def test_429_carries_retry_after_seconds_from_any_header_case() -> None:
    error = error_from_response(429, b"", {"retry-after": "3"})

    assert isinstance(error, ErpTransientError) and error.retry_after == 3.0


def test_a_body_that_is_not_json_still_gives_the_class_by_status() -> None:
    error = error_from_response(503, b"<html>Service Unavailable</html>", {})

    assert isinstance(error, ErpTransientError) and error.code is None
    assert error.body == "<html>Service Unavailable</html>"


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("Thu, 26 Nov 2026 12:00:05 GMT", now=now) == 5.0
    assert parse_retry_after("Thu, 26 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


def test_class_names_are_the_contract_with_step_functions() -> None:
    # The state machine retries on the error *name*: it must not drift.
    assert ErpTransientError.__name__ == "ErpTransientError"
    assert ErpPermanentError.__name__ == "ErpPermanentError"
    assert issubclass(ErpTransientError, ErpError) and not issubclass(ErpTransientError, ErpPermanentError)
