"""Errors raised by the NetSuite client, parsed from NetSuite's REST error bodies.

NetSuite answers errors with an RFC 9457-style JSON body::

    {"type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1", "title": "Bad Request",
     "status": 400, "o:errorDetails": [{"detail": "...", "o:errorCode": "INVALID_CONTENT",
     "o:errorPath": "hours"}]}

The class of the exception decides who retries: ``ErpTransientError`` is retried by the client
and then, by name, by Step Functions and SQS; every ``ErpPermanentError`` needs a person.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = [
    "ErpAmbiguousWriteError",
    "ErpAuthError",
    "ErpError",
    "ErpPermanentError",
    "ErpTransientError",
    "error_details_from_message",
    "error_from_response",
    "is_transient_status",
    "parse_error_body",
    "parse_retry_after",
]

# Not committed for sure, worth retrying: throttling and server-side failures.
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


class ErpError(Exception):
    """Base of every error the ERP client raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        detail: str | None = None,
        error_path: str | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail
        self.error_path = error_path
        self.body = body


class ErpTransientError(ErpError):
    """429, 5xx, timeouts and dropped connections: retry later.

    The name is part of the contract: the state machine retries on ``ErpTransientError``.
    ``ambiguous`` is true when a write may have been committed (the answer was lost).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        detail: str | None = None,
        error_path: str | None = None,
        body: str | None = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message, status=status, code=code, detail=detail, error_path=error_path, body=body)
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class ErpPermanentError(ErpError):
    """A 4xx other than throttling: the request itself is wrong, retrying cannot help."""


class ErpAuthError(ErpPermanentError):
    """401: the TBA signature, token or account was refused (``INVALID_LOGIN``)."""


class ErpAmbiguousWriteError(ErpError):
    """A create without an external id lost its answer: it may or may not exist.

    Not retried automatically (a retry could create a duplicate); write with an external id.
    """


def is_transient_status(status: int) -> bool:
    return status in _TRANSIENT_STATUSES or status >= 500


def parse_error_body(body: bytes | str | None) -> tuple[str | None, str | None, str | None]:
    """``(o:errorCode, detail, o:errorPath)`` of the first error detail, or Nones."""
    if not body:
        return None, None, None
    try:
        document: Any = json.loads(body)
    except ValueError:
        return None, None, None
    if not isinstance(document, dict):
        return None, None, None
    details = document.get("o:errorDetails")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        first = details[0]
        return (
            _str_or_none(first.get("o:errorCode")),
            _str_or_none(first.get("detail")),
            _str_or_none(first.get("o:errorPath")),
        )
    return None, _str_or_none(document.get("title")), None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def error_from_response(
    status: int, body: bytes | None, headers: Mapping[str, str] | None = None
) -> ErpError:
    """The exception for a non-2xx NetSuite answer."""
    text = body.decode("utf-8", errors="replace") if body else None
    code, detail, path = parse_error_body(body)
    message = (
        f"NetSuite answered {status}"
        + (f" {code}" if code else "")
        + (f" at {path}" if path else "")
        + (f": {detail}" if detail else "")
    )
    fields: dict[str, Any] = {
        "status": status,
        "code": code,
        "detail": detail,
        "error_path": path,
        "body": text,
    }
    if is_transient_status(status):
        retry_after = parse_retry_after(_header(headers or {}, "Retry-After"))
        return ErpTransientError(message, retry_after=retry_after, **fields)
    if status == 401:
        return ErpAuthError(message, **fields)
    return ErpPermanentError(message, **fields)


# The message of error_from_response: only the message crosses a Lambda boundary (a Step Functions
# task's ``cause``), so the exception router reads the code, path and detail back from it.
_MESSAGE = re.compile(
    r"^NetSuite answered (?P<status>\d{3})(?: (?P<code>[A-Z][A-Z0-9_]*))?"
    r"(?: at (?P<path>\S+))?(?:: (?P<detail>.*))?$",
    re.DOTALL,
)


def error_details_from_message(message: str) -> dict[str, Any]:
    """``{"erp_status", "erp_error_code", "erp_error_path", "erp_error_detail"}`` from our own message."""
    match = _MESSAGE.match(message or "")
    if match is None:
        return {}
    return {
        "erp_status": int(match["status"]),
        "erp_error_code": match["code"],
        "erp_error_path": match["path"],
        "erp_error_detail": match["detail"],
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
