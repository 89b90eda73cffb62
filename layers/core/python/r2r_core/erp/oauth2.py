"""NetSuite OAuth 2.0 client credentials (machine-to-machine) with a JWT assertion.

The integration record's client id and a certificate uploaded to NetSuite (Setup > Integration >
OAuth 2.0 Client Credentials (M2M) Setup) identify r2r; the certificate's private key signs a
short-lived JWT (``PS256`` or ``ES256``; NetSuite refuses RS256), sent to the token endpoint::

    POST /services/rest/auth/oauth2/v1/token
    grant_type=client_credentials
    client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
    client_assertion=<JWT: header kid=<certificate id>; claims iss=<client id>,
                      scope=rest_webservices, aud=<token URL>, iat, exp (<= 60 min), jti>

The answer's ``access_token`` is sent as ``Authorization: Bearer ...`` until shortly before its
``expires_in``; :class:`OAuth2TokenSource` caches it per process and fetches a new one when it is
about to expire or when NetSuite refuses it (``invalidate``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlencode

import urllib3
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from urllib3.exceptions import HTTPError

from .errors import ErpAuthError, ErpError, ErpTransientError, error_from_response

__all__ = [
    "ASSERTION_LIFETIME_S",
    "CLIENT_ASSERTION_TYPE",
    "TOKEN_PATH",
    "OAuth2Credentials",
    "OAuth2TokenSource",
    "jwt_assertion",
]

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"  # noqa: S105 - a URL path, not a secret
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# NetSuite accepts an assertion valid for at most 60 minutes; a short one limits a leaked JWT.
ASSERTION_LIFETIME_S = 300
# Fetch a new access token this long before the current one expires (clock skew, slow requests).
REFRESH_MARGIN_S = 120
ALGORITHMS = ("PS256", "ES256")


class OAuth2Credentials(BaseModel):
    """OAuth 2.0 M2M material: client id, certificate id and its private key (PEM). No secret in repr."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True, defer_build=True)

    account_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1, repr=False)
    certificate_id: str = Field(min_length=1)
    private_key: SecretStr
    algorithm: Literal["PS256", "ES256"] | None = None
    scope: str = "rest_webservices"

    @field_validator("private_key")
    @classmethod
    def _pem(cls, value: SecretStr) -> SecretStr:
        if "PRIVATE KEY-----" not in value.get_secret_value():
            raise ValueError("private_key must be a PEM private key")
        return value

    def signing_algorithm(self) -> str:
        """The configured algorithm, else PS256 for an RSA key and ES256 for an EC P-256 key."""
        from cryptography.hazmat.primitives.asymmetric import ec, rsa  # only OAuth 2.0 accounts sign

        key = self._key()
        if isinstance(key, rsa.RSAPrivateKey):
            wanted = self.algorithm or "PS256"
            if wanted != "PS256":
                raise ValueError(f"an RSA key signs PS256, not {wanted}")
            return wanted
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            wanted = self.algorithm or "ES256"
            if wanted != "ES256":
                raise ValueError(f"an EC P-256 key signs ES256, not {wanted}")
            return wanted
        raise ValueError("private_key must be an RSA or EC P-256 key")

    def _key(self) -> Any:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        return load_pem_private_key(self.private_key.get_secret_value().encode(), password=None)


def jwt_assertion(
    credentials: OAuth2Credentials,
    token_url: str,
    *,
    now: float | None = None,
    lifetime_s: int = ASSERTION_LIFETIME_S,
) -> str:
    """The signed client assertion for one token request (a fresh ``jti`` each time)."""
    if not 0 < lifetime_s <= 3600:
        raise ValueError("NetSuite accepts an assertion valid for at most 60 minutes")
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": credentials.client_id,
        "scope": credentials.scope,
        "aud": token_url,
        "iat": issued,
        "exp": issued + lifetime_s,
        "jti": str(uuid.uuid4()),
    }
    import jwt  # PyJWT and cryptography load on the first token request, not at import

    return jwt.encode(
        claims,
        credentials.private_key.get_secret_value(),
        algorithm=credentials.signing_algorithm(),
        headers={"kid": credentials.certificate_id, "typ": "JWT"},
    )


class OAuth2TokenSource:
    """Access tokens for one account, cached until ``REFRESH_MARGIN_S`` before they expire.

    Thread-safe: concurrent callers share one token request.
    """

    def __init__(
        self,
        base_url: str,
        credentials: OAuth2Credentials,
        *,
        http: urllib3.PoolManager | None = None,
        clock: Callable[[], float] = time.time,
        timeout: urllib3.Timeout | None = None,
        refresh_margin_s: float = REFRESH_MARGIN_S,
    ) -> None:
        self.token_url = base_url.rstrip("/") + TOKEN_PATH
        self.credentials = credentials
        self._http = http if http is not None else urllib3.PoolManager(maxsize=2, retries=False)
        self._clock = clock
        self._timeout = timeout or urllib3.Timeout(connect=5.0, read=30.0)
        self._margin = refresh_margin_s
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0

    def __repr__(self) -> str:
        return f"OAuth2TokenSource({self.token_url!r}, certificate_id={self.credentials.certificate_id!r})"

    def authorization(self, method: str, url: str) -> str:
        return f"Bearer {self.token()}"

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - self._margin:
                self._token, lifetime = self._fetch()
                self._expires_at = self._clock() + lifetime
            return self._token

    def invalidate(self) -> bool:
        """Forget the cached token (NetSuite refused it); True when there was one to forget."""
        with self._lock:
            had = self._token is not None
            self._token = None
            return had

    def _fetch(self) -> tuple[str, float]:
        body = urlencode(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": jwt_assertion(self.credentials, self.token_url, now=self._clock()),
            }
        )
        try:
            response = self._http.request(
                "POST",
                self.token_url,
                body=body.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                retries=False,
                redirect=False,
                timeout=self._timeout,
            )
        except HTTPError as exc:
            raise ErpTransientError("could not get a NetSuite access token", ambiguous=False) from exc
        if response.status >= 400:
            error = error_from_response(response.status, response.data, response.headers)
            if response.status == 400 and not isinstance(error, ErpTransientError):
                # invalid_client / invalid_grant: the integration record or certificate is wrong.
                raise ErpAuthError(str(error), status=400, code=error.code, detail=error.detail)
            raise error
        self.fetches += 1
        try:
            document = json.loads(response.data)
            token = str(document["access_token"])
            lifetime = float(document.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise ErpError("NetSuite's token endpoint answered without an access_token") from exc
        if str(document.get("token_type", "Bearer")).lower() != "bearer":
            raise ErpError("NetSuite's token endpoint answered a token that is not a bearer token")
        return token, lifetime
