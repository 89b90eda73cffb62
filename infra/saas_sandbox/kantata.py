"""A Kantata OX REST stand-in on 127.0.0.1 (state in memory): enough for r2r's poller.

- ``GET /api/v1/<resource>.json`` for ``workspaces``, ``time_entries``, ``expenses``, ``users``,
  ``roles``: Kantata's list shape ``{"count", "results": [{"key", "id"}], "<resource>": {id: {...}},
  "meta": {...}}`` with ``page`` / ``per_page`` (default 20, at most 200), ``updated_after`` (records
  updated strictly after an ISO 8601 date-time), ``workspace_id``, ``order`` (``updated_at:asc`` — then by
  id —, ``updated_at:desc``, ``id:asc``; default ``id:asc``) and ``include`` (``role``, ``user``,
  ``workspace``: side-loaded under ``roles`` / ``users`` / ``workspaces``). Ids are strings.
- Every request needs ``Authorization: Bearer <api token>`` (401 ``{"errors": [...]}`` otherwise).
- Scriptable throttling: the next ``count`` API requests answer **429**, with ``Retry-After: <s>`` when
  asked, else without it (Kantata's usual answer).

Control (no auth): ``GET /_sandbox/records``, ``POST /_sandbox/records/<resource>`` (seed a record; its
``updated_at`` is now unless given), ``POST /_sandbox/records/<resource>/<id>`` (change fields: a new
``updated_at``), ``POST /_sandbox/throttle`` (``{"count": 3, "retry_after": 1}``), ``GET /_sandbox/stats``
(requests, 429s, pages served), ``GET /_sandbox/health``, ``POST /_sandbox/reset``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["KantataSandbox"]

log = logging.getLogger("r2r.saas_sandbox.kantata")
API_PREFIX = "/api/v1/"
RESOURCES = ("workspaces", "time_entries", "expenses", "users", "roles")
INCLUDES = {
    "role": ("role_id", "roles"),
    "user": ("user_id", "users"),
    "workspace": ("workspace_id", "workspaces"),
}
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 20


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(value)
    return moment


class KantataSandbox:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_token: str = "r2r-local-kantata-token",  # noqa: S107 - a local default, not a secret
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the Kantata sandbox binds to 127.0.0.1 only")
        self.host, self.port = "127.0.0.1", port
        self.api_token = api_token
        self._clock = clock or (lambda: datetime.now(UTC).replace(microsecond=0))
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in RESOURCES}
        self._ids = itertools.count(1001)
        self._throttle: list[float | None] = []
        self._stats: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API base (what ``KANTATA_BASE_URL`` is set to): ``http://127.0.0.1:<port>/api/v1``."""
        if self._server is None:
            raise RuntimeError("the Kantata sandbox is not started")
        return f"http://{self.host}:{self.port}/api/v1"

    @property
    def root_url(self) -> str:
        return self.url[: -len("/api/v1")]

    def start(self) -> str:
        if self._server is None:
            self._server = _Server((self.host, self.port), self)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="kantata-sandbox",
                daemon=True,
            )
            self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> KantataSandbox:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def secret_values(self) -> dict[str, str]:
        """The ``KantataCredentials`` secret for this sandbox."""
        return {"api_token": self.api_token}

    # ---- Python control API ---------------------------------------------------------------

    def seed(self, resource: str, fields: dict[str, Any]) -> str:
        """Create a record as a Kantata user would; returns its id (a string)."""
        if resource not in RESOURCES:
            raise ValueError(f"unknown Kantata resource {resource!r}")
        with self._lock:
            record_id = str(fields.get("id") or next(self._ids))
            now = _iso(self._clock())
            record = {"created_at": now, "updated_at": now, **fields, "id": record_id}
            self._records[resource][record_id] = record
            return record_id

    def update(self, resource: str, record_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Change a record (e.g. approve it): a new ``updated_at`` unless one is given."""
        with self._lock:
            record = self._records[resource][str(record_id)]
            record.update({"updated_at": _iso(self._clock()), **fields})
            return dict(record)

    def records(self, resource: str | None = None) -> Any:
        with self._lock:
            if resource is not None:
                return [dict(r) for r in self._records.get(resource, {}).values()]
            return {name: [dict(r) for r in rows.values()] for name, rows in self._records.items() if rows}

    def throttle(self, count: int, retry_after: float | None = None) -> None:
        """The next ``count`` API requests answer 429 (with ``Retry-After`` only if given)."""
        with self._lock:
            self._throttle.extend([retry_after] * count)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def reset(self) -> None:
        with self._lock:
            for rows in self._records.values():
                rows.clear()
            self._throttle.clear()
            self._stats.clear()

    # ---- request handling -----------------------------------------------------------------

    def handle(
        self, method: str, target: str, authorization: str | None, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        split = urlsplit(target)
        if split.path.startswith("/_sandbox"):
            status, document = self._control(method, split.path, body)
            return status, document, {}
        with self._lock:
            self._stats["requests"] += 1
            token = (authorization or "")[7:] if (authorization or "").startswith("Bearer ") else ""
            if not secrets.compare_digest(token.encode(), self.api_token.encode()):
                self._stats["401"] += 1
                return 401, _errors("authentication", "You must be logged in to do that."), {}
            if self._throttle:
                retry_after = self._throttle.pop(0)
                self._stats["429"] += 1
                headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
                return 429, _errors("rate_limit", "Too many requests: retry after a small delay."), headers
        if method != "GET" or not split.path.startswith(API_PREFIX):
            return 404, _errors("not_found", "not found"), {}
        resource = split.path[len(API_PREFIX) :].removesuffix(".json")
        if resource not in RESOURCES:
            return 404, _errors("not_found", f"unknown endpoint {resource}"), {}
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        try:
            return 200, self._list(resource, query), {}
        except ValueError as exc:
            return 422, _errors("validation", str(exc)), {}

    def _list(self, resource: str, query: dict[str, str]) -> dict[str, Any]:
        page = int(query.get("page", "1"))
        per_page = int(query.get("per_page", str(DEFAULT_PER_PAGE)))
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"page must be >= 1 and per_page between 1 and {MAX_PER_PAGE}")
        with self._lock:
            rows = [dict(r) for r in self._records[resource].values()]
            self._stats[f"GET {resource}"] += 1
            if "updated_after" in query:
                after = _parse(query["updated_after"])
                rows = [r for r in rows if _parse(r["updated_at"]) > after]
            if "workspace_id" in query:
                rows = [r for r in rows if str(r.get("workspace_id")) == query["workspace_id"]]
            rows.sort(key=_order(query.get("order", "id:asc")))
            start = (page - 1) * per_page
            chosen = rows[start : start + per_page]
            document: dict[str, Any] = {
                "count": len(rows),
                "results": [{"key": resource, "id": r["id"]} for r in chosen],
                resource: {r["id"]: r for r in chosen},
                "meta": {
                    "count": len(rows),
                    "page_count": -(-len(rows) // per_page),
                    "page_number": page,
                    "page_size": per_page,
                },
            }
            for name in filter(None, query.get("include", "").split(",")):
                if name not in INCLUDES:
                    raise ValueError(f"cannot include {name!r}")
                field, key = INCLUDES[name]
                wanted = {str(r[field]) for r in chosen if r.get(field) is not None}
                found = {i: dict(self._records[key][i]) for i in wanted if i in self._records[key]}
                document.setdefault(key, {}).update(found)
        return document

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        route = path[len("/_sandbox") :].rstrip("/")
        document = json.loads(body or b"{}") if method == "POST" else {}
        if (method, route) == ("GET", "/records"):
            return 200, self.records()
        if (method, route) == ("GET", "/stats"):
            return 200, self.stats()
        if (method, route) == ("GET", "/health"):
            return 200, {"ok": True}
        if (method, route) == ("POST", "/reset"):
            self.reset()
            return 204, None
        if (method, route) == ("POST", "/throttle"):
            self.throttle(int(document.get("count", 1)), document.get("retry_after"))
            return 204, None
        parts = route.split("/")
        if method == "POST" and len(parts) == 3 and parts[1] == "records":
            return 201, {"id": self.seed(parts[2], document)}
        if method == "POST" and len(parts) == 4 and parts[1] == "records":
            try:
                return 200, self.update(parts[2], parts[3], document)
            except KeyError:
                return 404, _errors("not_found", f"no {parts[2]} {parts[3]}")
        return 404, _errors("not_found", "not found")


def _order(spec: str) -> Callable[[dict[str, Any]], Any]:
    field, _, direction = spec.partition(":")
    if field not in ("updated_at", "id", "created_at") or direction not in ("", "asc", "desc"):
        raise ValueError(f"cannot order by {spec!r}")
    sign = -1 if direction == "desc" else 1

    def key(record: dict[str, Any]) -> Any:
        number = int(record["id"]) if str(record["id"]).isdigit() else 0
        if field == "id":
            return sign * number
        return (sign * _parse(record[field]).timestamp(), number)

    return key


def _errors(kind: str, message: str) -> dict[str, Any]:
    return {"errors": [{"type": kind, "message": message}]}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: KantataSandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kantata sandbox %s", format % args)

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, document, headers = self.server.sandbox.handle(
                method, self.path, self.headers.get("Authorization"), body
            )
        except Exception:
            log.exception("kantata sandbox request failed")
            status, document, headers = 500, _errors("system", "unexpected"), {}
        data = json.dumps(document).encode() if document is not None else b""
        with contextlib.suppress(OSError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if data:
                self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")
