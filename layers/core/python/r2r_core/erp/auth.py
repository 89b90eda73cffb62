"""NetSuite Token-Based Authentication (OAuth 1.0a, HMAC-SHA256, realm = account id)."""

from __future__ import annotations

import json
from typing import Any

from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from oauthlib.oauth1 import Client as OAuth1Client
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

__all__ = ["TbaCredentials", "netsuite_base_url", "tba_authorization"]


class TbaCredentials(BaseModel):
    """The TBA material of one integration record + access token. Secrets never show in repr."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    account_id: str = Field(min_length=1)
    consumer_key: str = Field(min_length=1, repr=False)
    consumer_secret: SecretStr
    token_id: str = Field(min_length=1, repr=False)
    token_secret: SecretStr

    @classmethod
    def from_secret_json(cls, text: str | bytes) -> TbaCredentials:
        """Read the ``ErpCredentials`` secret: flat keys, or TBA material under ``"tba"``.

        Errors name the missing or invalid keys, never the values.
        """
        try:
            document: Any = json.loads(text)
        except ValueError as exc:
            raise ValueError("ERP credentials secret is not valid JSON") from exc
        if not isinstance(document, dict):
            raise ValueError("ERP credentials secret must be a JSON object")
        values = dict(document)
        nested = values.pop("tba", None)
        if isinstance(nested, dict):
            values.update(nested)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
            raise ValueError(
                "ERP credentials secret is missing or has invalid: " + ", ".join(fields)
            ) from None

    @property
    def realm(self) -> str:
        """The OAuth realm NetSuite expects: the account id, upper case (``1234567_SB1``)."""
        return self.account_id.upper()


def netsuite_base_url(account_id: str) -> str:
    """``https://<account>.suitetalk.api.netsuite.com`` (sandbox ``123_SB1`` -> ``123-sb1``)."""
    host = account_id.strip().lower().replace("_", "-")
    return f"https://{host}.suitetalk.api.netsuite.com"


def tba_authorization(
    credentials: TbaCredentials,
    method: str,
    url: str,
    *,
    nonce: str | None = None,
    timestamp: str | None = None,
) -> str:
    """The ``Authorization: OAuth realm=...`` header value for one request.

    Only the method, the URL (with its query) and the oauth parameters are signed: a JSON body
    is not part of the base string, and NetSuite expects no ``oauth_body_hash``, so the body is
    left out of the signing call on purpose. Each call makes a fresh nonce and timestamp.
    """
    client = OAuth1Client(
        credentials.consumer_key,
        client_secret=credentials.consumer_secret.get_secret_value(),
        resource_owner_key=credentials.token_id,
        resource_owner_secret=credentials.token_secret.get_secret_value(),
        signature_method=SIGNATURE_HMAC_SHA256,
        realm=credentials.realm,
        nonce=nonce,
        timestamp=timestamp,
    )
    _, headers, _ = client.sign(url, http_method=method.upper())
    return str(headers["Authorization"])
