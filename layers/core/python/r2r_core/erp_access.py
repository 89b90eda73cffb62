"""The ERP client a function uses, built from its settings and the ``ErpCredentials`` secret.

The secret is read through Powertools Parameters (cached for five minutes, so a rotated
secret is picked up without a redeploy) and the client is reused across warm invocations (with it
the OAuth 2.0 access token, cached until shortly before it expires). The secret's ``auth`` key
chooses Token-Based Authentication (``"tba"``, the default) or OAuth 2.0 (``"oauth2"``).
Besides the credentials, the secret carries the account's mapping configuration under
``"mapping"`` (:class:`r2r_core.erp.mapping.ErpMapping`: subsidiary, items, segments, tax codes).
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from r2r_core.runtime import aws_client

if TYPE_CHECKING:  # loaded by the first call: a handler's import stays light
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from r2r_core.erp.client import NetSuiteClient
    from r2r_core.erp.mapping import ErpMapping

SECRET_MAX_AGE_SECONDS = 300
_LOCK = threading.Lock()
_PROVIDERS: dict[int, SecretsProvider] = {}
_CLIENTS: dict[tuple[str, str], NetSuiteClient] = {}


def _secret_text(secret_arn: str) -> str:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    client = aws_client("secretsmanager")
    with _LOCK:
        provider = _PROVIDERS.setdefault(id(client), SecretsProvider(boto3_client=client))
    value = provider.get(secret_arn, max_age=SECRET_MAX_AGE_SECONDS)
    return value if isinstance(value, str) else bytes(value).decode()  # type: ignore[arg-type]


def erp_account_config(secret_arn: str) -> dict[str, Any]:
    document = json.loads(_secret_text(secret_arn))
    return document if isinstance(document, dict) else {}


def erp_mapping(secret_arn: str | None) -> ErpMapping:
    """The account's mapping configuration (subsidiary, items, segments, tax codes) from the secret."""
    from r2r_core.erp.mapping import ErpMapping

    return ErpMapping.from_secret(erp_account_config(secret_arn)) if secret_arn else ErpMapping()


def erp_client(base_url: str | None, secret_arn: str | None) -> NetSuiteClient:
    if not base_url or not secret_arn:
        raise RuntimeError(
            "ERP_BASE_URL and ERP_SECRET_ARN must both be set for a function that writes to the ERP"
        )
    from r2r_core.erp.auth import credentials_from_secret_json
    from r2r_core.erp.client import NetSuiteClient

    text = _secret_text(secret_arn)
    key = (base_url, text)
    with _LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = NetSuiteClient(base_url, credentials_from_secret_json(text))
            _CLIENTS[key] = client
    return client
