"""Process-level plumbing shared by every handler: environment and lazy AWS clients.

Handlers read their configuration through :func:`environ` rather than ``os.environ``
so that the embedded local stack can run several functions in one process, each
with the environment the synthesized template gives it (a context variable per
invocation). In AWS the context variable is never set and ``os.environ`` is used.

AWS clients are created on first use, never at import, and cached per
(service, region, endpoint) so that warm invocations reuse connections.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import boto3
from botocore.config import Config

_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("r2r_environ", default=None)
_CLIENTS: dict[tuple[str, str | None, str | None], Any] = {}
_LOCK = threading.Lock()

# Standard retry mode with adaptive backoff: botocore retries throttles and 5xx for us.
_BOTO_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30)


def environ() -> Mapping[str, str]:
    """The environment of the function being invoked."""
    override = _ENVIRON.get()
    return override if override is not None else os.environ


@contextmanager
def use_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Run a block with ``values`` as the function environment (local stack and tests)."""
    token = _ENVIRON.set(dict(values))
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def aws_client(service: str) -> Any:
    """A cached boto3 client for ``service`` honouring ``AWS_ENDPOINT_URL`` and the region."""
    env = environ()
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    endpoint = env.get("AWS_ENDPOINT_URL")
    key = (service, region, endpoint)
    client = _CLIENTS.get(key)
    if client is None:
        with _LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                client = boto3.session.Session().client(
                    service, region_name=region, endpoint_url=endpoint, config=_BOTO_CONFIG
                )
                _CLIENTS[key] = client
    return client


def reset_clients() -> None:
    """Forget cached clients (tests that switch endpoints)."""
    with _LOCK:
        _CLIENTS.clear()
