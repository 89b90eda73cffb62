"""Sign and post webhook deliveries the way a SaaS sender does (Standard Webhooks v1)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from infra.local import config
from r2r_core.webhooks import sign

WEBHOOK_PATH = "/v1/webhooks/{source}"


def signed_headers(source: str, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with the local secret of ``source``."""
    if source not in config.WEBHOOK_SECRETS:
        known = ", ".join(sorted(config.WEBHOOK_SECRETS))
        raise ValueError(
            f"no local signing secret for source {source!r} (known: {known}); send it with sign=False"
        )
    stamp = int(time.time()) if timestamp is None else timestamp
    return sign(config.WEBHOOK_SECRETS[source], webhook_id, body, at=datetime.fromtimestamp(stamp, UTC))


@dataclass
class Delivery:
    """The answer to one webhook delivery."""

    source: str
    webhook_id: str
    path: str
    status: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None


def post(
    api_url: str,
    source: str,
    body: Any = None,
    *,
    webhook_id: str,
    raw_body: bytes | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
    sign: bool = True,
    path: str | None = None,
    timestamp: int | None = None,
    timeout: float = 60.0,
) -> Delivery:
    """POST one delivery to ``api_url`` (the stage URL, ending with ``/``)."""
    payload = raw_body if raw_body is not None else json.dumps(body).encode()
    route = (path or WEBHOOK_PATH.format(source=source)).lstrip("/")
    all_headers = {"Content-Type": content_type or "application/json"}
    if sign:
        all_headers.update(signed_headers(source, webhook_id, payload, timestamp))
    all_headers.update(headers or {})
    response = requests.post(api_url + route, data=payload, headers=all_headers, timeout=timeout)
    return Delivery(
        source=source,
        webhook_id=webhook_id,
        path="/" + route,
        status=response.status_code,
        text=response.text,
        headers=dict(response.headers),
    )
