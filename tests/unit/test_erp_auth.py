"""TBA: the Authorization header NetSuite expects, checked against a signature computed by hand."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from urllib.parse import quote, unquote

import pytest

from infra.erp_sandbox.auth import AuthFailure, SandboxCredentials, TbaVerifier
from r2r_core.erp.auth import TbaCredentials, netsuite_base_url, tba_authorization

CREDENTIALS = TbaCredentials(
    account_id="TSTDRV1234567",
    consumer_key="ck-7f3a",
    consumer_secret="cs-secret/with+odd=chars",
    token_id="tk-91b2",
    token_secret="ts-secret&more",
)


def header_params(header: str) -> dict[str, str]:
    assert header.startswith("OAuth ")
    return {k: unquote(v) for k, v in re.findall(r'(\w+)="([^"]*)"', header)}


def pct(text: str) -> str:
    """RFC 5849 section 3.6 percent-encoding: everything but unreserved characters."""
    return quote(text, safe="~")


def test_header_has_every_tba_parameter_and_the_realm_first() -> None:
    header = tba_authorization(CREDENTIALS, "put", "https://x.example/services/rest/record/v1/customer/eid:a")

    assert header.startswith('OAuth realm="TSTDRV1234567", ')
    params = header_params(header)
    assert set(params) == {
        "realm",
        "oauth_consumer_key",
        "oauth_token",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_nonce",
        "oauth_version",
        "oauth_signature",
    }
    assert params["oauth_signature_method"] == "HMAC-SHA256"
    assert params["oauth_version"] == "1.0"
    assert (params["oauth_consumer_key"], params["oauth_token"]) == ("ck-7f3a", "tk-91b2")
    assert params["oauth_timestamp"].isdigit()


def test_every_header_has_a_fresh_nonce() -> None:
    url = "https://x.example/services/rest/record/v1/customer/1"
    nonces = {header_params(tba_authorization(CREDENTIALS, "GET", url))["oauth_nonce"] for _ in range(20)}

    assert len(nonces) == 20


def test_signature_matches_a_base_string_and_hmac_worked_out_by_hand() -> None:
    url = "https://tstdrv1234567.suitetalk.api.netsuite.com/services/rest/record/v1/customer?limit=2&offset=0"
    header = tba_authorization(CREDENTIALS, "GET", url, nonce="n0nce123", timestamp="1767225600")

    # RFC 5849 3.4.1: METHOD & enc(base URI) & enc(sorted, encoded parameters incl. the query).
    expected_base = (
        "GET&https%3A%2F%2Ftstdrv1234567.suitetalk.api.netsuite.com%2Fservices%2Frest%2Frecord%2Fv1%2Fcustomer&"
        "limit%3D2%26oauth_consumer_key%3Dck-7f3a%26oauth_nonce%3Dn0nce123%26oauth_signature_method%3DHMAC-SHA256"
        "%26oauth_timestamp%3D1767225600%26oauth_token%3Dtk-91b2%26oauth_version%3D1.0%26offset%3D0"
    )
    params = [
        ("limit", "2"),
        ("offset", "0"),
        ("oauth_consumer_key", "ck-7f3a"),
        ("oauth_nonce", "n0nce123"),
        ("oauth_signature_method", "HMAC-SHA256"),
        ("oauth_timestamp", "1767225600"),
        ("oauth_token", "tk-91b2"),
        ("oauth_version", "1.0"),
    ]
    normalized = "&".join(f"{pct(k)}={pct(v)}" for k, v in sorted(params))
    base_uri = url.split("?", 1)[0]
    by_hand = f"GET&{pct(base_uri)}&{pct(normalized)}"
    assert by_hand == expected_base
    key = f"{pct('cs-secret/with+odd=chars')}&{pct('ts-secret&more')}"
    expected = base64.b64encode(hmac.new(key.encode(), by_hand.encode(), hashlib.sha256).digest()).decode()

    assert header_params(header)["oauth_signature"] == expected


def test_the_body_is_not_signed_and_no_body_hash_is_sent() -> None:
    header = tba_authorization(CREDENTIALS, "PUT", "https://x.example/services/rest/record/v1/job/eid:j")

    assert "oauth_body_hash" not in header


def test_credentials_from_the_secret_json_flat_or_nested() -> None:
    flat = TbaCredentials.from_secret_json(
        json.dumps(
            {
                "account_id": "1234567_SB1",
                "auth": "tba",
                "consumer_key": "ck",
                "consumer_secret": "cs",
                "token_id": "tk",
                "token_secret": "ts",
            }
        )
    )
    nested = TbaCredentials.from_secret_json(
        json.dumps(
            {
                "account_id": "1234567_SB1",
                "tba": {
                    "consumer_key": "ck",
                    "consumer_secret": "cs",
                    "token_id": "tk",
                    "token_secret": "ts",
                },
            }
        )
    )

    assert flat == nested
    assert flat.realm == "1234567_SB1"
    assert flat.consumer_secret.get_secret_value() == "cs"
    assert netsuite_base_url(flat.account_id) == "https://1234567-sb1.suitetalk.api.netsuite.com"


def test_a_bad_secret_names_the_keys_but_never_the_values() -> None:
    with pytest.raises(ValueError, match="consumer_secret") as caught:
        TbaCredentials.from_secret_json(
            json.dumps({"account_id": "A", "consumer_key": "ck", "token_id": "tk", "token_secret": "hunter2"})
        )
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValueError, match="not valid JSON"):
        TbaCredentials.from_secret_json("{not json")


def test_repr_of_credentials_shows_no_secret_material() -> None:
    text = repr(CREDENTIALS) + str(CREDENTIALS)

    for secret in ("cs-secret", "ts-secret", "ck-7f3a", "tk-91b2"):
        assert secret not in text
    assert "TSTDRV1234567" in text


# ---- the sandbox's verifier accepts exactly what the client signs -----------------------------

SANDBOX = SandboxCredentials(consumer_key="ck-7f3a", consumer_secret="cs-secret/with+odd=chars",
                             token_id="tk-91b2", token_secret="ts-secret&more")  # fmt: skip
URL = "http://127.0.0.1:8765/services/rest/record/v1/timeBill?limit=5&offset=10"


def with_changes(**changes: str) -> TbaCredentials:
    values = {
        "account_id": CREDENTIALS.account_id,
        "consumer_key": CREDENTIALS.consumer_key,
        "consumer_secret": CREDENTIALS.consumer_secret.get_secret_value(),
        "token_id": CREDENTIALS.token_id,
        "token_secret": CREDENTIALS.token_secret.get_secret_value(),
    }
    return TbaCredentials(**{**values, **changes})


def verifier(now: float = 1767225600.0) -> TbaVerifier:
    return TbaVerifier("TSTDRV1234567", SANDBOX, clock=lambda: now)


def signed(url: str = URL, method: str = "GET", credentials: TbaCredentials = CREDENTIALS, **kw: str) -> str:
    return tba_authorization(credentials, method, url, timestamp=kw.get("timestamp", "1767225600"),
                             nonce=kw.get("nonce"))  # fmt: skip


def test_verifier_accepts_a_client_signature() -> None:
    verifier().verify("GET", URL, signed())


@pytest.mark.parametrize(
    ("method", "url", "header", "reason"),
    [
        ("GET", URL.replace("offset=10", "offset=11"), None, "signature mismatch"),
        ("PUT", URL, None, "signature mismatch"),
        ("GET", URL, "", "missing OAuth"),
        ("GET", URL, "Bearer abc", "missing OAuth"),
    ],
)
def test_verifier_rejects_tampered_or_missing_signatures(
    method: str, url: str, header: str | None, reason: str
) -> None:
    with pytest.raises(AuthFailure, match=reason):
        verifier().verify(method, url, signed() if header is None else header)


def test_verifier_rejects_a_wrong_secret_realm_or_stale_timestamp() -> None:
    wrong_secret = with_changes(token_secret="nope")
    other_realm = with_changes(account_id="OTHER")

    with pytest.raises(AuthFailure, match="signature mismatch"):
        verifier().verify("GET", URL, signed(credentials=wrong_secret))
    with pytest.raises(AuthFailure, match="realm"):
        verifier().verify("GET", URL, signed(credentials=other_realm))
    with pytest.raises(AuthFailure, match="clock skew"):
        verifier(now=1767225600.0 + 301).verify("GET", URL, signed())


def test_verifier_rejects_a_reused_nonce() -> None:
    check = verifier()
    header = signed(nonce="same-nonce")
    check.verify("GET", URL, header)

    with pytest.raises(AuthFailure, match="nonce"):
        check.verify("GET", URL, header)
