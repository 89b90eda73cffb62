"""OAuth 2.0 client credentials for real: the sandbox verifies the JWT and accepts its bearer tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import urllib3

from infra.erp_sandbox import ErpSandbox, SandboxOAuth2Client
from r2r_core.erp import (
    ErpAuthError,
    NetSuiteClient,
    OAuth2Credentials,
    credentials_from_secret_json,
    customer_body,
    jwt_assertion,
)

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"


@pytest.fixture(scope="module")
def keys() -> tuple[SandboxOAuth2Client, str]:
    return SandboxOAuth2Client.generate("PS256")


@pytest.fixture
def sandbox(tmp_path: Path, keys: tuple[SandboxOAuth2Client, str]) -> Iterator[ErpSandbox]:
    erp = ErpSandbox(tmp_path / "erp.sqlite", oauth2=keys[0])
    erp.start()
    yield erp
    erp.stop()


def secret(sandbox: ErpSandbox, private_key: str, **extra: Any) -> str:
    assert sandbox.oauth2.client is not None
    return json.dumps(
        {
            "account_id": sandbox.account_id,
            "auth": "oauth2",
            "client_id": sandbox.oauth2.client.client_id,
            "certificate_id": sandbox.oauth2.client.certificate_id,
            "private_key": private_key,
            **extra,
        }
    )


def test_client_gets_a_token_once_and_writes_with_it(
    sandbox: ErpSandbox, keys: tuple[SandboxOAuth2Client, str]
) -> None:
    credentials = credentials_from_secret_json(secret(sandbox, keys[1]))
    client = NetSuiteClient(sandbox.url, credentials, sleep=lambda _: None)

    ids = [
        client.upsert("customer", f"r2r-customer-{n}", customer_body(f"Acme {n}", currency="USD"))
        for n in range(3)
    ]

    assert len(set(ids)) == 3
    assert sandbox.oauth2.issued == 1  # cached: one token for every request
    assert client.get_by_external_id("customer", "r2r-customer-1") is not None
    assert sandbox.stats()["auth_failures"] == 0


def test_a_revoked_token_is_replaced_once(sandbox: ErpSandbox, keys: tuple[SandboxOAuth2Client, str]) -> None:
    client = NetSuiteClient(sandbox.url, credentials_from_secret_json(secret(sandbox, keys[1])))
    client.upsert("customer", "r2r-customer-a", customer_body("A", currency="USD"))

    sandbox.revoke_tokens()
    client.upsert("customer", "r2r-customer-b", customer_body("B", currency="USD"))

    assert sandbox.oauth2.issued == 2
    assert sandbox.stats()["auth_failures"] == 1


def test_an_ec_certificate_signs_es256(tmp_path: Path) -> None:
    client_record, private = SandboxOAuth2Client.generate("ES256", certificate_id="cert-ec")
    with ErpSandbox(tmp_path / "erp.sqlite", oauth2=client_record) as erp:
        client = NetSuiteClient(erp.url, credentials_from_secret_json(secret(erp, private)))

        client.upsert("customer", "r2r-customer-ec", customer_body("EC", currency="USD"))

        assert erp.oauth2.issued == 1


@pytest.mark.parametrize("wrong", ["client_id", "certificate_id", "private_key"])
def test_wrong_credentials_get_invalid_login(
    sandbox: ErpSandbox, keys: tuple[SandboxOAuth2Client, str], wrong: str
) -> None:
    values = json.loads(secret(sandbox, keys[1]))
    values[wrong] = SandboxOAuth2Client.generate("PS256")[1] if wrong == "private_key" else "someone-else"
    client = NetSuiteClient(sandbox.url, credentials_from_secret_json(json.dumps(values)))

    with pytest.raises(ErpAuthError) as error:
        client.upsert("customer", "r2r-customer-x", customer_body("X", currency="USD"))

    assert error.value.status == 401 and error.value.code == "INVALID_LOGIN"
    assert sandbox.oauth2.issued == 0
    assert sandbox.records()["customer"] == []


def post_token(sandbox: ErpSandbox, fields: dict[str, str]) -> tuple[int, Any]:
    response = urllib3.request(
        "POST",
        sandbox.url + TOKEN_PATH,
        body=urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        retries=False,
        timeout=5,
    )
    return response.status, json.loads(response.data) if response.data else None


def test_token_endpoint_checks_grant_audience_lifetime_and_replay(
    sandbox: ErpSandbox, keys: tuple[SandboxOAuth2Client, str]
) -> None:
    credentials = credentials_from_secret_json(secret(sandbox, keys[1]))
    assert isinstance(credentials, OAuth2Credentials)
    token_url = sandbox.url + TOKEN_PATH
    jwt_bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    good = jwt_assertion(credentials, token_url)

    status, answer = post_token(
        sandbox,
        {"grant_type": "client_credentials", "client_assertion_type": jwt_bearer, "client_assertion": good},
    )
    assert status == 200
    assert answer["token_type"] == "bearer" and answer["expires_in"] == 3600

    refusals = [
        # the same assertion again (jti seen)
        {"grant_type": "client_credentials", "client_assertion_type": jwt_bearer, "client_assertion": good},
        # wrong grant
        {
            "grant_type": "password",
            "client_assertion_type": jwt_bearer,
            "client_assertion": jwt_assertion(credentials, token_url),
        },
        # audience of another account
        {
            "grant_type": "client_credentials",
            "client_assertion_type": jwt_bearer,
            "client_assertion": jwt_assertion(credentials, "https://other.example" + TOKEN_PATH),
        },
        # expired an hour ago
        {
            "grant_type": "client_credentials",
            "client_assertion_type": jwt_bearer,
            "client_assertion": jwt_assertion(credentials, token_url, now=time.time() - 3600),
        },
    ]
    for fields in refusals:
        status, answer = post_token(sandbox, fields)
        assert status == 401
        assert answer["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"

    bad_bearer = urllib3.request(
        "GET",
        sandbox.url + "/services/rest/record/v1/customer",
        headers={"Authorization": "Bearer not-a-token"},
        retries=False,
        timeout=5,
    )
    assert bad_bearer.status == 401
    assert json.loads(bad_bearer.data)["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"
