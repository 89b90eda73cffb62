"""NetSuite REST record API client: TBA-signed or OAuth 2.0 bearer, retrying, idempotent writes.

Every write goes through ``PUT /<type>/eid:<externalId>`` (upsert) where possible, so a retried
write lands once. Transient failures (429, 5xx, timeouts, dropped connections) are retried with
exponential backoff and full jitter, honouring ``Retry-After``, then surface as
``ErpTransientError`` for Step Functions / SQS to retry later. When the answer to a write is lost
(timeout, dropped connection, 5xx) the record is looked up by external id before the retry: if
our write is there, its id is returned and nothing is written twice.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import urllib3
from aws_lambda_powertools import Logger
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ProtocolError, ReadTimeoutError

from r2r_core.kpis import COUNT, ERP_THROTTLED, Kpi
from r2r_core.telemetry import emit

from .auth import TbaCredentials, tba_authorization
from .errors import (
    ErpAmbiguousWriteError,
    ErpAuthError,
    ErpError,
    ErpPermanentError,
    ErpTransientError,
    error_from_response,
)
from .oauth2 import OAuth2Credentials, OAuth2TokenSource

__all__ = ["RECORD_API_PATH", "SUITEQL_PATH", "NetSuiteClient", "write_applied"]

RECORD_API_PATH = "/services/rest/record/v1"
SUITEQL_PATH = "/services/rest/query/v1/suiteql"
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_RECORD_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_INTERNAL_ID = re.compile(r"^[0-9]+$")
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


class NetSuiteClient:
    """A client for one NetSuite account. Thread-safe; create one per process and reuse it."""

    def __init__(
        self,
        base_url: str,
        credentials: TbaCredentials | OAuth2Credentials,
        *,
        http: urllib3.PoolManager | None = None,
        max_attempts: int = 6,
        base_delay: float = 0.5,
        max_delay: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        page_size: int = 1000,
        logger: Logger | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        self._base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._http = http if http is not None else urllib3.PoolManager(maxsize=10, retries=False)
        # OAuth 2.0: one cached access token per client (so per process), fetched on first use.
        self._tokens = (
            OAuth2TokenSource(self._base_url, credentials, http=self._http, timeout=self._timeout)
            if isinstance(credentials, OAuth2Credentials)
            else None
        )
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep
        self._rng = rng
        self._page_size = page_size
        self._log = logger if logger is not None else Logger(child=True)

    def __repr__(self) -> str:
        auth = "oauth2" if self._tokens is not None else "tba"
        return f"NetSuiteClient({self._base_url!r}, account={self._credentials.account_id!r}, auth={auth})"

    # ---- public API -----------------------------------------------------------------------

    def upsert(self, record_type: str, external_id: str, body: Mapping[str, Any]) -> str:
        """Create or update the record with this external id; returns its internal id."""
        url = self._record_url(record_type, _eid(external_id))
        return self._write("PUT", url, body, record_type=record_type, external_id=external_id)

    def create(self, record_type: str, body: Mapping[str, Any]) -> str:
        """``POST`` a new record; returns its internal id.

        Give the body an ``externalId``: without one, a write whose answer is lost cannot be
        checked and raises ``ErpAmbiguousWriteError`` instead of risking a duplicate.
        """
        raw_external_id = body.get("externalId")
        external_id = str(raw_external_id) if raw_external_id is not None else None
        if external_id is not None:
            _eid(external_id)
        url = self._record_url(record_type)
        return self._write("POST", url, body, record_type=record_type, external_id=external_id)

    def update(self, record_type: str, internal_id: str, body: Mapping[str, Any]) -> None:
        """``PATCH`` the given fields of an existing record (idempotent: same fields, same result)."""
        url = self._record_url(record_type, _internal_id(internal_id))
        self._write("PATCH", url, body, record_type=record_type, external_id=None, idempotent=True)

    def delete_by_external_id(self, record_type: str, external_id: str) -> bool:
        """``DELETE`` the record with this external id; False when there is none (already deleted).

        Idempotent: a retry after a lost answer finds nothing and reports False.
        """
        url = self._record_url(record_type, _eid(external_id))
        context = {"record_type": record_type, "external_id": external_id, "method": "DELETE"}
        last: ErpTransientError | None = None
        for attempt in range(1, self._max_attempts + 1):
            if last is not None:
                self._pause(last, attempt - 1, context)
            try:
                self._send("DELETE", url, None, context, attempt)
            except ErpTransientError as exc:
                last = exc
                continue
            except ErpPermanentError as exc:
                if exc.status == 404:
                    return False
                raise
            return True
        assert last is not None
        raise last

    def get(self, record_type: str, internal_id: str) -> dict[str, Any]:
        """The record with this internal id (money as ``Decimal``); 404 raises ErpPermanentError."""
        url = self._record_url(record_type, _internal_id(internal_id))
        return self._read_json(url, record_type=record_type)

    def get_by_external_id(
        self, record_type: str, external_id: str, *, expand_sub_resources: bool = False
    ) -> dict[str, Any] | None:
        """The record with this external id, or None when there is none."""
        url = self._record_url(record_type, _eid(external_id))
        if expand_sub_resources:
            url += "?" + urlencode({"expandSubResources": "true"})
        try:
            return self._read_json(url, record_type=record_type, external_id=external_id)
        except ErpPermanentError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, record_type: str) -> Iterator[dict[str, Any]]:
        """Every record of a type, page by page: items ``{"id", "links"}`` as NetSuite lists them."""
        offset = 0
        while True:
            query = urlencode({"limit": self._page_size, "offset": offset})
            page = self._read_json(f"{self._record_url(record_type)}?{query}", record_type=record_type)
            items = page.get("items") or []
            yield from items
            if not page.get("hasMore") or not items:
                return
            offset += len(items)

    def suiteql(self, query: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every row of a SuiteQL query, page by page (``?limit=&offset=``, ``Prefer: transient``).

        Rows are NetSuite's ``items`` without their ``links``; numbers stay strings as SuiteQL sends
        them (parse money with ``Decimal``). A read: retried on transient errors like a GET.
        """
        limit = page_size or self._page_size
        if not 1 <= limit <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        payload = _dumps({"q": query})
        offset = 0
        while True:
            url = f"{self._base_url}{SUITEQL_PATH}?{urlencode({'limit': limit, 'offset': offset})}"
            page = self._read_json(url, record_type="suiteql", method="POST", payload=payload)
            items = page.get("items") or []
            for item in items:
                yield {key: value for key, value in item.items() if key != "links"}
            if not page.get("hasMore") or not items:
                return
            offset += len(items)

    def backoff_delay(self, retry_number: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry ``retry_number`` (1-based); None means stop retrying.

        ``Retry-After`` wins when given; if it asks for longer than ``max_delay`` we stop here and
        let the caller's own retry (Step Functions, SQS) come back later instead of sleeping.
        Otherwise: full jitter, ``rng() * min(max_delay, base_delay * 2 ** (retry_number - 1))``.
        """
        if retry_after is not None:
            return retry_after if retry_after <= self._max_delay else None
        ceiling = min(self._max_delay, self._base_delay * (2 ** (retry_number - 1)))
        return self._rng() * ceiling

    # ---- plumbing -------------------------------------------------------------------------

    def _record_url(self, record_type: str, key: str | None = None) -> str:
        if not _RECORD_TYPE.match(record_type):
            raise ValueError(f"invalid record type: {record_type!r}")
        url = f"{self._base_url}{RECORD_API_PATH}/{record_type}"
        return f"{url}/{key}" if key else url

    def _write(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any],
        *,
        record_type: str,
        external_id: str | None,
        idempotent: bool | None = None,
    ) -> str:
        payload = _dumps(body)
        # PUT by external id and PATCH are idempotent; a POST must never be replayed blindly.
        replay_safe = method != "POST" if idempotent is None else idempotent
        context = {"record_type": record_type, "external_id": external_id, "method": method}
        check_first = False
        last: ErpTransientError | None = None
        for attempt in range(1, self._max_attempts + 1):
            if last is not None:
                self._pause(last, attempt - 1, context)
            try:
                if check_first and external_id is not None:
                    found = self._find_applied(record_type, external_id, body)
                    check_first = False
                    if found is not None:
                        self._log.info(
                            "erp write found applied after lost answer",
                            extra={**context, "attempt": attempt, "internal_id": found},
                        )
                        return found
                response = self._send(method, url, payload, context, attempt)
            except ErpTransientError as exc:
                last = exc
                if exc.ambiguous:
                    if external_id is not None:
                        check_first = True
                    elif not replay_safe:
                        raise ErpAmbiguousWriteError(
                            "the answer to a create without externalId was lost; it may exist",
                            status=exc.status,
                        ) from exc
                continue
            if method == "PATCH":
                return url.rsplit("/", 1)[-1]
            return _location_id(response, record_type)
        assert last is not None
        raise last

    def _read_json(
        self,
        url: str,
        *,
        record_type: str,
        external_id: str | None = None,
        method: str = "GET",
        payload: bytes | None = None,
    ) -> dict[str, Any]:
        context = {"record_type": record_type, "external_id": external_id, "method": method}
        last: ErpTransientError | None = None
        for attempt in range(1, self._max_attempts + 1):
            if last is not None:
                self._pause(last, attempt - 1, context)
            try:
                response = self._send(method, url, payload, context, attempt)
            except ErpTransientError as exc:
                last = exc
                continue
            return _loads(response.data)
        assert last is not None
        raise last

    def _find_applied(self, record_type: str, external_id: str, body: Mapping[str, Any]) -> str | None:
        """The internal id if the record exists with ``body`` applied (one request, no retry)."""
        url = self._record_url(record_type, _eid(external_id)) + "?expandSubResources=true"
        context = {"record_type": record_type, "external_id": external_id, "method": "GET"}
        try:
            response = self._send("GET", url, None, context, attempt=0)
        except ErpPermanentError as exc:
            if exc.status == 404:
                return None
            raise
        record = _loads(response.data)
        if not write_applied(body, record):
            return None
        record_id = record.get("id")
        return str(record_id) if record_id is not None else None

    def _pause(self, error: ErpTransientError, retry_number: int, context: Mapping[str, Any]) -> None:
        delay = self.backoff_delay(retry_number, error.retry_after)
        if delay is None:
            self._log.warning(
                "erp retry-after exceeds max delay, giving up for now",
                extra={**context, "retry_after": error.retry_after, "status": error.status},
            )
            raise error
        self._log.info("erp retry scheduled", extra={**context, "retry": retry_number, "delay_s": delay})
        self._sleep(delay)

    def _authorization(self, method: str, url: str) -> str:
        if self._tokens is not None:
            return self._tokens.authorization(method, url)
        assert isinstance(self._credentials, TbaCredentials)
        return tba_authorization(self._credentials, method, url)

    def _send(
        self, method: str, url: str, payload: bytes | None, context: Mapping[str, Any], attempt: int
    ) -> urllib3.BaseHTTPResponse:
        try:
            return self._send_once(method, url, payload, context, attempt)
        except ErpAuthError:
            # A bearer token can be revoked or expire early: fetch a new one once, then give up.
            if self._tokens is None or not self._tokens.invalidate():
                raise
            self._log.info("erp access token refused, fetching a new one", extra=dict(context))
            return self._send_once(method, url, payload, context, attempt)

    def _send_once(
        self, method: str, url: str, payload: bytes | None, context: Mapping[str, Any], attempt: int
    ) -> urllib3.BaseHTTPResponse:
        headers = {
            "Authorization": self._authorization(method, url),
            "Accept": "application/json",
        }
        if url.split("?", 1)[0].endswith(SUITEQL_PATH):
            headers["Prefer"] = "transient"
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(
                method,
                url,
                body=payload,
                headers=headers,
                retries=False,
                redirect=False,
                timeout=self._timeout,
            )
        except ConnectTimeoutError as exc:
            # Includes refused connections and DNS failures: the request was never sent.
            self._log.warning(
                "erp connection failed", extra={**context, "attempt": attempt, "error": "connect"}
            )
            raise ErpTransientError("could not connect to NetSuite", ambiguous=False) from exc
        except ReadTimeoutError as exc:
            self._log.warning("erp read timed out", extra={**context, "attempt": attempt, "error": "timeout"})
            raise ErpTransientError("NetSuite did not answer in time", ambiguous=True) from exc
        except ProtocolError as exc:
            self._log.warning(
                "erp connection dropped", extra={**context, "attempt": attempt, "error": "dropped"}
            )
            raise ErpTransientError(
                "NetSuite closed the connection without an answer", ambiguous=True
            ) from exc
        except HTTPError as exc:
            self._log.warning(
                "erp transport error", extra={**context, "attempt": attempt, "error": type(exc).__name__}
            )
            raise ErpTransientError("transport error talking to NetSuite", ambiguous=True) from exc
        status = response.status
        if status >= 400:
            error = error_from_response(status, response.data, response.headers)
            if isinstance(error, ErpTransientError) and method != "GET" and status >= 500:
                error.ambiguous = True  # a 5xx may come after the write was committed
            self._log.warning(
                "erp request refused",
                extra={**context, "attempt": attempt, "status": status, "error_code": error.code},
            )
            if status == 429:
                emit(
                    [
                        Kpi(
                            ERP_THROTTLED,
                            COUNT,
                            Decimal(1),
                            {"RecordType": str(context.get("record_type") or "query")},
                            stack_wide=True,
                        )
                    ]
                )
            raise error
        self._log.debug("erp request done", extra={**context, "attempt": attempt, "status": status})
        return response


def write_applied(sent: Any, stored: Any) -> bool:
    """Whether every field we sent is in the stored record with the same value.

    Extra stored keys (``links``, ``refName``, computed totals) are ignored; numbers compare as
    decimals (``"150.00"`` equals ``150.0``); sublists compare line by line.
    """
    if isinstance(sent, Mapping):
        return isinstance(stored, Mapping) and all(
            key in stored and write_applied(value, stored[key]) for key, value in sent.items()
        )
    if isinstance(sent, list | tuple):
        return (
            isinstance(stored, list)
            and len(sent) == len(stored)
            and all(write_applied(a, b) for a, b in zip(sent, stored, strict=True))
        )
    if isinstance(sent, bool) or isinstance(stored, bool):
        return isinstance(sent, bool) and isinstance(stored, bool) and sent == stored
    if sent is None or stored is None:
        return sent is None and stored is None
    left, right = _as_number(sent), _as_number(stored)
    if left is not None and right is not None:
        return left == right
    return _scalar_text(sent) == _scalar_text(stored)


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return Decimal(value.strip())
    return None


def _scalar_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _eid(external_id: str) -> str:
    if not _EXTERNAL_ID.match(external_id or ""):
        raise ValueError(f"invalid external id: {external_id!r}")
    return f"eid:{external_id}"


def _internal_id(internal_id: str) -> str:
    text = str(internal_id)
    if not _INTERNAL_ID.match(text):
        raise ValueError(f"invalid internal id: {internal_id!r}")
    return text


def _location_id(response: urllib3.BaseHTTPResponse, record_type: str) -> str:
    location = response.headers.get("Location")
    if not location:
        raise ErpError("NetSuite answered a write without a Location header", status=response.status)
    record_id = location.rstrip("/").rsplit("/", 1)[-1]
    if not _INTERNAL_ID.match(record_id):
        raise ErpError(f"unexpected Location for {record_type}: {location}", status=response.status)
    return record_id


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite Decimal in a NetSuite body")
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__} into a NetSuite body")


_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"), allow_nan=False)
# The C encoder ``_ENCODER.encode`` builds afresh on every call, built once (same options, same bytes;
# no circular-reference bookkeeping: a body is a tree we built, and a cycle would still fail, with a
# RecursionError). ``c_make_encoder`` is CPython's private constructor: where it is missing, takes other
# arguments (another Python version) or does not give the expected bytes for a sample body, ``_ENCODER``
# is used instead.
_SAMPLE_BODY = {"a": [1, "é", None, True], "b": Decimal("7.10"), "c": date(2026, 11, 30), "d": {"e": 0.5}}
_SAMPLE_JSON = '{"a":[1,"\\u00e9",null,true],"b":"7.10","c":"2026-11-30","d":{"e":0.5}}'


def _c_encoder() -> Any:
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encoder = make(
            None, _json_default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
        )
        same = "".join(encoder(_SAMPLE_BODY, 0)) == _SAMPLE_JSON
    except (TypeError, ValueError):
        return None
    return encoder if same else None


_C_ENCODER = _c_encoder()


def _dumps(body: Mapping[str, Any]) -> bytes:
    if _C_ENCODER is None or not isinstance(body, dict):
        return _ENCODER.encode(body).encode("utf-8")
    return "".join(_C_ENCODER(body, 0)).encode("utf-8")


def _loads(data: bytes) -> dict[str, Any]:
    if not data:
        return {}
    document = json.loads(data, parse_float=Decimal)
    if not isinstance(document, dict):
        raise ErpError("NetSuite answered JSON that is not an object")
    return document
