"""Security on the local stack built from the template: everything at rest under the data key, and the
operator API behind IAM authorization.

After the sold-to-billed scenario and one time entry the contract cannot bill (a Data Engineer without a rate:
an exception for finance), a read-only operator reads the invoice's lineage, the KPIs and the exceptions but
may not resolve one (403); a finance-ops operator resolves it (200): the exception is resolved by the
finance-ops role's session and the AuditTable has the record. Unsigned and wrongly signed calls are refused
the way API Gateway refuses them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.credentials import Credentials

from infra.local import config, operator
from infra.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "sold-to-billed"
POISON_ENTRY = "te-dana-data-2026-11-18"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local")]


def _poison_entry() -> dict[str, Any]:
    return {
        "type": "time_entry.approved",
        "timestamp": "2026-11-21T09:30:00Z",
        "data": {
            "id": POISON_ENTRY,
            "version": 1,
            "engagement_id": "eng-acme-cloud-2026",
            "project_id": "prj-acme-cloud-2026",
            "resource_id": "res-dana-data",
            "assignment_id": "asg-dana-data-acme",
            "role": "Data Engineer",
            "region": "EMEA",
            "work_date": "2026-11-18",
            "hours": "6",
            "billable": True,
            "approved_at": "2026-11-21T09:30:00Z",
        },
    }


def _wait(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _ours(stack: LocalStack) -> list[dict[str, Any]]:
    return [e for e in stack.exceptions() if e.get("source_record_id") == POISON_ENTRY]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    erp_db = tmp_path_factory.mktemp("security") / "erp.sqlite"
    result: dict[str, Any] = {}
    with LocalStack.start(ROOT, erp_db=erp_db) as stack:
        report = stack.run_scenario(SCENARIO)
        assert report["ok"], report.get("drain_error")
        [invoice] = report["invoices"]
        result["invoice"] = invoice
        assert stack.post_webhook("psa", _poison_entry(), "msg_security_poison").status == 202
        _wait(lambda: len(_ours(stack)) == 1)
        stack.drain(timeout=60)
        [exception] = _ours(stack)
        result["exception_id"] = exception["id"]
        result["encryption"] = _encryption(stack)
        result["describe"] = stack.describe()

        def call(method: str, path: str, role: str | None, body: Any = None) -> operator.OperatorAnswer:
            return stack.operator_request(method, path, role=role, body=body)

        exc_path = f"/ops/exceptions/{exception['id']}"
        result["unsigned"] = call("GET", "/ops/kpis", None)
        result["ro_lineage"] = call("GET", f"/ops/lineage/invoices/{invoice['externalId']}", "read-only")
        result["ro_missing_invoice"] = call("GET", "/ops/lineage/invoices/no-such-invoice", "read-only")
        result["ro_kpis"] = call("GET", "/ops/kpis", "read-only")
        result["ro_exceptions"] = call("GET", "/ops/exceptions", "read-only")
        result["ro_resolve"] = call("POST", f"{exc_path}/resolve", "read-only", {"note": "read-only may not"})
        result["after_ro_resolve"] = call("GET", exc_path, "read-only")
        result["bad_signature"] = _wrongly_signed(stack.api_url + "ops/kpis")
        result["fo_no_note"] = call("POST", f"{exc_path}/resolve", "finance-ops", {})
        result["fo_resolve"] = call(
            "POST", f"{exc_path}/resolve", "finance-ops", {"note": "rate for Data Engineer added in the CRM"}
        )
        result["fo_resolve_again"] = call("POST", f"{exc_path}/resolve", "finance-ops", {"note": "again"})
        result["after_resolve"] = call("GET", exc_path, "integration-admin")
        result["stored"] = next(e for e in stack.exceptions() if e["id"] == exception["id"])
        # The webhook route stays outside IAM: a signed Standard Webhooks delivery is still accepted.
        result["webhook"] = stack.post_webhook("crm", {"type": "nope", "data": {}}, "msg_security_webhook")
    return result


def _wrongly_signed(url: str) -> requests.Response:
    """Signed with the read-only access key and a wrong secret."""
    creds = config.OPERATOR_CREDENTIALS["read-only"]
    wrong = Credentials(creds["access_key_id"], "not-the-secret")
    return requests.get(url, headers=operator.signed_headers("GET", url, b"", wrong), timeout=30)


def _encryption(stack: LocalStack) -> dict[str, Any]:
    assert stack.local is not None
    local = stack.local
    [key_arn] = [arn for lid, arn in local.keys.items() if lid.startswith("DataKey")]
    kms, sqs, dynamodb = stack.boto3_client("kms"), stack.boto3_client("sqs"), stack.boto3_client("dynamodb")
    s3, events, secrets = (
        stack.boto3_client("s3"),
        stack.boto3_client("events"),
        stack.boto3_client("secretsmanager"),
    )
    bucket = local.bucket_for_env("RAW_BUCKET_NAME")
    return {
        "key_arn": key_arn,
        "rotation": kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"],
        "queues": {
            q.name: sqs.get_queue_attributes(QueueUrl=q.url, AttributeNames=["KmsMasterKeyId"])[
                "Attributes"
            ].get("KmsMasterKeyId")
            for q in local.queues.values()
        },
        "tables": {
            name: dynamodb.describe_table(TableName=name)["Table"].get("SSEDescription", {})
            for name in local.tables.values()
        },
        "bucket": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"],
        "buses": {
            name: events.describe_event_bus(Name=name).get("KmsKeyIdentifier")
            for name in local.buses.values()
        },
        "secrets": {
            arn: secrets.describe_secret(SecretId=arn).get("KmsKeyId") for arn in local.secrets.values()
        },
    }


def test_everything_at_rest_is_created_with_the_data_key(run: dict[str, Any]) -> None:
    enc = run["encryption"]
    key = enc["key_arn"]
    assert enc["rotation"] is True
    assert len(enc["queues"]) >= 20
    assert set(enc["queues"].values()) == {key}
    assert len(enc["tables"]) == 3
    for name, sse in enc["tables"].items():
        assert (sse.get("Status"), sse.get("SSEType"), sse.get("KMSMasterKeyArn")) == (
            "ENABLED",
            "KMS",
            key,
        ), name
    [rule] = enc["bucket"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    assert rule["BucketKeyEnabled"] is True
    assert set(enc["buses"].values()) == {key}
    assert len(enc["secrets"]) == 5  # webhook, ERP, Salesforce, Salesforce Outbound, Kantata
    assert set(enc["secrets"].values()) == {key}


def test_unsigned_and_wrongly_signed_calls_are_refused(run: dict[str, Any]) -> None:
    unsigned = run["unsigned"]
    assert unsigned.status == 403
    assert unsigned.json == {"message": "Missing Authentication Token"}
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    bad = run["bad_signature"]
    assert bad.status_code == 403
    assert bad.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert "signature we calculated does not match" in bad.json()["message"]


def test_read_only_reads_the_lineage_of_the_invoice(run: dict[str, Any]) -> None:
    answer = run["ro_lineage"]
    assert answer.status == 200, answer.text
    doc = answer.json
    assert doc["invoice"]["external_id"] == run["invoice"]["externalId"]
    assert doc["invoice"]["total"] == "43969.38"
    assert doc["opportunity"]["id"]
    time_sources = [s for line in doc["lines"] if line["kind"] == "time" for s in line["sources"]]
    assert len(time_sources) == 15  # every billable day of the three consultants
    missing = run["ro_missing_invoice"]
    assert missing.status == 404
    assert "no-such-invoice" in missing.json["message"]


def test_read_only_reads_kpis_and_exceptions(run: dict[str, Any]) -> None:
    kpis = run["ro_kpis"]
    assert kpis.status == 200, kpis.text
    names = {k["name"] for k in kpis.json["kpis"]}
    assert {"TimeToBillDays", "BilledRevenue", "ApprovedTimeAgingDays"} <= names
    [revenue] = [k for k in kpis.json["kpis"] if k["name"] == "BilledRevenue"]
    assert revenue["value"] == "43969.38"
    listed = run["ro_exceptions"]
    assert listed.status == 200
    assert run["exception_id"] in {e["id"] for e in listed.json["exceptions"]}


def test_read_only_may_not_resolve(run: dict[str, Any]) -> None:
    refused = run["ro_resolve"]
    assert refused.status == 403
    assert refused.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    message = refused.json["Message"]
    assert "is not authorized to perform: execute-api:Invoke" in message
    assert f"/POST/ops/exceptions/{run['exception_id']}/resolve" in message
    read_only_role = run["describe"]["operator_api"]["roles"]["read-only"]["arn"].rsplit("/", 1)[1]
    assert f"assumed-role/{read_only_role}/" in message
    assert run["after_ro_resolve"].json["exception"]["status"] == "open"


def test_finance_ops_resolves_with_an_audit_record(run: dict[str, Any]) -> None:
    no_note = run["fo_no_note"]
    assert no_note.status == 400
    assert "'note'" in no_note.json["message"]
    resolved = run["fo_resolve"]
    assert resolved.status == 200, resolved.text
    finance_role = run["describe"]["operator_api"]["roles"]["finance-ops"]["arn"].rsplit("/", 1)[1]
    by = f"arn:aws:sts::{config.ACCOUNT_ID}:assumed-role/{finance_role}/local-AKIAR2RLOCALFINANCE1"
    assert resolved.json["exception"]["status"] == "resolved"
    assert resolved.json["exception"]["resolved_by"] == by
    stored = run["stored"]
    assert (stored["status"], stored["resolved_by"]) == ("resolved", by)
    assert stored["resolution_note"] == "rate for Data Engineer added in the CRM"
    audit = run["after_resolve"].json["audit"]
    [record] = [a for a in audit if a["action"] == "resolved"]
    assert json.loads(record["detail"]) == {"by": by, "note": "rate for Data Engineer added in the CRM"}
    again = run["fo_resolve_again"]
    assert again.status == 409
    assert "not open" in again.json["message"]


def test_webhook_routes_are_not_behind_iam(run: dict[str, Any]) -> None:
    # Signed with the webhook secret only: rejected by the function on its content (400), not by IAM (403).
    assert run["webhook"].status == 400
