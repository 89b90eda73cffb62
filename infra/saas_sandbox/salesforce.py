"""A Salesforce REST stand-in on 127.0.0.1 (state in memory): enough for r2r's write-backs.

- ``POST /services/oauth2/token`` (client credentials: ``client_id`` + ``client_secret``) ->
  ``{"access_token", "instance_url", "token_type": "Bearer"}``; wrong credentials 400 ``invalid_client``.
- ``GET|PATCH /services/data/<v>/sobjects/<Object>/<Id>``: read / update (204); 404 ``NOT_FOUND``. Records
  carry ``SystemModstamp`` / ``LastModifiedDate``, set on every change (Change Data Capture's re-read).
- ``GET|PATCH /services/data/<v>/sobjects/<Object>/<ExternalIdField>/<value>``: read / upsert (201
  ``{"id", "success", "errors", "created": true}`` or 200 with ``created: false``). Creating an
  ``Opportunity`` needs ``Name``, ``StageName`` and ``CloseDate`` (400 ``REQUIRED_FIELD_MISSING``).
- Every request needs ``Authorization: Bearer <token>`` (401 ``INVALID_SESSION_ID`` otherwise).

Control (no auth): ``GET /_sandbox/records``, ``POST /_sandbox/records/<Object>`` (seed a record; an
``Id`` in the body is kept), Python ``update()`` / ``delete()`` (a user's edit),
``GET /_sandbox/changes`` (a change feed like Change Data Capture: ``entityName``, ``recordIds``,
``changeType``, ``changedFields``, ``commitUser``, ``values``), ``GET /_sandbox/stats``, ``POST
/_sandbox/reset``, ``POST /_sandbox/faults`` (``{"sobject", "status", "errorCode", "count"}``: the next
``count`` writes of that object answer that error; ``DELETE`` clears them). Ids look like
Salesforce's (``006…`` opportunities, ``a0B…`` other objects).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import re
import secrets
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["SalesforceSandbox"]

log = logging.getLogger("r2r.saas_sandbox")
_SOBJECT = re.compile(r"^/services/data/v\d+\.\d/sobjects/(?P<object>\w+)/(?P<a>[^/]+)(?:/(?P<b>[^/]+))?$")
_PREFIX = {"Opportunity": "006", "Account": "001"}
_REQUIRED = {"Opportunity": ("Name", "StageName", "CloseDate"), "pse__Proj__c": ("Name",)}
INTEGRATION_USER = "005000000000001AAA"


class SalesforceSandbox:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        client_id: str = "r2r-local-sf-client",
        client_secret: str = "r2r-local-sf-secret",  # noqa: S107 - a local default, not a secret
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the Salesforce sandbox binds to 127.0.0.1 only")
        self.host, self.port = "127.0.0.1", port
        self.client_id, self.client_secret = client_id, client_secret
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, dict[str, Any]]] = {}
        self._changes: list[dict[str, Any]] = []
        self._tokens: set[str] = set()
        self._ids = itertools.count(1)
        self._last_stamp_ms = 0
        self._stats: Counter[str] = Counter()
        self._faults: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Salesforce sandbox is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        if self._server is None:
            self._server = _Server((self.host, self.port), self)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="sf-sandbox",
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

    def __enter__(self) -> SalesforceSandbox:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def secret_values(self) -> dict[str, str]:
        """The ``SalesforceCredentials`` secret for this sandbox."""
        return {"client_id": self.client_id, "client_secret": self.client_secret, "api_version": "v61.0"}

    # ---- Python control API ---------------------------------------------------------------

    def seed(self, sobject: str, fields: dict[str, Any]) -> str:
        """Create a record as if a user had (not a change r2r made); returns its Id."""
        with self._lock:
            return self._insert(sobject, dict(fields), user="005000000000002AAA")

    def update(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        """Change a record as a user would (not r2r's integration user); KeyError if there is none."""
        with self._lock:
            record = self._records.get(sobject, {})[record_id]
            self._update(sobject, record, dict(fields), user="005000000000002AAA")

    def delete(self, sobject: str, record_id: str) -> None:
        """Delete a record as a user would (a later read answers 404 ``NOT_FOUND``)."""
        with self._lock:
            del self._records.get(sobject, {})[record_id]
            self._change(sobject, record_id, "DELETE", {}, "005000000000002AAA")

    def records(self, sobject: str | None = None) -> Any:
        with self._lock:
            if sobject is not None:
                return [dict(r) for r in self._records.get(sobject, {}).values()]
            return {name: [dict(r) for r in rows.values()] for name, rows in self._records.items()}

    def find(self, sobject: str, field: str, value: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._by_field(sobject, field, value)
            return dict(found) if found else None

    def changes(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self._changes]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def fail_writes(self, sobject: str, *, status: int, error_code: str, count: int = 1) -> None:
        """The next ``count`` writes of ``sobject`` answer ``status`` / ``error_code`` (nothing stored)."""
        with self._lock:
            self._faults.append(
                {"sobject": sobject, "status": status, "errorCode": error_code, "count": count}
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, sobject: str) -> tuple[int, Any] | None:
        for fault in self._faults:
            if fault["sobject"] == sobject and fault["count"] > 0:
                fault["count"] -= 1
                self._stats[f"fault {fault['status']}"] += 1
                message = f"sandbox fault {fault['errorCode']}"
                return int(fault["status"]), [{"message": message, "errorCode": fault["errorCode"]}]
        return None

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._records.clear()
            self._changes.clear()
            self._stats.clear()

    # ---- request handling -----------------------------------------------------------------

    def handle(self, method: str, target: str, authorization: str | None, body: bytes) -> tuple[int, Any]:
        split = urlsplit(target)
        path = split.path
        if path.startswith("/_sandbox"):
            return self._control(method, path, body)
        if path == "/services/oauth2/token" and method == "POST":
            return self._token(body)
        token = (authorization or "")[7:] if (authorization or "").startswith("Bearer ") else ""
        with self._lock:
            self._stats[f"{method} {path.split('/sobjects/')[-1].split('/')[0]}"] += 1
            if token not in self._tokens:
                self._stats["401"] += 1
                return 401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        match = _SOBJECT.match(path)
        if match is None:
            return 404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]
        sobject, first, second = match["object"], unquote(match["a"]), match["b"] and unquote(match["b"])
        with self._lock:
            if method == "GET":
                record = (
                    self._by_field(sobject, first, second)
                    if second
                    else self._records.get(sobject, {}).get(first)
                )
                return (200, dict(record)) if record else (404, _not_found())
            if method != "PATCH":
                return 405, [
                    {"message": f"HTTP Method '{method}' not allowed", "errorCode": "METHOD_NOT_ALLOWED"}
                ]
            fault = self._take_fault(sobject)
            if fault is not None:
                return fault
            try:
                fields = json.loads(body or b"{}")
            except ValueError:
                return 400, [{"message": "Malformed JSON", "errorCode": "JSON_PARSER_ERROR"}]
            if not isinstance(fields, dict):
                return 400, [{"message": "Expected an object", "errorCode": "JSON_PARSER_ERROR"}]
            if second is None:
                record = self._records.get(sobject, {}).get(first)
                if record is None:
                    return 404, _not_found()
                self._update(sobject, record, fields)
                return 204, None
            record = self._by_field(sobject, first, second)
            if record is not None:
                self._update(sobject, record, fields)
                return 200, {"id": record["Id"], "success": True, "errors": [], "created": False}
            missing = [name for name in _REQUIRED.get(sobject, ()) if not fields.get(name)]
            if missing:
                return 400, [
                    {
                        "message": f"Required fields are missing: [{', '.join(missing)}]",
                        "errorCode": "REQUIRED_FIELD_MISSING",
                        "fields": missing,
                    }
                ]
            record_id = self._insert(sobject, {**fields, first: second}, user=INTEGRATION_USER)
            return 201, {"id": record_id, "success": True, "errors": [], "created": True}

    def _token(self, body: bytes) -> tuple[int, Any]:
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        ok = (
            form.get("grant_type") == "client_credentials"
            and secrets.compare_digest(form.get("client_id", ""), self.client_id)
            and secrets.compare_digest(form.get("client_secret", ""), self.client_secret)
        )
        if not ok:
            return 400, {"error": "invalid_client", "error_description": "invalid client credentials"}
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        return 200, {"access_token": token, "instance_url": self.url, "token_type": "Bearer", "scope": "api"}

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        route = path[len("/_sandbox") :].rstrip("/")
        if (method, route) == ("GET", "/records"):
            return 200, self.records()
        if (method, route) == ("GET", "/changes"):
            return 200, self.changes()
        if (method, route) == ("GET", "/stats"):
            return 200, self.stats()
        if (method, route) == ("POST", "/reset"):
            self.reset()
            return 204, None
        if (method, route) == ("POST", "/faults"):
            rule = json.loads(body or b"{}")
            self.fail_writes(
                str(rule["sobject"]),
                status=int(rule.get("status", 500)),
                error_code=str(rule.get("errorCode", "UNKNOWN_EXCEPTION")),
                count=int(rule.get("count", 1)),
            )
            return 204, None
        if (method, route) == ("DELETE", "/faults"):
            self.clear_faults()
            return 204, None
        if method == "POST" and route.startswith("/records/"):
            return 201, {"id": self.seed(route[len("/records/") :], json.loads(body or b"{}"))}
        return 404, _not_found()

    # ---- storage (callers hold the lock) --------------------------------------------------

    def _by_field(self, sobject: str, field: str, value: str | None) -> dict[str, Any] | None:
        return next((r for r in self._records.get(sobject, {}).values() if str(r.get(field)) == value), None)

    def _insert(self, sobject: str, fields: dict[str, Any], *, user: str) -> str:
        given = str(fields.pop("Id", "") or "")
        record_id = given or f"{_PREFIX.get(sobject, 'a0B')}{next(self._ids):012d}AAA"
        stamp = self._modstamp()
        record = {
            "attributes": {"type": sobject},
            "Id": record_id,
            "SystemModstamp": stamp,
            "LastModifiedDate": stamp,
            **fields,
        }
        self._records.setdefault(sobject, {})[record_id] = record
        self._change(sobject, record_id, "CREATE", fields, user)
        return record_id

    def _update(
        self, sobject: str, record: dict[str, Any], fields: dict[str, Any], user: str = INTEGRATION_USER
    ) -> None:
        changed = {k: v for k, v in fields.items() if record.get(k) != v}
        record.update(fields)
        if changed:
            if "SystemModstamp" not in fields:
                record["SystemModstamp"] = record["LastModifiedDate"] = self._modstamp()
            self._change(sobject, record["Id"], "UPDATE", changed, user)

    def _modstamp(self) -> str:
        """``SystemModstamp`` as Salesforce writes it (ms, UTC), strictly increasing in this sandbox."""
        now = max(int(time.time() * 1000), self._last_stamp_ms + 1)
        self._last_stamp_ms = now
        return (
            datetime.fromtimestamp(now / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{now % 1000:03d}Z"
        )

    def _change(self, sobject: str, record_id: str, kind: str, values: dict[str, Any], user: str) -> None:
        self._changes.append(
            {
                "entityName": sobject,
                "recordIds": [record_id],
                "changeType": kind,
                "changedFields": sorted(values),
                "commitUser": user,
                "values": dict(values),
            }
        )


def _not_found() -> list[dict[str, str]]:
    return [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sf sandbox %s", format % args)

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, document = self.server.sandbox.handle(
                method, self.path, self.headers.get("Authorization"), body
            )
        except Exception:
            log.exception("sf sandbox request failed")
            status, document = 500, [{"message": "unexpected", "errorCode": "UNKNOWN_EXCEPTION"}]
        data = json.dumps(document).encode() if document is not None else b""
        with contextlib.suppress(OSError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
