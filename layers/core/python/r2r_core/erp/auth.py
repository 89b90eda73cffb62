"""NetSuite Token-Based Authentication (OAuth 1.0a, HMAC-SHA256, realm = account id), and the
choice between TBA and OAuth 2.0 (:mod:`r2r_core.erp.oauth2`) by the secret's ``auth`` key."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from .oauth2 import OAuth2Credentials

__all__ = ["TbaCredentials", "credentials_from_secret_json", "netsuite_base_url", "tba_authorization"]

AUTH_METHODS = ("tba", "oauth2")
M = TypeVar("M", bound=BaseModel)


class TbaCredentials(BaseModel):
    """The TBA material of one integration record + access token. Secrets never show in repr."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True, defer_build=True)

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
        return _validated(cls, _secret_document(text), "tba")

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
    from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256  # loaded on the first signed request
    from oauthlib.oauth1 import Client as OAuth1Client

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


def credentials_from_secret_json(text: str | bytes) -> TbaCredentials | OAuth2Credentials:
    """The ``ErpCredentials`` secret as TBA or OAuth 2.0 credentials, chosen by its ``auth`` key.

    ``{"account_id", "auth": "tba", "consumer_key", "consumer_secret", "token_id", "token_secret"}``
    (``auth`` may be left out for TBA) or ``{"account_id", "auth": "oauth2", "client_id",
    "certificate_id", "private_key": "-----BEGIN PRIVATE KEY-----...", "algorithm": "PS256"}``; the
    material may also sit under a ``"tba"`` / ``"oauth2"`` key. Errors never show values.
    """
    document = _secret_document(text)
    method = str(document.get("auth") or "tba").strip().lower()
    if method == "tba":
        return _validated(TbaCredentials, document, "tba")
    if method == "oauth2":
        return _validated(OAuth2Credentials, document, "oauth2")
    raise ValueError(f"ERP credentials secret: auth must be one of {', '.join(AUTH_METHODS)}")


def _secret_document(text: str | bytes) -> dict[str, Any]:
    try:
        document: Any = json.loads(text)
    except ValueError as exc:
        raise ValueError("ERP credentials secret is not valid JSON") from exc
    if not isinstance(document, dict):
        raise ValueError("ERP credentials secret must be a JSON object")
    return document


def _validated(model: type[M], document: dict[str, Any], nested_key: str) -> M:
    values = dict(document)
    nested = values.pop(nested_key, None)
    if isinstance(nested, dict):
        values.update(nested)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
        raise ValueError("ERP credentials secret is missing or has invalid: " + ", ".join(fields)) from None
