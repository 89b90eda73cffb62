"""A small Kantata OX REST client: bearer token, page/per_page paging, retries on 429 and 5xx.

Base URL ``https://api.mavenlink.com/api/v1`` (``KANTATA_BASE_URL``); the token comes from the
``KantataCredentials`` secret (``{"api_token": "..."}``, :func:`r2r_core.kantata_access.kantata_client`).

Kantata answers **429** when an integration sends too much, usually without ``Retry-After``: the client
then waits with exponential backoff and full jitter (``jitter(min(max_delay, base_delay × 2^(n-1)))``),
and honours ``Retry-After`` when present (seconds or an HTTP date; longer than ``max_delay`` gives up
at once, so the scheduled tick comes back later instead of sleeping). 5xx answers and transport errors
are retried the same way. After ``max_attempts`` a :class:`KantataTransientError` is raised (retryable);
401/403/404 and other 4xx are :class:`KantataPermanentError` (a person must fix the token or the
request). ``sleep`` and ``jitter`` are injectable so tests never really wait.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3
from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from urllib3.exceptions import HTTPError

from r2r_core.erp.errors import parse_retry_after
from r2r_core.errors import Permanent, Retryable

__all__ = [
    "KantataClient",
    "KantataCredentials",
    "KantataError",
    "KantataPermanentError",
    "KantataTransientError",
]

MAX_PER_PAGE = 200  # Kantata's documented maximum


class KantataError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KantataTransientError(KantataError, Retryable):
    """429, 5xx, timeouts: try again later."""


class KantataPermanentError(KantataError, Permanent):
    """A refused request (bad token, unknown endpoint, invalid filter): needs a person."""


class KantataCredentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True, defer_build=True)

    api_token: SecretStr

    @classmethod
    def from_secret_json(cls, text: str | bytes) -> KantataCredentials:
        try:
            credentials = cls.model_validate(json.loads(text))
        except (ValueError, ValidationError):
            raise ValueError("Kantata credentials secret is missing or has an invalid: api_token") from None
        if not credentials.api_token.get_secret_value():
            raise ValueError("Kantata credentials secret is missing or has an invalid: api_token")
        return credentials


class KantataClient:
    def __init__(
        self,
        base_url: str,
        credentials: KantataCredentials,
        *,
        http: urllib3.PoolManager | None = None,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float], float] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._http = http if http is not None else urllib3.PoolManager(maxsize=2, retries=False)
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep
        self._jitter = jitter or (lambda ceiling: random.uniform(0, ceiling))  # noqa: S311 - jitter
        self._timeout = urllib3.Timeout(connect=5.0, read=timeout)
        self._log = Logger(child=True)
        self.throttled = 0  # 429 answers seen (a figure for logs and tests)

    def __repr__(self) -> str:
        return f"KantataClient({self._base_url!r})"

    def list_page(
        self, resource: str, *, page: int, per_page: int, params: Mapping[str, str] | None = None
    ) -> Any:
        """``GET /<resource>.json?page=&per_page=&…``: the decoded JSON answer of one page."""
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}")
        query = {**dict(params or {}), "page": str(page), "per_page": str(per_page)}
        url = f"{self._base_url}/{resource}.json?{urlencode(query)}"
        data = self._get(url, resource)
        try:
            return json.loads(data)
        except ValueError:
            raise KantataPermanentError(f"Kantata answered {resource} page {page} with non-JSON") from None

    def backoff_delay(self, retry_number: int, retry_after: float | None = None) -> float | None:
        """Seconds before retry ``retry_number`` (1-based); None: give up now (Retry-After too long)."""
        if retry_after is not None:
            return retry_after if retry_after <= self._max_delay else None
        return self._jitter(min(self._max_delay, self._base_delay * 2 ** (retry_number - 1)))

    def _get(self, url: str, resource: str) -> bytes:
        last: KantataTransientError | None = None
        for attempt in range(1, self._max_attempts + 1):
            try:
                response = self._http.request(
                    "GET",
                    url,
                    headers={
                        "Authorization": f"Bearer {self._credentials.api_token.get_secret_value()}",
                        "Accept": "application/json",
                    },
                    retries=False,
                    timeout=self._timeout,
                )
            except HTTPError as exc:
                last = KantataTransientError(f"transport error reading Kantata {resource}")
                last.__cause__ = exc
                retry_after = None
            else:
                if response.status < 300:
                    return bytes(response.data)
                if response.status == 429 or response.status >= 500:
                    if response.status == 429:
                        self.throttled += 1
                    last = KantataTransientError(
                        f"Kantata answered {response.status} on {resource}", status=response.status
                    )
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                else:
                    raise KantataPermanentError(
                        f"Kantata refused GET {resource}: {response.status} {_message(response.data)}",
                        status=response.status,
                    )
            if attempt == self._max_attempts:
                break
            delay = self.backoff_delay(attempt, retry_after)
            if delay is None:
                self._log.warning(
                    "kantata retry-after exceeds max delay, giving up for now",
                    extra={"resource": resource, "retry_after": retry_after},
                )
                break
            self._log.info(
                "kantata retry",
                extra={"resource": resource, "status": last.status, "attempt": attempt, "delay_s": delay},
            )
            self._sleep(delay)
        assert last is not None
        raise last


def _message(data: bytes | None) -> str:
    """Kantata errors: ``{"errors": [{"type", "message", "field"}]}``."""
    try:
        document = json.loads(data or b"")
        first = (document.get("errors") or [{}])[0]
        return str(first.get("message") or first.get("type") or "")[:200]
    except (ValueError, AttributeError, TypeError):
        return ""
