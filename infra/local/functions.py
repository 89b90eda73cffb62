"""Run the template's Lambda functions in this process.

Each function's ``handler.py`` is imported from its source folder (Metadata ``r2r:source``)
under a module name of its own, and called with a fake Lambda context inside
``r2r_core.runtime.use_environ(env)``: several functions run concurrently in one process,
each seeing the environment the template gives it, resolved to the local resources.

Step Functions reaches the same runtime through moto's Lambda ``invoke``, forwarded from moto's
process to :class:`DispatchServer`, so a workflow task runs the same code as an SQS consumer.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

from infra.local import config
from infra.local.provision import FunctionSpec, function_name_of
from r2r_core.runtime import use_environ

LOG = logging.getLogger("r2r.local.functions")

Handler = Callable[[Any, Any], Any]


class FunctionNotFound(LookupError):
    pass


class HandlerLoadError(Exception):
    """The handler module could not be imported (Lambda's ``Runtime.ImportModuleError``)."""


class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    def __init__(self, spec: FunctionSpec, request_id: str | None = None) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = f"local/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + spec.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _json_default(value: Any) -> Any:
    # The Python Lambda runtime serialises Decimal results as numbers.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default)


class FunctionRuntime:
    """Imports and invokes the template's functions; counts what is running (for drain)."""

    def __init__(self, functions: Mapping[str, FunctionSpec], common_env: Mapping[str, str]) -> None:
        self._by_name = {spec.name: spec for spec in functions.values()}
        self._common_env = dict(common_env)
        self._handlers: dict[str, Handler] = {}
        self._load_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._running: Counter[str] = Counter()
        self.invocations: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._background: list[threading.Thread] = []

    # -- lookup ---------------------------------------------------------------------------------

    def spec(self, name_or_arn: str) -> FunctionSpec:
        name = function_name_of(name_or_arn)
        spec = self._by_name.get(name)
        if spec is None:
            raise FunctionNotFound(f"function {name_or_arn!r} is not part of the local stack")
        return spec

    def knows(self, name_or_arn: str) -> bool:
        return function_name_of(name_or_arn) in self._by_name

    def environment(self, spec: FunctionSpec) -> dict[str, str]:
        env = {
            **spec.environment,
            **self._common_env,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": str(spec.source_dir),
        }
        return env

    def running(self) -> dict[str, int]:
        with self._count_lock:
            return {name: n for name, n in self._running.items() if n}

    # -- loading --------------------------------------------------------------------------------

    def handler(self, spec: FunctionSpec) -> Handler:
        cached = self._handlers.get(spec.name)
        if cached is not None:
            return cached
        with self._load_lock:
            cached = self._handlers.get(spec.name)
            if cached is None:
                cached = _load_handler(spec)
                self._handlers[spec.name] = cached
        return cached

    def preload(self) -> dict[str, str]:
        """Import every handler now; returns function name -> error for those that failed."""
        failures: dict[str, str] = {}
        for spec in self._by_name.values():
            try:
                self.handler(spec)
            except HandlerLoadError as exc:
                failures[spec.name] = str(exc)
        return failures

    # -- invoking -------------------------------------------------------------------------------

    def invoke(self, name_or_arn: str, event: Any, request_id: str | None = None) -> Any:
        """Call the function with ``event``; its exceptions propagate. Returns its JSON result."""
        spec = self.spec(name_or_arn)
        context = LambdaContext(spec, request_id)
        # Like Lambda, the handler gets its own copy of the event, decoded from JSON.
        payload = json.loads(to_json(event))
        with self._count_lock:
            self._running[spec.name] += 1
            self.invocations[spec.name] += 1
        started = time.monotonic()
        try:
            handler = self.handler(spec)
            with use_environ(self.environment(spec)):
                result = handler(payload, context)
            return json.loads(to_json(result))
        except Exception:
            with self._count_lock:
                self.errors[spec.name] += 1
            raise
        finally:
            elapsed = time.monotonic() - started
            with self._count_lock:
                self._running[spec.name] -= 1
            if elapsed > spec.timeout_s:
                LOG.warning(
                    "function %s ran %.1f s, longer than its timeout of %s s (not enforced locally)",
                    spec.name,
                    elapsed,
                    spec.timeout_s,
                )
            LOG.debug("invoked %s in %.0f ms", spec.name, elapsed * 1000)

    def invoke_async(self, name_or_arn: str, event: Any) -> None:
        """``InvocationType=Event``: run in the background; failures are only logged."""
        spec = self.spec(name_or_arn)
        with self._count_lock:
            self._running[spec.name] += 1  # counted until the thread has started the invocation

        def run() -> None:
            try:
                self.invoke(spec.name, event)
            except Exception:
                LOG.exception("asynchronous invocation of %s failed", spec.name)
            finally:
                with self._count_lock:
                    self._running[spec.name] -= 1

        thread = threading.Thread(target=run, name=f"r2r-async-{spec.name}", daemon=True)
        self._background.append(thread)
        thread.start()

    def join_background(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._background:
            thread.join(max(0.0, deadline - time.monotonic()))


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The body Lambda returns for an unhandled error: Step Functions reads ``errorType``."""
    error_type = "Runtime.ImportModuleError" if isinstance(exc, HandlerLoadError) else type(exc).__name__
    return {
        "errorType": error_type,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__)[-5:],
    }


def _module_name(spec: FunctionSpec, module: str) -> str:
    folder = re.sub(r"\W", "_", spec.source_dir.name)
    suffix = "" if module == "handler" else "_" + re.sub(r"\W", "_", module)
    return f"r2r_fn_{folder}{suffix}"


def _load_handler(spec: FunctionSpec) -> Handler:
    module_path, _, attribute = spec.handler.rpartition(".")
    if not module_path or not attribute:
        raise HandlerLoadError(f"{spec.name}: handler {spec.handler!r} is not '<module>.<function>'")
    file = spec.source_dir / (module_path.replace(".", "/") + ".py")
    if not file.is_file():
        raise HandlerLoadError(f"{spec.name}: {file} does not exist")
    name = _module_name(spec, module_path)
    module = _import_file(name, file)
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise HandlerLoadError(f"{spec.name}: {file} has no callable {attribute!r}")
    return handler


def _import_file(name: str, file: Path) -> ModuleType:
    module_spec = importlib.util.spec_from_file_location(name, file)
    if module_spec is None or module_spec.loader is None:
        raise HandlerLoadError(f"cannot import {file}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise HandlerLoadError(f"importing {file} failed: {type(exc).__name__}: {exc}") from exc
    return module


# --- the Lambda seam: moto (child process) -> here ----------------------------------------------


class DispatchServer:
    """Answers the invocations moto's Lambda receives (Step Functions tasks, SDK ``Invoke``).

    moto runs in a child process (:mod:`infra.local.moto_process`) whose ``invoke`` POSTs
    ``/invoke/<function name or ARN>`` here with the payload; the answer is
    ``{"payload": "<JSON text>", "error": false}``, or ``"error": true`` with Lambda's error body
    (``errorType`` is what Step Functions matches in ``Retry``/``Catch``). 404: not ours.
    """

    def __init__(self, host: str = config.HOST) -> None:
        self.runtime: FunctionRuntime | None = None
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="r2r-dispatch", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def dispatch(self, name_or_arn: str, raw: bytes, invocation_type: str) -> tuple[int, dict[str, Any]]:
        runtime = self.runtime
        if runtime is None or not runtime.knows(name_or_arn):
            return 404, {"message": f"function {name_or_arn} is not run locally"}
        try:
            event = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            error = {"errorType": "Runtime.InvalidPayload", "errorMessage": "payload is not JSON"}
            return 200, {"error": True, "payload": to_json(error)}
        if invocation_type == "Event":
            runtime.invoke_async(name_or_arn, event)
            return 200, {"error": False, "payload": ""}
        if invocation_type == "DryRun":
            return 200, {"error": False, "payload": ""}
        try:
            result = runtime.invoke(name_or_arn, event)
        except Exception as exc:
            LOG.info("function %s failed: %s: %s", function_name_of(name_or_arn), type(exc).__name__, exc)
            return 200, {"error": True, "payload": to_json(error_payload(exc))}
        return 200, {"error": False, "payload": to_json(result)}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                name = unquote(self.path.removeprefix("/invoke/"))
                invocation_type = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
                status, answer = server.dispatch(name, raw, invocation_type)
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                LOG.debug("dispatch: " + format, *args)

        return Handler


def local_common_env(moto_url: str, erp_url: str | None) -> dict[str, str]:
    """Environment every local invocation gets on top of the template's."""
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_REGION": config.REGION,
        "AWS_DEFAULT_REGION": config.REGION,
        "AWS_ACCESS_KEY_ID": config.ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": config.SECRET_ACCESS_KEY,
        "R2R_LOCAL": "1",
    }
    if erp_url:
        env["ERP_BASE_URL"] = erp_url
    return env
