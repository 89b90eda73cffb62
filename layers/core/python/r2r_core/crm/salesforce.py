"""A small Salesforce REST client: OAuth 2.0 client credentials, upsert by external id, retries.

The org's connected app has the client credentials flow enabled with a run-as integration user;
``SalesforceCredentials`` come from the ``SalesforceCredentials`` secret::

    {"client_id": "3MVG...", "client_secret": "...", "api_version": "v61.0"}

The token answer names the org's ``instance_url``; the base URL (``SALESFORCE_BASE_URL``) is the My
Domain login host. Writes are ``PATCH /services/data/<v>/sobjects/<object>/<external id field>/<value>``
(upsert: 201 created / 200 updated), so a retried write lands once. Transient failures (5xx,
``REQUEST_LIMIT_EXCEEDED``, timeouts) are retried with backoff, then raised as
``SalesforceTransientError``; a refused session is re-authenticated once; every other error is a
``SalesforcePermanentError`` (an exception for finance).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from urllib3.exceptions import HTTPError

from r2r_core.errors import Permanent, Retryable

__all__ = [
    "SalesforceClient",
    "SalesforceCredentials",
    "SalesforceError",
    "SalesforcePermanentError",
    "SalesforceTransientError",
]

TOKEN_PATH = "/services/oauth2/token"  # noqa: S105 - a URL path, not a secret


class SalesforceError(Exception):
    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class SalesforceTransientError(SalesforceError, Retryable):
    """5xx, request limits, timeouts: retry later."""


class SalesforcePermanentError(SalesforceError, Permanent):
    """A refused write (validation, missing field, bad credentials): needs a person."""


class SalesforceCredentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True, defer_build=True)

    client_id: str = Field(min_length=1, repr=False)
    client_secret: SecretStr
    api_version: str = Field(default="v61.0", pattern=r"^v\d+\.\d$")

    @classmethod
    def from_secret_json(cls, text: str | bytes) -> SalesforceCredentials:
        try:
            document = json.loads(text)
            return cls.model_validate(document)
        except ValueError as exc:
            fields = (
                sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
                if isinstance(exc, ValidationError)
                else ["(not JSON)"]
            )
            raise ValueError(
                "Salesforce credentials secret is missing or has invalid: " + ", ".join(fields)
            ) from None


class SalesforceClient:
    def __init__(
        self,
        base_url: str,
        credentials: SalesforceCredentials,
        *,
        http: urllib3.PoolManager | None = None,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 30.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._http = http if http is not None else urllib3.PoolManager(maxsize=4, retries=False)
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._sleep = sleep
        self._timeout = urllib3.Timeout(connect=5.0, read=timeout)
        self._lock = threading.Lock()
        self._session: tuple[str, str] | None = None  # (access token, instance url)
        self._log = Logger(child=True)

    def __repr__(self) -> str:
        return f"SalesforceClient({self._base_url!r})"

    def upsert(self, sobject: str, external_id_field: str, value: str, fields: Mapping[str, Any]) -> str:
        """Create or update the record whose ``external_id_field`` is ``value``; returns its Id."""
        path = (
            f"/services/data/{self._credentials.api_version}/sobjects/{quote(sobject, safe='')}/"
            f"{quote(external_id_field, safe='')}/{quote(value, safe='')}"
        )
        body = json.dumps(dict(fields), separators=(",", ":")).encode()
        response = self._request("PATCH", path, body)
        document = json.loads(response.data) if response.data else {}
        return str(document.get("id") or value)

    def get(self, sobject: str, record_id: str) -> dict[str, Any]:
        version = self._credentials.api_version
        path = f"/services/data/{version}/sobjects/{quote(sobject, safe='')}/{quote(record_id, safe='')}"
        # Numbers as Decimal: money and hours are never binary floats.
        return dict(json.loads(self._request("GET", path, None).data, parse_float=Decimal))

    # ---- plumbing -------------------------------------------------------------------------

    def _session_for(self, *, renew: bool = False) -> tuple[str, str]:
        with self._lock:
            if self._session is None or renew:
                self._session = self._authenticate()
            return self._session

    def _authenticate(self) -> tuple[str, str]:
        form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self._credentials.client_id,
                "client_secret": self._credentials.client_secret.get_secret_value(),
            }
        ).encode()
        try:
            response = self._http.request(
                "POST",
                self._base_url + TOKEN_PATH,
                body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                retries=False,
                timeout=self._timeout,
            )
        except HTTPError as exc:
            raise SalesforceTransientError("could not reach Salesforce to authenticate") from exc
        if response.status >= 500:
            raise SalesforceTransientError("Salesforce token endpoint failed", status=response.status)
        if response.status != 200:
            raise SalesforcePermanentError(
                "Salesforce refused the client credentials", status=response.status, code="invalid_client"
            )
        document = json.loads(response.data)
        return str(document["access_token"]), str(document.get("instance_url") or self._base_url).rstrip("/")

    def _request(self, method: str, path: str, body: bytes | None) -> urllib3.BaseHTTPResponse:
        renewed = False
        last: SalesforceTransientError | None = None
        for attempt in range(1, self._max_attempts + 1):
            if last is not None:
                self._sleep(random.random() * self._base_delay * 2 ** (attempt - 2))  # noqa: S311 - jitter
            token, instance = self._session_for()
            try:
                response = self._http.request(
                    method,
                    instance + path,
                    body=body,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                    },
                    retries=False,
                    timeout=self._timeout,
                )
            except HTTPError as exc:
                last = SalesforceTransientError(f"transport error on {method} {path}")
                last.__cause__ = exc
                continue
            if response.status < 300:
                return response
            code, message = _error(response.data)
            if response.status == 401 and code == "INVALID_SESSION_ID" and not renewed:
                renewed = True
                self._session_for(renew=True)
                continue
            if response.status >= 500 or code == "REQUEST_LIMIT_EXCEEDED":
                last = SalesforceTransientError(message, status=response.status, code=code)
                continue
            self._log.warning(
                "salesforce refused a request",
                extra={"method": method, "status": response.status, "code": code},
            )
            raise SalesforcePermanentError(message, status=response.status, code=code)
        assert last is not None
        raise last


def _error(data: bytes) -> tuple[str | None, str]:
    """Salesforce errors are a list: ``[{"message": ..., "errorCode": ..., "fields": [...]}]``."""
    try:
        document = json.loads(data)
    except ValueError:
        return None, "Salesforce answered an error without a JSON body"
    first = document[0] if isinstance(document, list) and document else document
    if not isinstance(first, dict):
        return None, "Salesforce answered an error"
    fields = first.get("fields") or []
    suffix = f" (fields: {', '.join(map(str, fields))})" if fields else ""
    return first.get("errorCode"), f"Salesforce {first.get('errorCode')}: {first.get('message')}{suffix}"
