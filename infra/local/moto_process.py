"""moto's server in a child process, its Lambda ``invoke`` forwarded to the parent's functions.

moto keeps its state in module globals: in the parent it would be shared with (and reset by)
anything else using moto there, e.g. ``mock_aws`` tests running in the same pytest worker. A
child process owns its state outright. Step Functions' Lambda tasks reach moto's
``LambdaSimpleBackend.invoke`` here; it is patched to POST the invocation to the parent's
dispatch endpoint (:class:`infra.local.functions.DispatchServer`), where the handler runs. moto's SQS
is made linear-time first (:mod:`infra.local.moto_speedups`).

Run by :class:`infra.local.stack.LocalStack`::

    python -m infra.local.moto_process --port 0 --dispatch-url http://127.0.0.1:<p>/

It prints one JSON line ``{"port": <port>}`` once it listens, and exits when its stdin closes
(the parent stopped or died). SIGINT is ignored: the parent decides when it stops.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from infra.local import config

# Lambda's longest run; the ASL interpreter waits as long for a task.
_INVOKE_TIMEOUT_S = 900

_SERVICES = (
    "moto.stepfunctions.parser.models",
    "moto.awslambda.models",
    "moto.awslambda_simple.models",
    "moto.dynamodb.models",
    "moto.s3.models",
    "moto.secretsmanager.models",
    "moto.iam.models",
    "moto.events.models",
    "moto.sqs.models",
)


def _forwarding_invoke(dispatch_url: str) -> Any:
    from moto.awslambda_simple.models import LambdaSimpleBackend

    original = LambdaSimpleBackend.invoke

    def invoke(  # noqa: PLR0917 - moto's LambdaSimpleBackend.invoke signature
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> bytes | str | None:
        payload = body.encode() if isinstance(body, str) else (body or b"")
        invocation_type = (headers or {}).get("X-Amz-Invocation-Type", "RequestResponse")
        request = urllib.request.Request(  # noqa: S310 - the parent's loopback URL
            dispatch_url + "invoke/" + quote(function_name, safe=""),
            data=payload,
            method="POST",
            headers={"Content-Type": "application/json", "X-Amz-Invocation-Type": invocation_type},
        )
        try:
            with urllib.request.urlopen(request, timeout=_INVOKE_TIMEOUT_S) as response:  # noqa: S310
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # not one of the template's functions: moto's own behaviour
                return original(self, function_name, qualifier, body, headers, response_headers)
            raise
        if answer.get("error"):
            response_headers["x-amz-function-error"] = "Unhandled"
        return str(answer.get("payload", "null")).encode()

    return invoke


def serve(port: int, dispatch_url: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": config.ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": config.SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": config.REGION,
            "AWS_REGION": config.REGION,
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.server import ThreadedMotoServer

    from infra.local import moto_speedups

    moto_speedups.apply()
    LambdaSimpleBackend.invoke = _forwarding_invoke(dispatch_url)  # type: ignore[method-assign]
    server = ThreadedMotoServer(ip_address=config.HOST, port=port, verbose=False)
    server.start()
    _host, bound = server.get_host_and_port()
    # The ASL interpreter calls Lambda at http://localhost:$MOTO_PORT.
    os.environ["MOTO_PORT"] = str(bound)
    for module in _SERVICES:  # first use of a service imports it: take that hit before "ready"
        importlib.import_module(module)
    print(json.dumps({"port": bound}), flush=True)
    try:
        sys.stdin.read()  # until the parent closes the pipe (or dies)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dispatch-url", required=True)
    args = parser.parse_args(argv)
    serve(args.port, args.dispatch_url)


if __name__ == "__main__":
    main()
