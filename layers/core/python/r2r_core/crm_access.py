"""The Salesforce client a function uses, from its settings and the ``SalesforceCredentials`` secret.

Read through Powertools Parameters (cached like the ERP secret) and reused across warm invocations.
"""

from __future__ import annotations

import threading

from r2r_core.crm.salesforce import SalesforceClient, SalesforceCredentials
from r2r_core.erp_access import _secret_text

_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str, str], SalesforceClient] = {}


def salesforce_client(base_url: str | None, secret_arn: str | None) -> SalesforceClient:
    if not base_url or not secret_arn:
        raise RuntimeError(
            "SALESFORCE_BASE_URL and SALESFORCE_SECRET_ARN must both be set to write to the CRM"
        )
    text = _secret_text(secret_arn)
    with _LOCK:
        client = _CLIENTS.get((base_url, text))
        if client is None:
            client = SalesforceClient(base_url, SalesforceCredentials.from_secret_json(text))
            _CLIENTS[(base_url, text)] = client
    return client
