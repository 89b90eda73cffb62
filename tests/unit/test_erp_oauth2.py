"""OAuth 2.0 client credentials: the JWT assertion's header and claims, expiry, token caching."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
import urllib3

from infra.erp_sandbox.auth import SandboxOAuth2Client
from r2r_core.erp import (
    ErpAuthError,
    ErpTransientError,
    NetSuiteClient,
    OAuth2Credentials,
    OAuth2TokenSource,
    TbaCredentials,
    credentials_from_secret_json,
    jwt_assertion,
)

BASE = "https://tstdrv1234567.suitetalk.api.netsuite.com"
TOKEN_URL = f"{BASE}/services/rest/auth/oauth2/v1/token"


@pytest.fixture(scope="module")
def rsa_key() -> tuple[SandboxOAuth2Client, str]:
    return SandboxOAuth2Client.generate("PS256", client_id="cid-1", certificate_id="cert-1")


@pytest.fixture(scope="module")
def ec_key() -> tuple[SandboxOAuth2Client, str]:
    return SandboxOAuth2Client.generate("ES256", client_id="cid-2", certificate_id="cert-2")


def credentials(private_pem: str, **extra: Any) -> OAuth2Credentials:
    values = {"account_id": "TSTDRV1234567", "client_id": "cid-1", "certificate_id": "cert-1"}
    return OAuth2Credentials.model_validate({**values, "private_key": private_pem, **extra})


def test_assertion_is_ps256_with_kid_and_the_claims_netsuite_wants(
    rsa_key: tuple[SandboxOAuth2Client, str],
) -> None:
    client, private = rsa_key

    token = jwt_assertion(credentials(private), TOKEN_URL, now=1_800_000_000)

    header = jwt.get_unverified_header(token)
    assert header == {"alg": "PS256", "kid": "cert-1", "typ": "JWT"}
    claims = jwt.decode(
        token,
        client.public_key_pem,
        algorithms=["PS256"],
        audience=TOKEN_URL,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == "cid-1"
    assert claims["scope"] == "rest_webservices"
    assert claims["aud"] == TOKEN_URL
    assert claims["iat"] == 1_800_000_000
    assert claims["exp"] == 1_800_000_000 + 300  # five minutes, well under NetSuite's 60
    assert len(claims["jti"]) == 36


def test_ec_key_signs_es256_and_a_different_key_does_not_verify(
    rsa_key: tuple[SandboxOAuth2Client, str], ec_key: tuple[SandboxOAuth2Client, str]
) -> None:
    ec_client, ec_private = ec_key
    token = jwt_assertion(credentials(ec_private, certificate_id="cert-2"), TOKEN_URL)

    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    jwt.decode(token, ec_client.public_key_pem, algorithms=["ES256"], audience=TOKEN_URL)
    other, _ = SandboxOAuth2Client.generate("ES256")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.public_key_pem, algorithms=["ES256"], audience=TOKEN_URL)


def test_an_expired_assertion_is_refused_by_a_verifier(rsa_key: tuple[SandboxOAuth2Client, str]) -> None:
    client, private = rsa_key
    token = jwt_assertion(credentials(private), TOKEN_URL, now=1_000_000_000)

    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, client.public_key_pem, algorithms=["PS256"], audience=TOKEN_URL)


def test_lifetime_over_sixty_minutes_or_rs256_is_refused(rsa_key: tuple[SandboxOAuth2Client, str]) -> None:
    _, private = rsa_key
    with pytest.raises(ValueError, match="60 minutes"):
        jwt_assertion(credentials(private), TOKEN_URL, lifetime_s=3601)
    with pytest.raises(ValueError):
        OAuth2Credentials.model_validate(
            {
                "account_id": "A",
                "client_id": "c",
                "certificate_id": "k",
                "private_key": private,
                "algorithm": "RS256",
            }
        )
    with pytest.raises(ValueError, match="RSA key signs PS256"):
        credentials(private, algorithm="ES256").signing_algorithm()


def test_secret_chooses_tba_or_oauth2_by_its_auth_key(rsa_key: tuple[SandboxOAuth2Client, str]) -> None:
    _, private = rsa_key
    tba = credentials_from_secret_json(
        json.dumps(
            {
                "account_id": "A",
                "consumer_key": "ck",
                "consumer_secret": "cs",
                "token_id": "t",
                "token_secret": "ts",
            }
        )
    )
    oauth2 = credentials_from_secret_json(
        json.dumps(
            {
                "account_id": "A",
                "auth": "oauth2",
                "oauth2": {"client_id": "c", "certificate_id": "k", "private_key": private},
            }
        )
    )

    assert isinstance(tba, TbaCredentials)
    assert isinstance(oauth2, OAuth2Credentials)
    assert oauth2.signing_algorithm() == "PS256"
    assert private not in repr(oauth2) and "client_id" not in repr(oauth2)
    with pytest.raises(ValueError, match="auth must be one of"):
        credentials_from_secret_json('{"account_id": "A", "auth": "basic"}')
    with pytest.raises(ValueError) as missing:
        credentials_from_secret_json(
            json.dumps({"account_id": "A", "auth": "oauth2", "private_key": private})
        )
    assert "client_id" in str(missing.value) and "certificate_id" in str(missing.value)
    assert "PRIVATE" not in str(missing.value)


class TokenEndpoint:
    """Answers token requests (and record requests) from a script; records what was sent."""

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def request(self, method: str, url: str, body: bytes | None = None, headers: Any = None, **_: Any) -> Any:
        self.calls.append({"method": method, "url": url, "body": body, "headers": headers})
        status, document = self.answers.pop(0)
        return urllib3.HTTPResponse(
            body=json.dumps(document).encode() if document else b"",
            status=status,
            headers={"Location": f"{BASE}/services/rest/record/v1/customer/7"} if status == 204 else {},
            preload_content=True,
        )


def test_token_is_cached_until_shortly_before_expiry(rsa_key: tuple[SandboxOAuth2Client, str]) -> None:
    _, private = rsa_key
    now = [1_800_000_000.0]
    http = TokenEndpoint(
        (200, {"access_token": "tok-1", "token_type": "bearer", "expires_in": 3600}),
        (200, {"access_token": "tok-2", "token_type": "bearer", "expires_in": 3600}),
    )
    source = OAuth2TokenSource(BASE, credentials(private), http=http, clock=lambda: now[0])  # type: ignore[arg-type]

    assert source.token() == "tok-1"
    now[0] += 3600 - 121
    assert source.token() == "tok-1"  # still more than the refresh margin left
    now[0] += 2
    assert source.token() == "tok-2"
    assert source.fetches == 2
    form = parse_qs(http.calls[0]["body"].decode())
    assert http.calls[0]["url"] == TOKEN_URL
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_assertion_type"] == ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    assert jwt.get_unverified_header(form["client_assertion"][0])["kid"] == "cert-1"


def test_refused_credentials_are_an_auth_error_and_5xx_is_transient(
    rsa_key: tuple[SandboxOAuth2Client, str],
) -> None:
    _, private = rsa_key
    invalid_login = {
        "status": 401,
        "o:errorDetails": [{"detail": "Invalid login", "o:errorCode": "INVALID_LOGIN"}],
    }
    refused = OAuth2TokenSource(BASE, credentials(private), http=TokenEndpoint((401, invalid_login)))  # type: ignore[arg-type]
    bad_grant = OAuth2TokenSource(
        BASE, credentials(private), http=TokenEndpoint((400, {"error": "invalid_grant"}))
    )  # type: ignore[arg-type]
    down = OAuth2TokenSource(BASE, credentials(private), http=TokenEndpoint((503, {})))  # type: ignore[arg-type]

    with pytest.raises(ErpAuthError) as error:
        refused.token()
    assert error.value.code == "INVALID_LOGIN"
    with pytest.raises(ErpAuthError):
        bad_grant.token()
    with pytest.raises(ErpTransientError):
        down.token()


def test_client_sends_bearer_and_refetches_once_when_the_token_is_refused(
    rsa_key: tuple[SandboxOAuth2Client, str],
) -> None:
    _, private = rsa_key
    refused = {"status": 401, "o:errorDetails": [{"detail": "x", "o:errorCode": "INVALID_LOGIN"}]}
    http = TokenEndpoint(
        (200, {"access_token": "tok-1", "token_type": "bearer", "expires_in": 3600}),
        (401, refused),
        (200, {"access_token": "tok-2", "token_type": "bearer", "expires_in": 3600}),
        (204, {}),
    )
    client = NetSuiteClient(BASE, credentials(private), http=http, sleep=lambda _: None)  # type: ignore[arg-type]

    assert client.upsert("customer", "r2r-customer-1", {"companyName": "Acme"}) == "7"

    record_calls = [c for c in http.calls if "/record/" in c["url"]]
    assert [c["headers"]["Authorization"] for c in record_calls] == ["Bearer tok-1", "Bearer tok-2"]
    assert "auth=oauth2" in repr(client) and private not in repr(client)
