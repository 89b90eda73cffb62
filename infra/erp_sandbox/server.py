"""The NetSuite-compatible HTTP server: REST record API, TBA check, faults, stats.

``ErpSandbox(db_path).start()`` serves on 127.0.0.1 (an ephemeral port by default) from a daemon
thread and returns the base URL to use as ``ERP_BASE_URL``. Records live in SQLite, so stopping and
starting again on the same file keeps them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from . import jsonio
from .auth import AuthFailure, OAuth2Verifier, SandboxCredentials, SandboxOAuth2Client, TbaVerifier
from .errors import (
    SandboxError,
    closed_period,
    concurrency_exceeded,
    invalid_content,
    invalid_login,
    not_found,
)
from .faults import FaultInjector, FaultRule
from .schema import RECORD_TYPES, RecordType, render_decimals, tran_date, validate
from .store import RecordStore, StoredRecord
from .suiteql import apply_settlement, invoice_rows, parse_invoice_query, settle_fields

if TYPE_CHECKING:
    from r2r_core.erp import TbaCredentials

__all__ = ["RECORD_API_PATH", "ErpSandbox"]

RECORD_API_PATH = "/services/rest/record/v1"
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"  # noqa: S105 - a URL path, not a secret
QUERY_PATH = "/services/rest/query/v1/suiteql"
SETTLED_TYPES = ("invoice",)
CONTROL_PATH = "/_sandbox"
DEFAULT_ACCOUNT_ID = "TSTDRV1234567"
MAX_BODY_BYTES = 10 * 1024 * 1024
_EXTERNAL_ID_MAX = 255
_JSON_SINGULAR = "application/vnd.oracle.resource+json; type=singular"
_JSON_COLLECTION = "application/vnd.oracle.resource+json; type=collection"
_JSON_ERROR = "application/vnd.oracle.resource+json; type=error"
_JSON = "application/json"

log = logging.getLogger("r2r.erp_sandbox")


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False

    @classmethod
    def json(cls, status: int, document: Any, content_type: str = _JSON) -> Response:
        return cls(status, {"Content-Type": content_type}, jsonio.dumps(document).encode("utf-8"))

    @classmethod
    def error(cls, error: SandboxError) -> Response:
        response = cls.json(error.status, error.body(), _JSON_ERROR)
        response.headers.update(error.headers)
        return response

    @classmethod
    def dropped(cls) -> Response:
        return cls(0, drop=True)


class _Stats:
    """Request counts and in-flight concurrency of the record API."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._in_flight = 0
        self._offered = 0
        self._peak_in_flight = 0
        self._peak_offered = 0
        self._auth_failures = 0

    def enter(self, limit: int | None) -> bool:
        """Count a request in; False when it is over the concurrency limit (it is not admitted)."""
        with self._lock:
            self._offered += 1
            self._peak_offered = max(self._peak_offered, self._offered)
            if limit is not None and self._in_flight >= limit:
                return False
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            return True

    def leave(self, admitted: bool, method: str, record_type: str, status: str) -> None:
        with self._lock:
            self._offered -= 1
            if admitted:
                self._in_flight -= 1
            self._counts[(method, record_type, status)] += 1
            if status == "401":
                self._auth_failures += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_method: Counter[str] = Counter()
            by_type: Counter[str] = Counter()
            by_status: Counter[str] = Counter()
            for (method, record_type, status), count in self._counts.items():
                by_method[method] += count
                by_type[record_type] += count
                by_status[status] += count
            return {
                "total": sum(self._counts.values()),
                "by_method": dict(by_method),
                "by_record_type": dict(by_type),
                "by_status": dict(by_status),
                "requests": [
                    {"method": m, "record_type": t, "status": s, "count": c}
                    for (m, t, s), c in sorted(self._counts.items())
                ],
                "throttled": by_status.get("429", 0),
                "dropped": by_status.get("dropped", 0),
                "auth_failures": self._auth_failures,
                "in_flight": self._in_flight,
                "peak_in_flight": self._peak_in_flight,
                "peak_offered": self._peak_offered,
            }


class ErpSandbox:
    """A local NetSuite stand-in. See the package docstring for endpoints and faults.

    ``credentials`` is a :class:`SandboxCredentials` (local defaults when omitted) or an
    ``ErpCredentials``-shaped dict; ``account_id`` (the OAuth realm) defaults to the dict's
    ``account_id``, else ``TSTDRV1234567``.
    """

    def __init__(
        self,
        db_path: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        account_id: str | None = None,
        credentials: SandboxCredentials | Mapping[str, Any] | None = None,
        *,
        oauth2: SandboxOAuth2Client | None = None,
        token_ttl_s: float = 3600.0,
        max_clock_skew_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = _loopback(host)
        self.port = port
        self.db_path = Path(db_path)
        if isinstance(credentials, Mapping):
            # An ErpCredentials-shaped secret: its account id is the realm unless one is given.
            account_id = account_id or credentials.get("account_id")
            oauth2 = oauth2 or SandboxOAuth2Client.from_mapping(credentials)
            credentials = SandboxCredentials.from_mapping(credentials)
        self.account_id = str(account_id or DEFAULT_ACCOUNT_ID)
        self.credentials = credentials or SandboxCredentials()
        self.faults = FaultInjector()
        self._verifier = TbaVerifier(
            self.account_id, self.credentials, max_skew_s=max_clock_skew_s, clock=clock
        )
        self.oauth2 = OAuth2Verifier(oauth2, token_ttl_s=token_ttl_s, clock=clock)
        self._stats = _Stats()
        self._store: RecordStore | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the sandbox is not started")
        return self._url

    def start(self) -> str:
        """Open the database, bind, serve from a daemon thread; returns the base URL."""
        if self._server is not None:
            return self.url
        self._store = RecordStore(self.db_path)
        try:
            server = _Server((self.host, self.port), self)
        except OSError:
            self._store.close()
            self._store = None
            raise
        self._server = server
        self.port = server.server_address[1]
        self._url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="erp-sandbox", daemon=True
        )
        self._thread.start()
        log.info("erp sandbox serving", extra={"url": self._url, "db": str(self.db_path)})
        return self._url

    def stop(self) -> None:
        """Stop serving, close open connections and the database (records stay on disk)."""
        server, thread, store = self._server, self._thread, self._store
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None
        self._url = None
        if store is not None:
            with store.transaction():
                self._store = None
            store.close()

    def __enter__(self) -> ErpSandbox:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- Python control API ---------------------------------------------------------------

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """Every record by type, all fields, money as exact strings (what ``/_sandbox/records`` gives)."""
        result: dict[str, list[dict[str, Any]]] = {name: [] for name in RECORD_TYPES}
        for record in self.store.all():
            result.setdefault(record.record_type, []).append(record.as_document())
        return result

    def set_faults(self, config: Mapping[str, Any]) -> None:
        """Replace the fault configuration (format: :mod:`infra.erp_sandbox.faults`)."""
        self.faults.configure(config)

    def add_fault(self, rule: FaultRule | Mapping[str, Any]) -> None:
        self.faults.add_rule(rule)

    def clear_faults(self) -> None:
        self.faults.clear()

    def mark_closed(self, record_type: str, *, id: str | None = None, external_id: str | None = None) -> None:
        """Put one record in a closed period: writes to it answer ``CLOSED_PERIOD``."""
        self.faults.mark_closed(record_type, id=id, external_id=external_id)

    def settle_invoice(
        self,
        *,
        id: str | None = None,
        external_id: str | None = None,
        action: str,
        amount: Decimal | str | None = None,
    ) -> dict[str, Any]:
        """Play finance in NetSuite: mark an invoice ``paid`` (all, or a partial ``amount``),
        ``voided`` or ``credited`` (a credit memo for what remains, or ``amount``, is created from it).

        Returns the invoice as ``/_sandbox/records`` shows it; its ``lastModifiedDate`` moves on.
        """
        key = f"eid:{external_id}" if external_id is not None else str(id or "")
        invoice_type = RECORD_TYPES["invoice"]
        with self.store.transaction():
            existing = self._find(invoice_type, key)
            if existing is None:
                raise not_found()
            fields, credited = apply_settlement(
                existing.fields, action, Decimal(str(amount)) if amount is not None else None
            )
            record = self.store.replace(existing, fields)
            if credited > 0:
                self._credit_memo_from(existing, credited)
        return record.as_document()

    def _credit_memo_from(self, invoice: StoredRecord, amount: Decimal) -> None:
        lines = (invoice.fields.get("item") or {}).get("items") or [{}]
        item = lines[0].get("item") or {"id": "1"}
        fields = {
            "entity": invoice.fields.get("entity"),
            "createdFrom": {"id": invoice.id},
            "tranDate": invoice.fields.get("tranDate"),
            "currency": invoice.fields.get("currency"),
            "memo": f"credit of invoice {invoice.fields.get('tranId') or invoice.id}",
            "item": {
                "items": [
                    {
                        "item": item,
                        "quantity": "1",
                        "rate": format(amount, "f"),
                        "amount": format(amount, "f"),
                    }
                ]
            },
        }
        credit_type = RECORD_TYPES["creditMemo"]
        self.store.insert(credit_type.name, None, validate(credit_type, fields, self._resolve))

    def reset(self) -> None:
        """Forget records, faults and stats (internal ids keep counting up)."""
        self.store.clear()
        self.faults.clear()
        self._stats.reset()

    def stats(self) -> dict[str, Any]:
        return self._stats.snapshot()

    def tba_credentials(self) -> TbaCredentials:
        """Client credentials matching this sandbox (``r2r_core.erp.TbaCredentials``)."""
        from r2r_core.erp import TbaCredentials

        return TbaCredentials.model_validate(self.secret_values())

    def secret_values(self) -> dict[str, str]:
        """The ``ErpCredentials`` secret for this sandbox, as a dict."""
        return {
            "account_id": self.account_id,
            "consumer_key": self.credentials.consumer_key,
            "consumer_secret": self.credentials.consumer_secret,
            "token_id": self.credentials.token_id,
            "token_secret": self.credentials.token_secret,
        }

    def secret_json(self) -> str:
        """The ``ErpCredentials`` secret string for this sandbox."""
        return json.dumps(self.secret_values())

    @property
    def store(self) -> RecordStore:
        if self._store is None:
            raise SandboxError(503, "SERVICE_UNAVAILABLE", "The sandbox is not running.")
        return self._store

    # ---- HTTP entry points (called by the handler) ----------------------------------------

    def control(self, method: str, path: str, body: bytes) -> Response:
        """The ``/_sandbox/*`` endpoints (no authentication: local only)."""
        route = path[len(CONTROL_PATH) :].rstrip("/")
        if (method, route) == ("GET", "/records"):
            return Response.json(200, self.records())
        if (method, route) == ("GET", "/stats"):
            return Response.json(200, self.stats())
        if (method, route) == ("GET", "/health"):
            return Response.json(200, {"status": "ok", "account_id": self.account_id})
        if (method, route) == ("POST", "/reset"):
            self.reset()
            return Response(204)
        if method == "POST" and route.startswith("/invoices/") and route.endswith("/settle"):
            key = route[len("/invoices/") : -len("/settle")]
            try:
                request = jsonio.loads(body or b"{}")
                if not isinstance(request, dict):
                    raise ValueError("the body must be a JSON object")
                document = self.settle_invoice(
                    id=None if key.startswith("eid:") else key,
                    external_id=key[4:] if key.startswith("eid:") else None,
                    action=str(request.get("action", "")),
                    amount=request.get("amount"),
                )
            except (TypeError, ValueError, ArithmeticError) as exc:
                return Response.error(invalid_content(None, str(exc)))
            except SandboxError as exc:
                return Response.error(exc)
            return Response.json(200, document)
        if route == "/faults":
            if method == "GET":
                return Response.json(200, self.faults.snapshot())
            if method == "DELETE":
                self.clear_faults()
                return Response.json(200, self.faults.snapshot())
            if method == "POST":
                try:
                    config = jsonio.loads(body or b"{}")
                    if not isinstance(config, dict):
                        raise ValueError("the fault configuration must be a JSON object")
                    self.set_faults(config)
                except (TypeError, ValueError) as exc:
                    return Response.error(invalid_content(None, str(exc)))
                return Response.json(200, self.faults.snapshot())
        return Response.error(SandboxError(404, "NONEXISTENT_ID", f"No sandbox endpoint {method} {path}."))

    def record_api(
        self, method: str, target: str, *, host: str, authorization: str | None, body: bytes
    ) -> Response:
        """One request to ``/services/rest/record/v1/...``: gate, latency, auth, faults, work.

        ``target`` is the request line's path and query; ``host`` the Host header (both signed).
        """
        split = urlsplit(target)
        path, query = split.path, split.query
        parts = [part for part in path[len(RECORD_API_PATH) :].split("/") if part]
        stats_type = parts[0] if parts else "-"
        return self._gated(
            method,
            target,
            host=host,
            authorization=authorization,
            stats_type=stats_type,
            work=lambda: self._dispatch(method, parts, query, body),
        )

    def suiteql(
        self,
        method: str,
        target: str,
        *,
        host: str,
        authorization: str | None,
        body: bytes,
        prefer: str | None,
    ) -> Response:
        """``POST /services/rest/query/v1/suiteql?limit=&offset=`` with ``Prefer: transient``."""

        def work() -> Response:
            try:
                if method != "POST":
                    raise _method_not_allowed(method)
                if (prefer or "").strip().lower() != "transient":
                    raise SandboxError(400, "INVALID_PARAMETER", "The header Prefer: transient is required.")
                payload = _payload(body)
                params = parse_qs(urlsplit(target).query)
                limit = _int_param(params, "limit", 1000, 1, 1000)
                offset = _int_param(params, "offset", 0, 0, None)
                like, since = parse_invoice_query(str(payload.get("q") or ""))
                rows = invoice_rows([r for r in self.store.all() if r.record_type == "invoice"], like, since)
            except SandboxError as exc:
                return Response.error(exc)
            page = rows[offset : offset + limit]
            base = f"{self.url}{QUERY_PATH}"
            has_more = offset + len(page) < len(rows)
            links = [{"rel": "self", "href": f"{base}?{urlencode({'limit': limit, 'offset': offset})}"}]
            if has_more:
                links.append(
                    {"rel": "next", "href": f"{base}?{urlencode({'limit': limit, 'offset': offset + limit})}"}
                )
            document = {
                "links": links,
                "count": len(page),
                "hasMore": has_more,
                "items": [{"links": [], **row} for row in page],
                "offset": offset,
                "totalResults": len(rows),
            }
            return Response.json(200, document, _JSON_COLLECTION)

        return self._gated(
            method, target, host=host, authorization=authorization, stats_type="suiteql", work=work
        )

    def _gated(
        self,
        method: str,
        target: str,
        *,
        host: str,
        authorization: str | None,
        stats_type: str,
        work: Callable[[], Response],
    ) -> Response:
        """Concurrency gate, latency, authentication, then ``work``; counted in the stats."""
        uri = f"http://{host}{target}"
        admitted = self._stats.enter(self.faults.concurrency_limit)
        response = Response(500)
        try:
            if not admitted:
                response = Response.error(concurrency_exceeded(self.faults.concurrency_retry_after))
                return response
            if self.faults.latency_ms:
                time.sleep(self.faults.latency_ms / 1000)
            try:
                if authorization and authorization[:7].lower() == "bearer ":
                    self.oauth2.verify_bearer(authorization[7:].strip())
                else:
                    self._verifier.verify(method, uri, authorization)
            except AuthFailure as exc:
                log.info("erp sandbox refused login", extra={"reason": str(exc)})
                response = Response.error(invalid_login())
                return response
            response = work()
            return response
        finally:
            status = "dropped" if response.drop else str(response.status)
            self._stats.leave(admitted, method, stats_type, status)

    def token(self, body: bytes, *, host: str) -> Response:
        """``POST /services/rest/auth/oauth2/v1/token``: client credentials with a JWT assertion."""
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", errors="replace")).items()}
        try:
            answer = self.oauth2.issue(form, f"http://{host}{TOKEN_PATH}")
        except AuthFailure as exc:
            log.info("erp sandbox refused a token request", extra={"reason": str(exc)})
            return Response.error(invalid_login())
        return Response.json(200, answer)

    def revoke_tokens(self) -> None:
        """Invalidate every OAuth 2.0 access token issued so far."""
        self.oauth2.revoke_all()

    # ---- record API -----------------------------------------------------------------------

    def _dispatch(self, method: str, parts: list[str], query: str, body: bytes) -> Response:
        try:
            if not parts or len(parts) > 2:
                raise not_found()
            record_type = RECORD_TYPES.get(parts[0])
            if record_type is None:
                raise SandboxError(404, "NONEXISTENT_ID", f"Record type '{parts[0]}' does not exist.")
            key = parts[1] if len(parts) == 2 else None
            payload = _payload(body) if method in ("POST", "PUT", "PATCH") else None
            external_id = _key_external_id(key)
            if external_id is None and payload is not None and isinstance(payload.get("externalId"), str):
                external_id = payload["externalId"]
            rule = self.faults.pick(method, record_type.name, external_id)
            if rule is not None and rule.mode == "error":
                time.sleep(rule.delay_ms / 1000)
                raise rule.error()
            if rule is not None and rule.mode == "drop":
                return Response.dropped()
            try:
                response = self._perform(method, record_type, key, query, payload)
            except SandboxError as exc:
                response = Response.error(exc)
            if rule is not None and rule.mode == "commit_then_drop":
                return Response.dropped()
            if rule is not None and rule.mode == "commit_then_delay":
                time.sleep(rule.delay_ms / 1000)
            return response
        except SandboxError as exc:
            return Response.error(exc)

    def _perform(
        self,
        method: str,
        record_type: RecordType,
        key: str | None,
        query: str,
        payload: dict[str, Any] | None,
    ) -> Response:
        if key is None:
            if method == "GET":
                return self._list(record_type, query)
            if method == "POST":
                assert payload is not None
                return self._create(record_type, payload)
            raise _method_not_allowed(method)
        if method == "GET":
            return self._get(record_type, key)
        if method == "PUT":
            external_id = _key_external_id(key)
            if external_id is None:
                raise _method_not_allowed(method)
            assert payload is not None
            return self._upsert(record_type, external_id, payload)
        if method == "PATCH":
            assert payload is not None
            return self._update(record_type, key, payload)
        if method == "DELETE":
            return self._delete(record_type, key)
        raise _method_not_allowed(method)

    def _find(self, record_type: RecordType, key: str) -> StoredRecord | None:
        external_id = _key_external_id(key)
        if external_id is not None:
            return self.store.get_by_external_id(record_type.name, external_id)
        return self.store.get(record_type.name, key) if key.isdigit() else None

    def _resolve(self, targets: tuple[str, ...], key: str, by_external_id: bool) -> str | None:
        for target in targets:
            found = (
                self.store.get_by_external_id(target, key) if by_external_id else self.store.get(target, key)
            )
            if found is not None:
                return found.id
        return None

    def _check_open(
        self,
        record_type: RecordType,
        record_id: str | None,
        external_id: str | None,
        *versions: Mapping[str, Any],
    ) -> None:
        dates = [tran_date(fields) for fields in versions] if record_type.transaction else []
        for when in dates or [None]:
            if self.faults.is_closed(record_type.name, record_id, external_id, when):
                raise closed_period()

    def _location(self, record_type: RecordType, record_id: str) -> dict[str, str]:
        return {"Location": f"{self.url}{RECORD_API_PATH}/{record_type.name}/{record_id}"}

    def _create(self, record_type: RecordType, payload: dict[str, Any]) -> Response:
        external_id = payload.get("externalId")
        if external_id is not None:
            external_id = _valid_external_id(str(external_id))
        with self.store.transaction():
            if external_id is not None and self.store.get_by_external_id(record_type.name, external_id):
                raise SandboxError(
                    400, "DUP_RCRD", "A record with this external ID already exists.", "externalId"
                )
            fields = validate(record_type, payload, self._resolve)
            self._check_open(record_type, None, external_id, fields)
            record = self._insert(record_type, external_id, fields)
        return Response(204, self._location(record_type, record.id))

    def _insert(
        self, record_type: RecordType, external_id: str | None, fields: dict[str, Any]
    ) -> StoredRecord:
        if record_type.name not in SETTLED_TYPES:
            return self.store.insert(record_type.name, external_id, fields)
        record = self.store.insert(record_type.name, external_id, settle_fields(fields, None))
        # The document number NetSuite assigns (auto-numbering): INV + the internal id.
        return self.store.replace(record, {**record.fields, "tranId": f"INV{int(record.id):05d}"})

    def _replace(
        self, record_type: RecordType, existing: StoredRecord, fields: dict[str, Any]
    ) -> StoredRecord:
        if record_type.name in SETTLED_TYPES:
            fields = settle_fields(fields, existing.fields)
        return self.store.replace(existing, fields)

    def _upsert(self, record_type: RecordType, external_id: str, payload: dict[str, Any]) -> Response:
        external_id = _valid_external_id(external_id)
        with self.store.transaction():
            existing = self.store.get_by_external_id(record_type.name, external_id)
            merged = _merge(existing.fields if existing else {}, payload)
            fields = validate(record_type, merged, self._resolve)
            if existing is None:
                self._check_open(record_type, None, external_id, fields)
                record = self._insert(record_type, external_id, fields)
            else:
                self._check_open(record_type, existing.id, external_id, existing.fields, fields)
                record = self._replace(record_type, existing, fields)
        return Response(204, self._location(record_type, record.id))

    def _update(self, record_type: RecordType, key: str, payload: dict[str, Any]) -> Response:
        with self.store.transaction():
            existing = self._find(record_type, key)
            if existing is None:
                raise not_found()
            fields = validate(record_type, _merge(existing.fields, payload), self._resolve)
            self._check_open(record_type, existing.id, existing.external_id, existing.fields, fields)
            self._replace(record_type, existing, fields)
        return Response(204, self._location(record_type, existing.id))

    def _delete(self, record_type: RecordType, key: str) -> Response:
        with self.store.transaction():
            existing = self._find(record_type, key)
            if existing is None:
                raise not_found()
            self._check_open(record_type, existing.id, existing.external_id, existing.fields)
            self.store.delete(record_type.name, existing.id)
        return Response(204)

    def _get(self, record_type: RecordType, key: str) -> Response:
        record = self._find(record_type, key)
        if record is None:
            raise not_found()
        self_link = f"{self.url}{RECORD_API_PATH}/{record_type.name}/{record.id}"
        document = {"links": [{"rel": "self", "href": self_link}]}
        document.update(render_decimals(record_type, record.as_document()))
        return Response.json(200, document, _JSON_SINGULAR)

    def _list(self, record_type: RecordType, query: str) -> Response:
        params = parse_qs(query)
        limit = _int_param(params, "limit", 1000, 1, 1000)
        offset = _int_param(params, "offset", 0, 0, None)
        ids, total = self.store.page(record_type.name, limit, offset)
        base = f"{self.url}{RECORD_API_PATH}/{record_type.name}"
        has_more = offset + len(ids) < total

        def page_link(rel: str, at: int) -> dict[str, str]:
            return {"rel": rel, "href": f"{base}?{urlencode({'limit': limit, 'offset': at})}"}

        links = [page_link("self", offset), page_link("first", 0)]
        if offset > 0:
            links.append(page_link("previous", max(0, offset - limit)))
        if has_more:
            links.append(page_link("next", offset + limit))
        links.append(page_link("last", max(0, (total - 1) // limit * limit)))
        document = {
            "links": links,
            "count": len(ids),
            "hasMore": has_more,
            "items": [{"links": [{"rel": "self", "href": f"{base}/{rid}"}], "id": rid} for rid in ids],
            "offset": offset,
            "totalResults": total,
        }
        return Response.json(200, document, _JSON_COLLECTION)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: ErpSandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Cut keep-alive connections so no handler serves a stopped sandbox."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("erp sandbox connection error", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "r2r-erp-sandbox/1.0"
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("erp sandbox %s", format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = self.headers.get("Content-Length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            self.close_connection = True
            self._respond(Response.error(SandboxError(413, "INVALID_CONTENT", "Request body too large.")))
            return
        body = self.rfile.read(int(length)) if length else b""
        split = urlsplit(self.path)
        sandbox = self.server.sandbox
        try:
            if split.path == CONTROL_PATH or split.path.startswith(CONTROL_PATH + "/"):
                response = sandbox.control(method, split.path, body)
            elif split.path == QUERY_PATH:
                response = sandbox.suiteql(
                    method,
                    self.path,
                    host=self.headers.get("Host") or f"{sandbox.host}:{sandbox.port}",
                    authorization=self.headers.get("Authorization"),
                    body=body,
                    prefer=self.headers.get("Prefer"),
                )
            elif split.path == TOKEN_PATH and method == "POST":
                response = sandbox.token(
                    body, host=self.headers.get("Host") or f"{sandbox.host}:{sandbox.port}"
                )
            elif split.path.startswith(RECORD_API_PATH + "/") or split.path == RECORD_API_PATH:
                host = self.headers.get("Host") or f"{sandbox.host}:{sandbox.port}"
                response = sandbox.record_api(
                    method, self.path, host=host, authorization=self.headers.get("Authorization"), body=body
                )
            else:
                response = Response.error(
                    SandboxError(404, "NONEXISTENT_ID", f"No resource at {split.path}.")
                )
        except SandboxError as exc:
            response = Response.error(exc)
        except Exception:
            log.exception("erp sandbox request failed")
            response = Response.error(SandboxError(500, "UNEXPECTED_ERROR"))
        if response.drop:
            self._drop()
        else:
            self._respond(response)

    def _respond(self, response: Response) -> None:
        with contextlib.suppress(OSError):
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if response.status != 204:
                self.send_header("Content-Length", str(len(response.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if response.body and response.status != 204:
                self.wfile.write(response.body)

    def _drop(self) -> None:
        """Close the connection without a byte of answer (the write, if any, is committed)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError(f"the sandbox binds to a loopback IPv4 address only, not {host!r}") from exc
    if address.version != 4 or not address.is_loopback:
        raise ValueError(f"the sandbox binds to a loopback IPv4 address only, not {host!r}")
    return host


def _payload(body: bytes) -> dict[str, Any]:
    try:
        document = jsonio.loads(body) if body else None
    except ValueError as exc:
        raise invalid_content(None, "The request body is not valid JSON.") from exc
    if not isinstance(document, dict):
        raise invalid_content(None, "The request body must be a JSON object.")
    return document


def _key_external_id(key: str | None) -> str | None:
    if key is None or not key.startswith("eid:"):
        return None
    return key[4:]


def _valid_external_id(external_id: str) -> str:
    if not external_id or len(external_id) > _EXTERNAL_ID_MAX or not _is_external_id(external_id):
        raise invalid_content(
            "externalId", "The external ID may contain only letters, digits, underscores and hyphens."
        )
    return external_id


def _is_external_id(text: str) -> bool:
    return all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in text)


def _merge(existing: Mapping[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    """Fields given replace stored ones (a sublist is replaced whole); ``null`` clears a field."""
    merged = dict(existing)
    for name, value in payload.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def _int_param(params: dict[str, list[str]], name: str, default: int, low: int, high: int | None) -> int:
    values = params.get(name)
    if not values:
        return default
    text = values[-1]
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise invalid_content(name, f"The query parameter {name} must be an integer {bounds}.")
    return int(text)


def _method_not_allowed(method: str) -> SandboxError:
    return SandboxError(405, "METHOD_NOT_ALLOWED", f"The method {method} is not allowed on this resource.")
