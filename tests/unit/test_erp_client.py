"""NetSuiteClient against a scripted HTTP layer: backoff, Retry-After, idempotent writes, logging."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from decimal import Decimal
from http.client import RemoteDisconnected
from typing import Any

import pytest
import urllib3
from aws_lambda_powertools import Logger
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError

from r2r_core.erp import (
    ErpAmbiguousWriteError,
    ErpAuthError,
    ErpPermanentError,
    ErpTransientError,
    NetSuiteClient,
    TbaCredentials,
    write_applied,
)

BASE = "https://tstdrv1234567.suitetalk.api.netsuite.com"
RECORDS = f"{BASE}/services/rest/record/v1"
CREDENTIALS = TbaCredentials(
    account_id="TSTDRV1234567",
    consumer_key="ck-unit",
    consumer_secret="cs-very-secret",
    token_id="tk-unit",
    token_secret="ts-very-secret",
)


def response(status: int, body: Any = b"", headers: dict[str, str] | None = None) -> urllib3.HTTPResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return urllib3.HTTPResponse(body=data, status=status, headers=headers or {}, preload_content=True)


def error(status: int, code: str, headers: dict[str, str] | None = None) -> urllib3.HTTPResponse:
    body = {"title": "x", "status": status, "o:errorDetails": [{"detail": code.lower(), "o:errorCode": code}]}
    return response(status, body, headers)


def created(record_type: str, record_id: str) -> urllib3.HTTPResponse:
    return response(204, headers={"Location": f"{RECORDS}/{record_type}/{record_id}"})


class ScriptedHttp:
    """Answers requests from a script of responses or exceptions, and records the calls."""

    def __init__(self, *script: urllib3.HTTPResponse | Exception) -> None:
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []

    def request(
        self, method: str, url: str, body: bytes | None = None, headers: Any = None, **kw: Any
    ) -> Any:
        self.calls.append({"method": method, "url": url, "body": body, "headers": headers, **kw})
        outcome = self.script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @property
    def methods(self) -> list[str]:
        return [call["method"] for call in self.calls]


def make_client(
    http: ScriptedHttp, rng: Callable[[], float] = lambda: 0.5, **kw: Any
) -> tuple[NetSuiteClient, list[float]]:
    sleeps: list[float] = []
    client = NetSuiteClient(BASE, CREDENTIALS, http=http, sleep=sleeps.append, rng=rng, **kw)  # type: ignore[arg-type]
    return client, sleeps


def dropped() -> ProtocolError:
    return ProtocolError(
        "Connection aborted.", RemoteDisconnected("Remote end closed connection without response")
    )


# ---- backoff ------------------------------------------------------------------------------------


def test_backoff_is_exponential_full_jitter_capped_at_max_delay() -> None:
    top, _ = make_client(ScriptedHttp(), rng=lambda: 1.0)
    quarter, _ = make_client(ScriptedHttp(), rng=lambda: 0.25)

    assert [top.backoff_delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 16, 20]
    assert [quarter.backoff_delay(n) for n in range(1, 4)] == [0.125, 0.25, 0.5]


def test_transient_errors_are_retried_with_backoff_then_succeed() -> None:
    http = ScriptedHttp(
        error(503, "SERVICE_UNAVAILABLE"), error(500, "UNEXPECTED_ERROR"), response(200, {"id": "7"})
    )
    client, sleeps = make_client(http)

    assert client.get("customer", "7") == {"id": "7"}
    assert sleeps == [0.25, 0.5]
    assert http.methods == ["GET", "GET", "GET"]


def test_retry_after_is_honoured_instead_of_the_jitter() -> None:
    http = ScriptedHttp(
        error(429, "CONCURRENCY_LIMIT_EXCEEDED", {"Retry-After": "3"}), response(200, {"id": "7"})
    )
    client, sleeps = make_client(http)

    client.get("customer", "7")

    assert sleeps == [3.0]


def test_retry_after_longer_than_max_delay_hands_back_to_the_caller_at_once() -> None:
    http = ScriptedHttp(error(429, "CONCURRENCY_LIMIT_EXCEEDED", {"Retry-After": "120"}))
    client, sleeps = make_client(http, max_delay=20)

    with pytest.raises(ErpTransientError) as caught:
        client.get("customer", "7")
    assert caught.value.retry_after == 120.0 and sleeps == [] and len(http.calls) == 1


def test_attempts_are_bounded_then_the_transient_error_surfaces() -> None:
    http = ScriptedHttp(*[error(500, "UNEXPECTED_ERROR") for _ in range(6)])
    client, sleeps = make_client(http, rng=lambda: 1.0)

    with pytest.raises(ErpTransientError) as caught:
        client.get("customer", "7")
    assert caught.value.status == 500 and caught.value.code == "UNEXPECTED_ERROR"
    assert len(http.calls) == 6 and sleeps == [0.5, 1, 2, 4, 8]


def test_permanent_errors_are_raised_at_once() -> None:
    http = ScriptedHttp(error(400, "INVALID_CONTENT"))
    client, sleeps = make_client(http)

    with pytest.raises(ErpPermanentError) as caught:
        client.upsert("timeBill", "r2r-time-1", {"hours": "0"})
    assert caught.value.code == "INVALID_CONTENT" and len(http.calls) == 1 and sleeps == []


def test_401_raises_the_auth_error() -> None:
    client, _ = make_client(ScriptedHttp(error(401, "INVALID_LOGIN")))

    with pytest.raises(ErpAuthError):
        client.get("customer", "1")


# ---- writes whose answer is lost --------------------------------------------------------------


def test_put_dropped_after_commit_returns_the_existing_record_without_writing_again() -> None:
    body = {"companyName": "Acme", "currency": {"externalId": "USD"}}
    stored = {"id": "42", "externalId": "r2r-customer-acme", "companyName": "Acme",
              "currency": {"externalId": "USD", "refName": "US Dollar"}, "links": []}  # fmt: skip
    http = ScriptedHttp(dropped(), response(200, stored))
    client, _ = make_client(http)

    assert client.upsert("customer", "r2r-customer-acme", body) == "42"
    assert http.methods == ["PUT", "GET"]
    assert http.calls[1]["url"] == f"{RECORDS}/customer/eid:r2r-customer-acme?expandSubResources=true"


def test_put_timed_out_before_commit_is_looked_up_then_written_again() -> None:
    http = ScriptedHttp(
        ReadTimeoutError(None, f"{RECORDS}/job/eid:j", "Read timed out."),  # type: ignore[arg-type]
        error(404, "NONEXISTENT_ID"),
        created("job", "5"),
    )
    client, _ = make_client(http)

    assert client.upsert("job", "j", {"companyName": "P"}) == "5"
    assert http.methods == ["PUT", "GET", "PUT"]


def test_a_lookup_that_finds_other_values_leads_to_the_idempotent_put_again() -> None:
    http = ScriptedHttp(
        dropped(), response(200, {"id": "42", "companyName": "Old"}), created("customer", "42")
    )
    client, _ = make_client(http)

    assert client.upsert("customer", "c", {"companyName": "New"}) == "42"
    assert http.methods == ["PUT", "GET", "PUT"]


def test_5xx_on_a_write_is_treated_as_possibly_committed() -> None:
    http = ScriptedHttp(error(502, "UNEXPECTED_ERROR"), response(200, {"id": "9", "companyName": "A"}))
    client, _ = make_client(http)

    assert client.upsert("customer", "c", {"companyName": "A"}) == "9"
    assert http.methods == ["PUT", "GET"]


def test_429_on_a_write_is_not_ambiguous_and_needs_no_lookup() -> None:
    http = ScriptedHttp(error(429, "CONCURRENCY_LIMIT_EXCEEDED"), created("customer", "3"))
    client, _ = make_client(http)

    assert client.upsert("customer", "c", {"companyName": "A"}) == "3"
    assert http.methods == ["PUT", "PUT"]


def test_refused_connection_is_retried_without_lookup() -> None:
    http = ScriptedHttp(NewConnectionError(None, "Connection refused"), created("customer", "3"))  # type: ignore[arg-type]
    client, _ = make_client(http)

    assert client.upsert("customer", "c", {"companyName": "A"}) == "3"
    assert http.methods == ["PUT", "PUT"]


def test_create_with_external_id_is_checked_before_a_second_post() -> None:
    http = ScriptedHttp(dropped(), response(200, {"id": "8", "externalId": "e-1", "companyName": "A"}))
    client, _ = make_client(http)

    assert client.create("customer", {"externalId": "e-1", "companyName": "A"}) == "8"
    assert http.methods == ["POST", "GET"]


def test_create_without_external_id_refuses_to_guess() -> None:
    client, _ = make_client(ScriptedHttp(dropped()))

    with pytest.raises(ErpAmbiguousWriteError):
        client.create("customer", {"companyName": "A"})


# ---- the wire ---------------------------------------------------------------------------------


def test_each_attempt_is_signed_afresh_and_sent_with_timeouts_and_no_urllib3_retries() -> None:
    http = ScriptedHttp(error(429, "CONCURRENCY_LIMIT_EXCEEDED"), created("timeBill", "1"))
    client, _ = make_client(http, connect_timeout=2, read_timeout=30)

    client.upsert("timeBill", "r2r-time-1", {"hours": Decimal("7.50")})

    nonces = {re.search(r'oauth_nonce="([^"]+)"', c["headers"]["Authorization"]).group(1) for c in http.calls}
    assert len(nonces) == 2
    first = http.calls[0]
    assert first["url"] == f"{RECORDS}/timeBill/eid:r2r-time-1"
    assert first["body"] == b'{"hours":"7.50"}'
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["retries"] is False and first["redirect"] is False
    assert (first["timeout"].connect_timeout, first["timeout"].read_timeout) == (2, 30)


def test_defaults_are_five_seconds_to_connect_and_sixty_to_read() -> None:
    http = ScriptedHttp(response(200, {"id": "1"}))
    client, _ = make_client(http)

    client.get("customer", "1")

    assert (http.calls[0]["timeout"].connect_timeout, http.calls[0]["timeout"].read_timeout) == (5, 60)


def test_money_comes_back_as_decimal_never_float() -> None:
    http = ScriptedHttp(response(200, b'{"id": "1", "total": 43969.38, "hours": 7.5}'))
    client, _ = make_client(http)

    record = client.get("invoice", "1")

    assert record["total"] == Decimal("43969.38") and isinstance(record["hours"], Decimal)


def test_get_by_external_id_gives_none_when_absent() -> None:
    client, _ = make_client(ScriptedHttp(error(404, "NONEXISTENT_ID")))

    assert client.get_by_external_id("customer", "nobody") is None


def test_list_follows_the_pages() -> None:
    page = {"count": 2, "hasMore": True, "offset": 0, "totalResults": 3, "items": [{"id": "1"}, {"id": "2"}]}
    last = {"count": 1, "hasMore": False, "offset": 2, "totalResults": 3, "items": [{"id": "3"}]}
    http = ScriptedHttp(response(200, page), response(200, last))
    client, _ = make_client(http, page_size=2)

    assert [item["id"] for item in client.list("customer")] == ["1", "2", "3"]
    assert [c["url"] for c in http.calls] == [
        f"{RECORDS}/customer?limit=2&offset=0",
        f"{RECORDS}/customer?limit=2&offset=2",
    ]


def test_invalid_keys_are_refused_before_any_request() -> None:
    client, _ = make_client(ScriptedHttp())

    with pytest.raises(ValueError):
        client.upsert("customer", "has space", {})
    with pytest.raises(ValueError):
        client.get("customer", "eid:x")
    with pytest.raises(ValueError):
        client.get("../customer", "1")


def test_logs_are_structured_and_carry_no_credentials() -> None:
    stream = io.StringIO()
    logger = Logger(service="erp-unit", stream=stream, level="DEBUG")
    http = ScriptedHttp(
        error(429, "CONCURRENCY_LIMIT_EXCEEDED"), dropped(), error(404, "NONEXISTENT_ID"), created("job", "2")
    )
    client, _ = make_client(http, logger=logger)

    client.upsert("job", "r2r-job-1", {"companyName": "P"})

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    refused = next(line for line in lines if line["message"] == "erp request refused")
    assert refused["record_type"] == "job" and refused["external_id"] == "r2r-job-1"
    assert refused["status"] == 429 and refused["attempt"] == 1
    text = stream.getvalue()
    for secret in ("cs-very-secret", "ts-very-secret", "ck-unit", "tk-unit", "oauth_signature"):
        assert secret not in text
    assert "ck-unit" not in repr(client)


# ---- what counts as "our write is there" ------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored", "applied"),
    [
        ({"rate": "150.00"}, {"rate": Decimal("150.0"), "links": []}, True),
        ({"hours": "7.5"}, {"hours": 7.5}, True),
        ({"customer": {"id": "5"}}, {"customer": {"id": "5", "refName": "P"}}, True),
        (
            {"item": {"items": [{"amount": "1.00"}]}},
            {"item": {"items": [{"amount": 1}, {"amount": 2}]}},
            False,
        ),
        ({"isBillable": True}, {"isBillable": "true"}, False),
        ({"memo": "a"}, {}, False),
        ({"tranDate": "2026-11-18"}, {"tranDate": "2026-11-18"}, True),
    ],
)
def test_write_applied(sent: dict[str, Any], stored: dict[str, Any], applied: bool) -> None:
    assert write_applied(sent, stored) is applied
