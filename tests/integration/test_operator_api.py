"""The operator API function on moto DynamoDB (proxy events as API Gateway sends them after IAM
authorization), and the local stack's IAM authorizer (SigV4 verification, policy evaluation)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from moto import mock_aws

from infra.local import operator
from infra.local.iam_auth import Denied, IamAuthorizer, Identity, LocalCredential, OperatorRole
from r2r_core.runtime import reset_clients, use_environ
from r2r_core.state import AuditLog, StateStore
from tests.conftest import create_state_and_audit_tables, load_handler

CALLER = "arn:aws:sts::123456789012:assumed-role/r2r-dev-FinanceOps/jane"


@dataclass
class Context:
    function_name: str = "operator-api"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:operator-api"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@pytest.fixture
def stores() -> Iterator[tuple[StateStore, AuditLog]]:
    with mock_aws():
        reset_clients()
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_and_audit_tables(ddb)
        store = StateStore("state", ddb)
        store.put_exception(
            {
                "id": "exc-0001",
                "kind": "billing_rule",
                "status": "open",
                "created_at": "2026-11-20T10:00:00+00:00",
            }
        )
        store.put_exception(
            {
                "id": "exc-0002",
                "kind": "billing_rule",
                "status": "resolved",
                "created_at": "2026-11-19T10:00:00+00:00",
            }
        )
        with use_environ(
            {"STATE_TABLE_NAME": "state", "AUDIT_TABLE_NAME": "audit", "AWS_REGION": "us-east-1"}
        ):
            yield store, AuditLog("audit", ddb)
        reset_clients()


def call(
    method: str,
    path: str,
    *,
    body: Any = None,
    query: dict[str, str] | None = None,
    caller: str | None = CALLER,
) -> tuple[int, dict[str, Any]]:
    handler = load_handler("operator_api")
    event = {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "queryStringParameters": query,
        "pathParameters": None,
        "requestContext": {
            "requestId": "req-1",
            "stage": "dev",
            "identity": {"userArn": caller, "caller": caller, "sourceIp": "127.0.0.1"},
        },
        "body": body if isinstance(body, str) or body is None else json.dumps(body),
        "isBase64Encoded": False,
    }
    response = handler.handler(event, Context())
    return response["statusCode"], json.loads(response["body"])


def test_exceptions_are_listed_open_by_default_and_by_status(stores: tuple[StateStore, AuditLog]) -> None:
    status, body = call("GET", "/ops/exceptions")
    assert status == 200
    assert [e["id"] for e in body["exceptions"]] == ["exc-0001"]
    assert body["exceptions"][0]["age_days"] is not None
    _, every = call("GET", "/ops/exceptions", query={"status": "all"})
    assert [e["id"] for e in every["exceptions"]] == ["exc-0002", "exc-0001"]
    status, refused = call("GET", "/ops/exceptions", query={"status": "closed"})
    assert status == 400
    assert "'status'" in refused["message"] and "'closed'" in refused["message"]


def test_resolve_takes_the_caller_from_iam_never_from_the_body(stores: tuple[StateStore, AuditLog]) -> None:
    store, audit = stores
    status, body = call("POST", "/ops/exceptions/exc-0001/resolve", body={"note": "fixed", "by": "mallory"})
    assert status == 200
    assert body["exception"]["resolved_by"] == CALLER
    assert store.get("EXC#exc-0001", "EXC")["resolved_by"] == CALLER  # type: ignore[index]
    [record] = audit.history("exception", "exc-0001")
    assert record["action"] == "resolved"
    assert json.loads(record["detail"]) == {"by": CALLER, "note": "fixed"}


def test_resolve_refusals_name_what_is_wrong(stores: tuple[StateStore, AuditLog]) -> None:
    store, _ = stores
    assert call("POST", "/ops/exceptions/exc-0001/resolve", body="{not json")[0] == 400
    status, body = call("POST", "/ops/exceptions/exc-0001/resolve", body={"note": "  "})
    assert (status, "'note'" in body["message"]) == (400, True)
    status, body = call("POST", "/ops/exceptions/exc-0002/resolve", body={"note": "again"})
    assert status == 409 and "not open" in body["message"]
    status, body = call("POST", "/ops/exceptions/nope/resolve", body={"note": "x"})
    assert status == 404 and "'nope'" in body["message"]
    status, body = call("POST", "/ops/exceptions/exc-0001/resolve", body={"note": "x"}, caller=None)
    assert status == 403 and "IAM" in body["message"]
    assert store.get("EXC#exc-0001", "EXC")["status"] == "open"  # type: ignore[index]


def test_unknown_invoice_is_404_and_kpis_of_an_empty_table_are_empty(
    stores: tuple[StateStore, AuditLog],
) -> None:
    status, body = call("GET", "/ops/lineage/invoices/inv-missing")
    assert status == 404 and "inv-missing" in body["message"]
    status, body = call("GET", "/ops/kpis")
    assert status == 200
    assert (body["kpis"], body["open_exceptions"]) == ([], 1)


# -- the local IAM authorizer ----------------------------------------------------------------------

API = "http://127.0.0.1:4010/dev/"
ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/dev"
READER = LocalCredential("AKIATESTREADER000001", "reader-secret", "read-only")
ROLE = OperatorRole(
    label="read-only",
    logical_id="ReadOnlyRole",
    name="r2r-dev-ReadOnlyRole",
    arn="arn:aws:iam::123456789012:role/r2r-dev-ReadOnlyRole",
    statements=[
        {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": [f"{ARN}/GET/ops/*"]},
        {"Effect": "Deny", "Action": "execute-api:*", "Resource": f"{ARN}/GET/ops/kpi?"},
    ],
)


def _authorizer() -> IamAuthorizer:
    return IamAuthorizer([READER], {"read-only": ROLE}, region="us-east-1", account_id="123456789012")


def _signed(method: str, path: str, body: bytes = b"", **kw: Any) -> list[tuple[str, str]]:
    creds = Credentials(kw.get("key", READER.access_key_id), kw.get("secret", READER.secret_access_key))
    headers = operator.signed_headers(method, API + path, body, creds, region=kw.get("region", "us-east-1"))
    return [*headers.items(), ("Host", "127.0.0.1:4010"), ("User-Agent", "test")]


def _authorize(method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"", **kw: Any) -> Any:
    return _authorizer().authorize(
        method=method,
        url=API + path,
        headers=headers,
        body=body,
        resource_arn=f"{ARN}/{method}/{path}",
        now=kw.get("now"),
    )


def test_a_signed_request_of_an_allowed_method_is_the_role_session() -> None:
    identity = _authorize("GET", "ops/exceptions", _signed("GET", "ops/exceptions"))
    assert isinstance(identity, Identity)
    assert (
        identity.user_arn
        == "arn:aws:sts::123456789012:assumed-role/r2r-dev-ReadOnlyRole/local-AKIATESTREADER000001"
    )


def test_explicit_deny_wins_and_unlisted_methods_are_denied() -> None:
    denied = _authorize("GET", "ops/kpis", _signed("GET", "ops/kpis"))
    assert isinstance(denied, Denied) and denied.error_type == "AccessDeniedException"
    body = b'{"note": "x"}'
    denied = _authorize(
        "POST", "ops/exceptions/e/resolve", _signed("POST", "ops/exceptions/e/resolve", body), body
    )
    assert isinstance(denied, Denied) and denied.error_type == "AccessDeniedException"
    assert f"on resource: {ARN}/POST/ops/exceptions/e/resolve" in denied.body["Message"]


def test_signature_problems_are_403_with_the_reason() -> None:
    assert _authorize("GET", "ops/exceptions", [("Host", "127.0.0.1:4010")]).error_type == (
        "MissingAuthenticationTokenException"
    )
    unknown = _authorize(
        "GET", "ops/exceptions", _signed("GET", "ops/exceptions", key="AKIAUNKNOWN000000000")
    )
    assert unknown.error_type == "UnrecognizedClientException"
    wrong_secret = _authorize("GET", "ops/exceptions", _signed("GET", "ops/exceptions", secret="guess"))
    assert wrong_secret.error_type == "InvalidSignatureException"
    wrong_region = _authorize("GET", "ops/exceptions", _signed("GET", "ops/exceptions", region="eu-west-1"))
    assert "region" in wrong_region.body["message"]
    # The body is signed: another body than the one signed does not verify.
    tampered = _authorize("GET", "ops/exceptions", _signed("GET", "ops/exceptions", b"a"), b"b")
    assert tampered.error_type == "InvalidSignatureException"
    later = datetime.now(UTC) + timedelta(minutes=16)
    expired = _authorize("GET", "ops/exceptions", _signed("GET", "ops/exceptions"), now=later)
    assert "Signature expired" in expired.body["message"]
