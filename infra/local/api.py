"""Serve the template's API Gateway REST API on 127.0.0.1 as Lambda proxy events.

Routes come from the template's ``AWS::ApiGateway::Resource`` tree and ``AWS::ApiGateway::Method``
integrations; paths carry the stage name first, like API Gateway's invoke URL
(``http://127.0.0.1:<port>/<stage>/v1/webhooks/crm``). A method with ``AuthorizationType: AWS_IAM`` is
only invoked for a SigV4-signed request whose role may ``execute-api:Invoke`` it (``infra.local.iam_auth``).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from infra.local import config
from infra.local.functions import FunctionRuntime
from infra.local.iam_auth import Denied, IamAuthorizer, Identity
from infra.local.provision import ApiSpec, RouteSpec

LOG = logging.getLogger("r2r.local.api")


@dataclass
class _CompiledRoute:
    route: RouteSpec
    pattern: re.Pattern[str]
    literal_segments: int
    greedy: bool


def _compile(route: RouteSpec) -> _CompiledRoute:
    segments = [s for s in route.path.split("/") if s]
    parts = []
    literal = 0
    greedy = False
    for segment in segments:
        match = re.fullmatch(r"\{([A-Za-z0-9_.-]+)(\+?)\}", segment)
        if match and match.group(2):
            parts.append(f"(?P<{_group(match.group(1))}>.+)")
            greedy = True
        elif match:
            parts.append(f"(?P<{_group(match.group(1))}>[^/]+)")
        else:
            parts.append(re.escape(segment))
            literal += 1
    pattern = re.compile("^/" + "/".join(parts) + "/?$") if parts else re.compile("^/?$")
    return _CompiledRoute(route, pattern, literal, greedy)


def _group(name: str) -> str:
    # Regex group names must be identifiers; keep a reversible mapping for '.' and '-'.
    return name.replace(".", "__dot__").replace("-", "__dash__")


def _ungroup(name: str) -> str:
    return name.replace("__dot__", ".").replace("__dash__", "-")


class ApiServer:
    """One REST API of the template served over HTTP."""

    def __init__(
        self,
        api: ApiSpec,
        runtime: FunctionRuntime,
        host: str = config.HOST,
        port: int = 0,
        max_payload: int = config.MAX_API_PAYLOAD_BYTES,
        *,
        authorizer: IamAuthorizer | None = None,
    ) -> None:
        self.api = api
        self.runtime = runtime
        self.authorizer = authorizer
        self.max_payload = max_payload
        # Most specific first: more literal segments, greedy paths last.
        self._routes = sorted(
            (_compile(r) for r in api.routes),
            key=lambda c: (c.greedy, -c.literal_segments, -len(c.route.path)),
        )
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.api_id = api.api_id or api.logical_id

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{self.api.stage}/"

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="r2r-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # -- request handling -----------------------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[RouteSpec, dict[str, str]] | None:
        candidates = []
        for compiled in self._routes:
            found = compiled.pattern.match(path)
            if found:
                params = {_ungroup(k): unquote(v) for k, v in found.groupdict().items()}
                candidates.append((compiled.route, params))
        for route, params in candidates:
            if route.http_method == method:
                return route, params
        for route, params in candidates:
            if route.http_method == "ANY":
                return route, params
        return None

    def handle(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        request_id = str(uuid.uuid4())
        base_headers = [("x-amzn-RequestId", request_id)]
        split = urlsplit(raw_path)
        stage_prefix = f"/{self.api.stage}"
        if split.path != stage_prefix and not split.path.startswith(stage_prefix + "/"):
            return _json_response(403, {"message": "Forbidden"}, base_headers)
        path = split.path[len(stage_prefix) :] or "/"
        found = self.match(method, path)
        if found is None:
            return _json_response(
                404,
                {"message": "Missing Authentication Token"},
                [*base_headers, ("x-amzn-ErrorType", "MissingAuthenticationTokenException")],
            )
        route, path_params = found
        identity = None
        if route.authorization == "AWS_IAM":
            authorized = self._authorize(method, raw_path, path, headers, body)
            if isinstance(authorized, Denied):
                return _json_response(
                    authorized.status,
                    authorized.body,
                    [*base_headers, ("x-amzn-ErrorType", authorized.error_type)],
                )
            identity = authorized
        elif route.authorization not in ("NONE", ""):
            LOG.warning(
                "route %s %s: authorization %s is not emulated locally",
                method,
                route.path,
                route.authorization,
            )
        if route.function_name is None:  # MOCK integration (e.g. CORS preflight)
            return 200, base_headers, b""
        event = self._event(
            route,
            method,
            full_path=split.path,
            path=path,
            query=split.query,
            headers=headers,
            body=body,
            path_params=path_params,
            request_id=request_id,
        )
        event["requestContext"]["identity"]["sourceIp"] = source_ip
        if identity is not None:
            event["requestContext"]["identity"].update(
                {
                    "accessKey": identity.access_key_id,
                    "accountId": identity.account_id,
                    "caller": f"{identity.role.name}:{identity.session}",
                    "user": f"{identity.role.name}:{identity.session}",
                    "userArn": identity.user_arn,
                }
            )
        try:
            result = self.runtime.invoke(route.function_name, event, request_id=request_id)
        except Exception as exc:
            LOG.warning("API handler %s failed: %s: %s", route.function_name, type(exc).__name__, exc)
            return _json_response(502, {"message": "Internal server error"}, base_headers)
        return _proxy_response(result, base_headers)

    def _authorize(
        self, method: str, raw_path: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> Identity | Denied:
        if self.authorizer is None:
            LOG.warning("an IAM-authorized route without a local authorizer: refused")
            return Denied(
                403, "AccessDeniedException", {"message": "IAM authorization is not configured locally"}
            )
        host = next((v for k, v in headers if k.lower() == "host"), "127.0.0.1")
        resource_arn = self.authorizer.method_arn(self.api_id, self.api.stage, method, path)
        return self.authorizer.authorize(
            method=method,
            url=f"http://{host}{raw_path}",
            headers=headers,
            body=body,
            resource_arn=resource_arn,
        )

    def _event(
        self,
        route: RouteSpec,
        method: str,
        *,
        full_path: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        path_params: dict[str, str],
        request_id: str,
    ) -> dict[str, Any]:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            single[name] = value
            multi.setdefault(name, []).append(value)
        query_single: dict[str, str] = {}
        query_multi: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            query_single[name] = value
            query_multi.setdefault(name, []).append(value)
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        is_binary = bool(body) and self._is_binary(content_type, body)
        now = datetime.now(UTC)
        return {
            "resource": route.path,
            "path": path,
            "httpMethod": method,
            "headers": single or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": query_single or None,
            "multiValueQueryStringParameters": query_multi or None,
            "pathParameters": path_params or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": config.ACCOUNT_ID,
                "apiId": self.api_id,
                "domainName": single.get("Host", "127.0.0.1"),
                "domainPrefix": "127",
                "extendedRequestId": request_id,
                "httpMethod": method,
                "identity": {
                    "sourceIp": "127.0.0.1",
                    "userAgent": next((v for k, v in headers if k.lower() == "user-agent"), None),
                    "accountId": None,
                    "caller": None,
                    "user": None,
                    "userArn": None,
                },
                "path": full_path,
                "protocol": "HTTP/1.1",
                "requestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "resourceId": route.path,
                "resourcePath": route.path,
                "stage": self.api.stage,
            },
            "body": (base64.b64encode(body).decode() if is_binary else body.decode("utf-8"))
            if body
            else None,
            "isBase64Encoded": is_binary,
        }

    def _is_binary(self, content_type: str, body: bytes) -> bool:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if any(fnmatch.fnmatch(media_type, pattern.lower()) for pattern in self.api.binary_media_types):
            return True
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "r2r-local-apigateway"

            def _serve(self) -> None:
                with server._lock:
                    server._in_flight += 1
                started = time.monotonic()
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > server.max_payload:
                        self.close_connection = True
                        self._send(*_json_response(413, {"message": "Request Too Long"}, []))
                        return
                    body = self.rfile.read(length) if length else b""
                    status, headers, payload = server.handle(
                        self.command, self.path, list(self.headers.items()), body, self.client_address[0]
                    )
                    self._send(status, headers, payload)
                finally:
                    with server._lock:
                        server._in_flight -= 1
                    LOG.debug(
                        "%s %s in %.0f ms", self.command, self.path, (time.monotonic() - started) * 1000
                    )

            def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                LOG.debug("api: " + format, *args)

        return Handler


def _json_response(
    status: int, body: dict[str, Any], headers: list[tuple[str, str]]
) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [*headers, ("Content-Type", "application/json")], json.dumps(body).encode()


def _proxy_response(
    result: Any, base_headers: list[tuple[str, str]]
) -> tuple[int, list[tuple[str, str]], bytes]:
    """API Gateway's reading of a Lambda proxy response; anything malformed is a 502."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        LOG.warning("malformed Lambda proxy response: %r", result)
        return _json_response(502, {"message": "Internal server error"}, base_headers)
    headers = list(base_headers)
    for name, value in (result.get("headers") or {}).items():
        headers.append((name, str(value)))
    single_names = {name.lower() for name in (result.get("headers") or {})}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if name.lower() in single_names:
            continue
        headers.extend((name, str(v)) for v in values)
    body = result.get("body")
    if body is None:
        payload = b""
    elif result.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = str(body).encode("utf-8")
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return int(result["statusCode"]), headers, payload
