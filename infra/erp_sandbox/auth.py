"""Token-Based Authentication check: the signature is recomputed with oauthlib and compared.

Checks, in order: an ``OAuth`` header, ``realm`` = the account, HMAC-SHA256, version 1.0, the
configured consumer key and token, a timestamp within the allowed skew, the signature (oauthlib's
base string and HMAC over method, URL, query and oauth parameters), then a nonce not seen before.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature, utils

__all__ = ["AuthFailure", "SandboxCredentials", "TbaVerifier"]


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
