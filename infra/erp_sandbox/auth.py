"""Token-Based Authentication check: the signature is recomputed with oauthlib and compared.
OAuth 2.0 client credentials: the JWT assertion is verified with the certificate's public key.

Checks, in order: an ``OAuth`` header, ``realm`` = the account, HMAC-SHA256, version 1.0, the
configured consumer key and token, a timestamp within the allowed skew, the signature (oauthlib's
base string and HMAC over method, URL, query and oauth parameters), then a nonce not seen before.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature, utils

__all__ = ["AuthFailure", "OAuth2Verifier", "SandboxCredentials", "SandboxOAuth2Client", "TbaVerifier"]


@dataclass(frozen=True)
class SandboxCredentials:
    """The integration record and access token the sandbox accepts (local defaults, not secrets)."""

    consumer_key: str = "r2r-local-consumer-key"
    consumer_secret: str = field(default="r2r-local-consumer-secret", repr=False)
    token_id: str = "r2r-local-token-id"  # noqa: S105 - a local default, not a secret
    token_secret: str = field(default="r2r-local-token-secret", repr=False)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SandboxCredentials:
        """From an ``ErpCredentials``-shaped dict (flat, or TBA keys under ``"tba"``); other keys ignored."""
        merged = {**values, **(values.get("tba") or {})}
        defaults = cls()
        return cls(
            **{name: str(merged.get(name) or getattr(defaults, name)) for name in cls.__dataclass_fields__}
        )


class AuthFailure(Exception):
    """Why a request was refused (logged by the sandbox; the client only sees INVALID_LOGIN)."""


class TbaVerifier:
    def __init__(
        self,
        account_id: str,
        credentials: SandboxCredentials,
        *,
        max_skew_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._realm = account_id.upper()
        self._credentials = credentials
        self._max_skew_s = max_skew_s
        self._clock = clock
        self._nonces: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def verify(self, method: str, uri: str, authorization: str | None) -> None:
        """Raise :class:`AuthFailure` unless ``authorization`` signs ``method`` ``uri``."""
        if not authorization or not authorization[:6].lower() == "oauth ":
            raise AuthFailure("missing OAuth Authorization header")
        try:
            pairs = utils.parse_authorization_header(authorization)
        except ValueError as exc:
            raise AuthFailure("malformed Authorization header") from exc
        names = [name for name, _ in pairs]
        if len(names) != len(set(names)):
            raise AuthFailure("repeated Authorization parameter")
        params = {name: utils.unescape(value) for name, value in pairs}
        if params.get("realm", "").upper() != self._realm:
            raise AuthFailure("realm is not this account")
        if params.get("oauth_signature_method") != "HMAC-SHA256":
            raise AuthFailure("signature method must be HMAC-SHA256")
        if params.get("oauth_version", "1.0") != "1.0":
            raise AuthFailure("oauth_version must be 1.0")
        consumer_key = params.get("oauth_consumer_key", "")
        token = params.get("oauth_token", "")
        if not (
            hmac.compare_digest(consumer_key.encode(), self._credentials.consumer_key.encode())
            and hmac.compare_digest(token.encode(), self._credentials.token_id.encode())
        ):
            raise AuthFailure("unknown consumer key or token")
        timestamp_text = params.get("oauth_timestamp", "")
        if not timestamp_text.isdigit():
            raise AuthFailure("missing or malformed oauth_timestamp")
        timestamp = int(timestamp_text)
        now = self._clock()
        if abs(now - timestamp) > self._max_skew_s:
            raise AuthFailure("oauth_timestamp outside the allowed clock skew")
        nonce = params.get("oauth_nonce", "")
        if not nonce:
            raise AuthFailure("missing oauth_nonce")
        if not params.get("oauth_signature"):
            raise AuthFailure("missing oauth_signature")
        if not self._signature_matches(method, uri, authorization, params["oauth_signature"]):
            raise AuthFailure("signature mismatch")
        self._remember_nonce((consumer_key, token, nonce), now)

    def _signature_matches(self, method: str, uri: str, authorization: str, claimed: str) -> bool:
        try:
            request = OAuthRequest(uri, http_method=method.upper(), headers={"Authorization": authorization})
            request.params = signature.collect_parameters(
                uri_query=urlsplit(uri).query, headers={"Authorization": authorization}
            )
            request.signature = claimed
            return bool(
                signature.verify_hmac_sha256(
                    request,
                    client_secret=self._credentials.consumer_secret,
                    resource_owner_secret=self._credentials.token_secret,
                )
            )
        except ValueError:  # undecodable query or parameters
            return False

    def _remember_nonce(self, key: tuple[str, str, str], now: float) -> None:
        with self._lock:
            if key in self._nonces:
                raise AuthFailure("nonce already used")
            self._nonces[key] = now
            if len(self._nonces) > 10_000:
                horizon = now - 2 * self._max_skew_s
                self._nonces = {k: seen for k, seen in self._nonces.items() if seen >= horizon}


# ---- OAuth 2.0 client credentials (M2M) ------------------------------------------------------

# NetSuite accepts these for the client assertion (RS256 is refused).
ASSERTION_ALGORITHMS = ("PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S = 3600


@dataclass(frozen=True)
class SandboxOAuth2Client:
    """The integration record's client id and the certificate (public key) uploaded for M2M."""

    client_id: str
    certificate_id: str
    public_key_pem: str = field(repr=False)

    @classmethod
    def from_private_key(
        cls, client_id: str, certificate_id: str, private_key_pem: str
    ) -> SandboxOAuth2Client:
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(client_id, certificate_id, public.decode())

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SandboxOAuth2Client | None:
        """From an ``ErpCredentials``-shaped dict with ``auth: oauth2`` (the public key is derived)."""
        merged = {**values, **(values.get("oauth2") or {})}
        if str(merged.get("auth") or "").lower() != "oauth2":
            return None
        return cls.from_private_key(
            str(merged["client_id"]), str(merged["certificate_id"]), str(merged["private_key"])
        )

    @classmethod
    def generate(
        cls,
        algorithm: str = "PS256",
        *,
        client_id: str = "r2r-local-client-id",
        certificate_id: str = "r2r-local-certificate",
    ) -> tuple[SandboxOAuth2Client, str]:
        """A fresh key pair: (the client the sandbox accepts, the private key PEM for the secret)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        key: Any = (
            ec.generate_private_key(ec.SECP256R1())
            if algorithm.startswith("ES")
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return cls.from_private_key(client_id, certificate_id, private), private


class OAuth2Verifier:
    """The token endpoint's checks and the bearer tokens it issued (in memory)."""

    def __init__(
        self,
        client: SandboxOAuth2Client | None,
        *,
        token_ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.token_ttl_s = token_ttl_s
        self._clock = clock
        self._tokens: dict[str, float] = {}
        self._seen_jti: dict[str, float] = {}
        self._lock = threading.Lock()
        self.issued = 0

    def issue(self, form: Mapping[str, str], token_url: str) -> dict[str, Any]:
        """Check a client-credentials token request; return the token answer."""
        import jwt

        if self.client is None:
            raise AuthFailure("OAuth 2.0 is not set up for this account")
        if form.get("grant_type") != "client_credentials":
            raise AuthFailure("grant_type must be client_credentials")
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise AuthFailure("client_assertion_type must be jwt-bearer")
        assertion = form.get("client_assertion") or ""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise AuthFailure("malformed client assertion") from exc
        algorithm = header.get("alg")
        if algorithm not in ASSERTION_ALGORITHMS:
            raise AuthFailure(f"assertion algorithm {algorithm!r} is not accepted")
        if header.get("kid") != self.client.certificate_id:
            raise AuthFailure("unknown certificate id (kid)")
        try:
            claims = jwt.decode(
                assertion,
                self.client.public_key_pem,
                algorithms=[algorithm],
                audience=token_url,
                options={"require": ["iss", "scope", "aud", "iat", "exp"]},
                leeway=5,
            )
        except jwt.PyJWTError as exc:
            raise AuthFailure(f"assertion refused: {type(exc).__name__}") from exc
        if claims["iss"] != self.client.client_id:
            raise AuthFailure("assertion issuer is not the client id")
        if int(claims["exp"]) - int(claims["iat"]) > MAX_ASSERTION_LIFETIME_S:
            raise AuthFailure("assertion valid for more than 60 minutes")
        scopes = (
            claims["scope"] if isinstance(claims["scope"], list) else str(claims["scope"]).replace(",", " ")
        )
        if "rest_webservices" not in (scopes if isinstance(scopes, list) else scopes.split()):
            raise AuthFailure("scope rest_webservices missing")
        now = self._clock()
        token = secrets.token_urlsafe(32)
        with self._lock:
            jti = str(claims.get("jti") or "")
            if jti:
                if jti in self._seen_jti:
                    raise AuthFailure("assertion replayed (jti seen)")
                self._seen_jti[jti] = now
            self._tokens[token] = now + self.token_ttl_s
            self.issued += 1
        return {"access_token": token, "token_type": "bearer", "expires_in": int(self.token_ttl_s)}

    def verify_bearer(self, token: str) -> None:
        with self._lock:
            expires = self._tokens.get(token)
        if expires is None:
            raise AuthFailure("unknown bearer token")
        if self._clock() >= expires:
            raise AuthFailure("bearer token expired")

    def revoke_all(self) -> None:
        """Forget every issued token (a client must fetch a new one)."""
        with self._lock:
            self._tokens.clear()
