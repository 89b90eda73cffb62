"""The Kantata client a function uses, from its settings and the ``KantataCredentials`` secret.

The secret (``{"api_token": "…"}``) is read through Powertools Parameters (cached five minutes, like the
ERP and Salesforce secrets, so a rotated token is picked up without a redeploy); the client is reused
across warm invocations.
"""

from __future__ import annotations

import threading

from r2r_core.erp_access import _secret_text
from r2r_core.psa.kantata import KantataClient, KantataCredentials

_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str, str], KantataClient] = {}


def kantata_client(base_url: str | None, secret_arn: str | None) -> KantataClient:
    if not base_url or not secret_arn:
        raise RuntimeError("KANTATA_BASE_URL and KANTATA_SECRET_ARN must both be set to poll Kantata")
    text = _secret_text(secret_arn)
    with _LOCK:
        client = _CLIENTS.get((base_url, text))
        if client is None:
            client = KantataClient(base_url, KantataCredentials.from_secret_json(text))
            _CLIENTS[(base_url, text)] = client
    return client
