"""NetSuite-shaped error answers (``type``, ``title``, ``status``, ``o:errorDetails``)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

__all__ = [
    "CODE_STATUS",
    "SandboxError",
    "closed_period",
    "concurrency_exceeded",
    "error_body",
    "invalid_content",
    "invalid_login",
    "invalid_ref",
    "missing_field",
    "not_found",
]

_RFC9110 = "https://www.rfc-editor.org/rfc/rfc9110.html#section-"
_TYPES = {
    400: _RFC9110 + "15.5.1",
    401: _RFC9110 + "15.5.2",
    403: _RFC9110 + "15.5.4",
    404: _RFC9110 + "15.5.5",
    405: _RFC9110 + "15.5.6",
    409: _RFC9110 + "15.5.10",
    413: _RFC9110 + "15.5.14",
    415: _RFC9110 + "15.5.16",
    429: "https://www.rfc-editor.org/rfc/rfc6585.html#section-4",
    500: _RFC9110 + "15.6.1",
    502: _RFC9110 + "15.6.3",
    503: _RFC9110 + "15.6.4",
    504: _RFC9110 + "15.6.5",
}

# HTTP status of the NetSuite error codes the sandbox knows (fault rules may name any of them).
CODE_STATUS: dict[str, int] = {
    "INVALID_CONTENT": 400,
    "USER_ERROR": 400,
    "INVALID_KEY_OR_REF": 400,
    "CLOSED_PERIOD": 400,
    "DUP_RCRD": 400,
    "INVALID_LOGIN": 401,
    "INSUFFICIENT_PERMISSION": 403,
    "NONEXISTENT_ID": 404,
    "METHOD_NOT_ALLOWED": 405,
    "CONCURRENCY_LIMIT_EXCEEDED": 429,
    "UNEXPECTED_ERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
}

# Default code for a bare HTTP status in a fault rule.
STATUS_CODE: dict[int, str] = {
    400: "INVALID_CONTENT",
    401: "INVALID_LOGIN",
    403: "INSUFFICIENT_PERMISSION",
    404: "NONEXISTENT_ID",
    429: "CONCURRENCY_LIMIT_EXCEEDED",
    500: "UNEXPECTED_ERROR",
    502: "UNEXPECTED_ERROR",
    503: "SERVICE_UNAVAILABLE",
    504: "UNEXPECTED_ERROR",
}

_DETAILS: dict[str, str] = {
    "INVALID_LOGIN": (
        "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at "
        "Setup > Users/Roles > User Management > View Login Audit Trail."
    ),
    "NONEXISTENT_ID": "The record instance does not exist. Provide a valid record instance ID.",
    "CONCURRENCY_LIMIT_EXCEEDED": "Concurrent request limit exceeded. Request blocked.",
    "UNEXPECTED_ERROR": "An unexpected error occurred. Error ID: sandbox-injected.",
    "SERVICE_UNAVAILABLE": "The service is temporarily unavailable. Try again later.",
    "CLOSED_PERIOD": "The accounting period of this transaction is closed.",
    "INVALID_CONTENT": "Invalid content in the request body.",
}


def default_detail(code: str) -> str:
    return _DETAILS.get(code, f"Error {code}.")


def error_body(status: int, code: str, detail: str, path: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"detail": detail, "o:errorCode": code}
    if path is not None:
        entry["o:errorPath"] = path
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return {
        "type": _TYPES.get(status, _RFC9110 + ("15.6.1" if status >= 500 else "15.5.1")),
        "title": title,
        "status": status,
        "o:errorDetails": [entry],
    }


class SandboxError(Exception):
    """An error answer; raised anywhere in request handling, written by the server."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        path: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail if detail is not None else default_detail(code)
        self.path = path
        self.headers = headers or {}
        super().__init__(f"{status} {code}: {self.detail}")

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.code, self.detail, self.path)


def invalid_content(path: str | None, detail: str) -> SandboxError:
    return SandboxError(400, "INVALID_CONTENT", detail, path)


def missing_field(path: str, label: str | None = None) -> SandboxError:
    return SandboxError(400, "USER_ERROR", f"Please enter value(s) for: {label or path}.", path)


def invalid_ref(path: str, key: str) -> SandboxError:
    return SandboxError(400, "INVALID_KEY_OR_REF", f"Invalid {path} reference key {key}.", path)


def not_found() -> SandboxError:
    return SandboxError(404, "NONEXISTENT_ID")


def invalid_login() -> SandboxError:
    return SandboxError(401, "INVALID_LOGIN")


def concurrency_exceeded(retry_after: float | None = None) -> SandboxError:
    headers = {"Retry-After": _retry_after(retry_after)} if retry_after is not None else None
    return SandboxError(429, "CONCURRENCY_LIMIT_EXCEEDED", headers=headers)


def closed_period(path: str | None = "tranDate") -> SandboxError:
    return SandboxError(400, "CLOSED_PERIOD", None, path)


def _retry_after(seconds: float) -> str:
    return str(max(0, round(seconds)))
