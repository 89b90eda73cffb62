"""Fuzz the inbound API with schemathesis on the local stack: no 5xx, every rejection names the problem.

The spec is ``events/openapi/webhooks.yaml`` (checked against the template by tests/infra/test_openapi.py).
Each operation gets schemathesis' positive and negative cases (valid and schema-violating parameters,
headers and bodies), each sent one of three ways: as generated; to a configured source (the webhook,
with the generated, wrong signature headers); or *authenticated* — for the signed webhook to a
configured source, signed with its local secret over the exact bytes sent, for the Outbound listener
to the local listener secret — so the fuzz reaches JSON/XML parsing and validation, not only the
signature check. Bounded: ``MAX_EXAMPLES`` per operation, derandomized (the same cases every run), no example
database, every request to 127.0.0.1 with a timeout. The figures are printed at the end of the run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet

from infra.local import config
from infra.local.stack import LocalStack
from tests.conftest import report_figures

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "events" / "openapi" / "webhooks.yaml"
# ``make test`` runs 60 per operation; R2R_FUZZ_MAX_EXAMPLES=<n> runs a deeper fuzz by hand.
MAX_EXAMPLES = int(os.environ.get("R2R_FUZZ_MAX_EXAMPLES", "60"))
REQUEST_TIMEOUT_S = 30

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]

schema = schemathesis.openapi.from_path(SPEC)
_FAULTSTRING = re.compile(rb"<faultstring>([^<]+)</faultstring>")


@schemathesis.check
def rejection_names_the_problem(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """A 4xx must say what was wrong: a JSON ``message`` (r2r adds ``error``), or a SOAP faultstring."""
    if not 400 <= response.status_code < 500:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    if "xml" in content_type:
        found = _FAULTSTRING.search(response.content)
        if not found or not found.group(1).strip():
            raise AssertionError(
                f"{response.status_code} SOAP fault without a faultstring: {response.content[:200]!r}"
            )
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(
            f"{response.status_code} with a body that is not JSON: {response.content[:200]!r}"
        ) from None
    if not isinstance(body, dict) or not str(body.get("message") or "").strip():
        raise AssertionError(f"{response.status_code} without a message naming the problem: {body!r}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with LocalStack.start(ROOT, erp_db=tmp_path_factory.mktemp("erp") / "erp.sqlite") as running:
        yield running


def _bytes_of(case: schemathesis.Case) -> bytes:
    body = case.body
    if isinstance(body, NotSet) or body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str) and case.media_type and "xml" in case.media_type:
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def _sign_bytes(secret: str, webhook_id: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers over any bytes (webhooks.sign takes UTF-8 text; fuzz bodies may not be)."""
    timestamp = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def _aim(case: schemathesis.Case, source: str) -> None:
    """Send the case to a configured source / the local listener secret."""
    if case.path.startswith("/v1/webhooks/"):
        case.path_parameters = {**(case.path_parameters or {}), "source": source}
    else:
        case.path_parameters = {**(case.path_parameters or {}), "secret": config.SALESFORCE_OUTBOUND_SECRET}


def _authenticate(case: schemathesis.Case, source: str) -> tuple[bytes, dict[str, str]]:
    """The bytes to send and the headers that authenticate them (sign the webhook / use the listener)."""
    _aim(case, source)
    body = _bytes_of(case)
    if case.path.startswith("/v1/webhooks/"):
        headers = _sign_bytes(config.WEBHOOK_SECRETS[source], f"msg_fuzz_{uuid.uuid4().hex}", body)
        return body, {**headers, "Content-Type": "application/json"}
    return body, {"Content-Type": "text/xml; charset=utf-8"}


@pytest.mark.timeout(900)
def test_no_5xx_and_every_rejection_names_the_problem(stack: LocalStack) -> None:
    base_url = stack.api_url.rstrip("/")
    operations = [result.ok() for result in schema.get_all_operations()]
    figures: list[str] = []
    totals: Counter[str] = Counter()
    failures: list[str] = []

    for operation in operations:
        sent, statuses, ways = _fuzz(operation, base_url, failures)
        label = f"{operation.method.upper()} {operation.path}"
        figures.append(
            f"{label}: {sent} requests, status "
            + ", ".join(f"{status}×{n}" for status, n in sorted(statuses.items()))
            + " (sent "
            + ", ".join(f"{how} {n}" for how, n in sorted(ways.items()))
            + ")"
        )
        totals.update({str(status): n for status, n in statuses.items()})
        totals["requests"] += sent

    server_errors = sum(n for status, n in totals.items() if status.isdigit() and int(status) >= 500)
    report_figures(
        "webhook API fuzz (schemathesis, local stack)",
        [
            f"operations: {len(operations)}, requests: {totals['requests']} "
            f"(max {MAX_EXAMPLES} examples per operation, derandomized), 5xx: {server_errors}, "
            f"failed checks: {len(failures)}",
            *figures,
        ],
    )
    assert len(operations) == 3  # signed webhook, Outbound Message by path secret and by basic auth
    assert totals["requests"] >= len(operations) * 20, "the fuzz sent too few requests to mean anything"
    assert not failures, "\n".join(sorted(set(failures))[:20])


def _fuzz(operation: Any, base_url: str, failures: list[str]) -> tuple[int, Counter[int], Counter[str]]:
    """Run one operation's bounded fuzz; returns (requests sent, statuses, how they were sent)."""
    statuses: Counter[int] = Counter()
    ways: Counter[str] = Counter()
    cases = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=cases,
        how=st.sampled_from(["authenticated", "configured", "as generated"]),
        source=st.sampled_from(sorted(config.WEBHOOK_SECRETS)),
    )
    def run(case: schemathesis.Case, how: str, source: str) -> None:
        kwargs: dict[str, Any] = {"base_url": base_url, "timeout": REQUEST_TIMEOUT_S}
        if how == "authenticated":
            body, headers = _authenticate(case, source)
            kwargs.update(data=body, headers=headers)
        elif how == "configured":
            _aim(case, source)
        ways[how] += 1
        response = case.call(**kwargs)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=[not_a_server_error, rejection_names_the_problem])
        except Exception as exc:  # collect every distinct failure, then fail once with all of them
            failures.append(f"{operation.method.upper()} {operation.path} ({how}): {str(exc)[:400]}")

    run()
    return sum(statuses.values()), statuses, ways
