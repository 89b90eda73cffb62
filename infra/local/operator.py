"""Call the operator API the way an operator does: a request signed with SigV4 (service ``execute-api``).

Locally the credentials of an operator role are ``config.OPERATOR_CREDENTIALS[<role>]``; in AWS they are the
temporary credentials of the assumed role (see the README, *Security*). The signing is botocore's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from infra.local import config

SERVICE = "execute-api"


@dataclass
class OperatorAnswer:
    status: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None


def signed_headers(
    method: str, url: str, body: bytes, credentials: Credentials, region: str = config.REGION
) -> dict[str, str]:
    """``Authorization`` and ``X-Amz-Date`` (and the body's content type) for one request."""
    headers = {"Content-Type": "application/json"} if body else {}
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(credentials, SERVICE, region).add_auth(request)
    return dict(request.headers.items())


def local_credentials(role: str) -> Credentials:
    try:
        found = config.OPERATOR_CREDENTIALS[role]
    except KeyError as exc:
        known = ", ".join(sorted(config.OPERATOR_CREDENTIALS))
        raise ValueError(f"no local credentials for operator role {role!r} (known: {known})") from exc
    return Credentials(found["access_key_id"], found["secret_access_key"])


def call(
    api_url: str,
    method: str,
    path: str,
    *,
    role: str | None,
    body: Any = None,
    timeout: float = 60.0,
) -> OperatorAnswer:
    """``method`` ``<api_url><path>`` (``api_url`` is the stage URL ending with ``/``), signed as ``role``'s
    local credentials, or unsigned when ``role`` is None."""
    url = api_url + path.lstrip("/")
    payload = json.dumps(body).encode() if body is not None else b""
    headers = signed_headers(method, url, payload, local_credentials(role)) if role else {}
    response = requests.request(method, url, data=payload or None, headers=headers, timeout=timeout)
    return OperatorAnswer(status=response.status_code, text=response.text, headers=dict(response.headers))
