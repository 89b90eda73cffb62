"""The NetSuite client against a real ERP sandbox on 127.0.0.1 (SQLite in a tmp dir)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import urllib3

from infra.erp_sandbox import ErpSandbox, SandboxCredentials
from r2r_core.erp import (
    ErpAuthError,
    ErpPermanentError,
    ErpTransientError,
    InvoiceLine,
    NetSuiteClient,
    TbaCredentials,
    customer_body,
    external_id,
    invoice_body,
    job_body,
    tba_authorization,
    time_bill_body,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
API = "/services/rest/record/v1"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[ErpSandbox]:
    erp = ErpSandbox(tmp_path / "erp.sqlite")
    erp.start()
    yield erp
    erp.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sandbox: ErpSandbox, sleeps: list[float]) -> NetSuiteClient:
    return NetSuiteClient(sandbox.url, sandbox.tba_credentials(), sleep=sleeps.append, read_timeout=5)


def raw(
    sandbox: ErpSandbox, method: str, path: str, body: Any = None, *, authorization: str | None = "sign"
) -> tuple[int, dict[str, str], Any]:
    """One signed (or deliberately unsigned) request, answered as (status, headers, JSON or None)."""
    url = f"{sandbox.url}{path}"
    headers = {"Content-Type": "application/json"}
    if authorization == "sign":
        headers["Authorization"] = tba_authorization(sandbox.tba_credentials(), method, url)
    elif authorization is not None:
        headers["Authorization"] = authorization
    payload = json.dumps(body).encode() if body is not None else None
    response = urllib3.request(method, url, body=payload, headers=headers, retries=False, timeout=5)
    document = json.loads(response.data, parse_float=Decimal) if response.data else None
    return response.status, dict(response.headers), document


def project(client: NetSuiteClient) -> tuple[str, str]:
    customer_id = client.upsert("customer", "r2r-customer-acme", customer_body("Acme", currency="USD"))
    job_id = client.upsert(
        "job",
        "r2r-job-acme-1",
        job_body("Acme cloud", customer_id=customer_id, start_date=date(2026, 11, 2), currency="USD"),
    )
    return customer_id, job_id


def time_bill(job_id: str, hours: str = "7.5", rate: str | None = "150") -> dict[str, Any]:
    return time_bill_body(
        job_id=job_id,
        employee_external_id="r2r-resource-maria",
        tran_date=date(2026, 11, 18),
        hours=Decimal(hours),
        rate=Decimal(rate) if rate else None,
        is_billable=rate is not None,
        item_id=None,
        memo="work",
    )


def an_invoice(customer_id: str, job_id: str, amount: str = "1125.00") -> dict[str, Any]:
    line = InvoiceLine("1", "Cloud Engineer", Decimal("7.5"), Decimal("150"), Decimal(amount))
    return invoice_body(
        customer_id=customer_id,
        job_id=job_id,
        tran_date=date(2026, 11, 30),
        currency="USD",
        memo="m",
        lines=[line],
    )


# ---- records ------------------------------------------------------------------------------------


def test_upsert_twice_keeps_one_record_with_the_latest_fields(
    sandbox: ErpSandbox, client: NetSuiteClient
) -> None:
    first = client.upsert("customer", "r2r-customer-acme", customer_body("Acme", currency="USD"))
    second = client.upsert(
        "customer", "r2r-customer-acme", customer_body("Acme Logistics plc", currency="USD")
    )

    assert first == second
    [record] = sandbox.records()["customer"]
    assert record["companyName"] == "Acme Logistics plc" and record["externalId"] == "r2r-customer-acme"
    assert client.get_by_external_id("customer", "r2r-customer-acme")["id"] == first


def test_invoice_round_trip_with_exact_money_and_computed_totals(
    sandbox: ErpSandbox, client: NetSuiteClient
) -> None:
    customer_id, job_id = project(client)
    lines = [
        InvoiceLine("1", "Cloud Engineer (NA)", Decimal("37.75"), Decimal("162.50"), Decimal("6134.38")),
        InvoiceLine("2", "Milestone", Decimal("1"), Decimal("25000"), Decimal("25000.00")),
    ]
    body = invoice_body(customer_id=customer_id, job_id=job_id, tran_date=date(2026, 11, 30), currency="USD",
                        memo="inv-1", lines=lines)  # fmt: skip

    invoice_id = client.upsert("invoice", "r2r-invoice-inv-1", body)
    fetched = client.get("invoice", invoice_id)

    assert fetched["total"] == Decimal("31134.38") and fetched["subtotal"] == Decimal("31134.38")
    assert [line["amount"] for line in fetched["item"]["items"]] == [Decimal("6134.38"), Decimal("25000.00")]
    assert fetched["entity"] == {"id": customer_id} and fetched["externalId"] == "r2r-invoice-inv-1"
    stored = sandbox.records()["invoice"][0]
    assert stored["total"] == "31134.38" and stored["item"]["items"][0]["rate"] == "162.50"


def test_create_then_get_and_list_in_pages(sandbox: ErpSandbox, client: NetSuiteClient) -> None:
    ids = [client.create("customer", {"externalId": f"c-{n}", "companyName": f"C{n}"}) for n in range(5)]

    assert ids == ["1", "2", "3", "4", "5"]
    assert client.get("customer", "3")["companyName"] == "C2"
    paged = NetSuiteClient(sandbox.url, sandbox.tba_credentials(), page_size=2)
    assert [item["id"] for item in paged.list("customer")] == ids
    status, _, page = raw(sandbox, "GET", f"{API}/customer?limit=2&offset=2")
    assert status == 200
    assert (page["count"], page["hasMore"], page["offset"], page["totalResults"]) == (2, True, 2, 5)
    assert page["items"][0] == {
        "links": [{"rel": "self", "href": f"{sandbox.url}{API}/customer/3"}],
        "id": "3",
    }
    assert {link["rel"] for link in page["links"]} >= {"self", "next", "previous"}


def test_post_answers_204_with_location_and_patch_delete_work(sandbox: ErpSandbox) -> None:
    status, headers, body = raw(sandbox, "POST", f"{API}/customer", {"companyName": "Raw"})
    assert (status, body) == (204, None)
    assert headers["Location"] == f"{sandbox.url}{API}/customer/1"

    assert raw(sandbox, "PATCH", f"{API}/customer/1", {"email": "ap@raw.example"})[0] == 204
    assert raw(sandbox, "GET", f"{API}/customer/1")[2]["email"] == "ap@raw.example"
    assert raw(sandbox, "DELETE", f"{API}/customer/1")[0] == 204
    status, _, error = raw(sandbox, "GET", f"{API}/customer/1")
    assert status == 404 and error["o:errorDetails"][0]["o:errorCode"] == "NONEXISTENT_ID"
    assert error["title"] == "Not Found" and error["status"] == 404


# ---- validation -------------------------------------------------------------------------------


def failure(call: Any) -> ErpPermanentError:
    with pytest.raises(ErpPermanentError) as caught:
        call()
    return caught.value


def test_validation_errors_name_the_field(client: NetSuiteClient) -> None:
    customer_id, job_id = project(client)

    zero_hours = failure(lambda: client.upsert("timeBill", "t-0", {**time_bill(job_id), "hours": "0"}))
    no_such_job = failure(
        lambda: client.upsert("timeBill", "t-1", {**time_bill(job_id), "customer": {"id": "999"}})
    )
    no_name = failure(lambda: client.upsert("customer", "c-x", {"email": "a@b.example"}))
    bad_amount = failure(
        lambda: client.upsert("invoice", "i-1", an_invoice(customer_id, job_id, amount="1125.01"))
    )
    no_lines = failure(
        lambda: client.upsert("invoice", "i-2", {"entity": {"id": customer_id}, "item": {"items": []}})
    )
    bad_date = failure(
        lambda: client.upsert("timeBill", "t-2", {**time_bill(job_id), "tranDate": "18/11/2026"})
    )
    bad_number = failure(lambda: client.upsert("timeBill", "t-3", {**time_bill(job_id), "hours": "seven"}))

    assert (zero_hours.status, zero_hours.code, zero_hours.error_path) == (400, "INVALID_CONTENT", "hours")
    assert (no_such_job.code, no_such_job.error_path) == ("INVALID_KEY_OR_REF", "customer")
    assert (no_name.code, no_name.error_path) == ("USER_ERROR", "companyName")
    assert (bad_amount.code, bad_amount.error_path) == ("INVALID_CONTENT", "item.items[0].amount")
    assert (no_lines.code, no_lines.error_path) == ("USER_ERROR", "item")
    assert (bad_date.error_path, bad_number.error_path) == ("tranDate", "hours")


def test_a_time_bill_must_point_at_a_job_not_a_customer(client: NetSuiteClient) -> None:
    _, job_id = project(client)
    # Ids are per type: make the customer's id one that no job has.
    client.upsert("customer", "other", customer_body("Other", currency="USD"))

    error = failure(lambda: client.upsert("timeBill", "t", {**time_bill(job_id), "customer": {"id": "2"}}))

    assert (error.code, error.error_path) == ("INVALID_KEY_OR_REF", "customer")


def test_bad_external_id_and_unknown_type_over_the_wire(sandbox: ErpSandbox) -> None:
    status, _, error = raw(sandbox, "PUT", f"{API}/customer/eid:bad.id", {"companyName": "x"})
    assert status == 400 and error["o:errorDetails"][0]["o:errorPath"] == "externalId"
    assert raw(sandbox, "GET", f"{API}/salesOrderX/1")[0] == 404
    assert raw(sandbox, "PUT", f"{API}/customer/1", {"companyName": "x"})[0] == 405


# ---- authentication ---------------------------------------------------------------------------


def test_a_bad_signature_is_401_invalid_login(sandbox: ErpSandbox) -> None:
    good = sandbox.tba_credentials()
    wrong = TbaCredentials(account_id=good.account_id, consumer_key=good.consumer_key,
                           consumer_secret=good.consumer_secret, token_id=good.token_id,
                           token_secret="not-the-secret")  # fmt: skip
    client = NetSuiteClient(sandbox.url, wrong, sleep=lambda _: None)

    with pytest.raises(ErpAuthError) as caught:
        client.upsert("customer", "c", customer_body("Acme", currency="USD"))
    assert (caught.value.status, caught.value.code) == (401, "INVALID_LOGIN")
    assert sandbox.records()["customer"] == []

    status, _, body = raw(sandbox, "GET", f"{API}/customer/1", authorization=None)
    assert status == 401 and body["title"] == "Unauthorized"
    assert body["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"
    assert sandbox.stats()["auth_failures"] == 2


def test_a_replayed_request_is_refused(sandbox: ErpSandbox) -> None:
    url = f"{sandbox.url}{API}/customer?limit=5"
    header = tba_authorization(sandbox.tba_credentials(), "GET", url)

    assert raw(sandbox, "GET", f"{API}/customer?limit=5", authorization=header)[0] == 200
    assert raw(sandbox, "GET", f"{API}/customer?limit=5", authorization=header)[0] == 401


def test_sandbox_takes_an_erp_credentials_shaped_dict(tmp_path: Path) -> None:
    secret = {"account_id": "1234567_SB1", "auth": "tba", "consumer_key": "k", "consumer_secret": "s",
              "token_id": "t", "token_secret": "u"}  # fmt: skip
    with ErpSandbox(tmp_path / "erp.sqlite", credentials=secret) as erp:
        assert erp.account_id == "1234567_SB1" and erp.credentials == SandboxCredentials("k", "s", "t", "u")
        client = NetSuiteClient(erp.url, TbaCredentials.from_secret_json(json.dumps(secret)))
        assert client.upsert("customer", "c", customer_body("A", currency="USD")) == "1"


# ---- faults -----------------------------------------------------------------------------------


def test_429s_then_success_are_absorbed_honouring_retry_after(
    sandbox: ErpSandbox, client: NetSuiteClient, sleeps: list[float]
) -> None:
    sandbox.set_faults({"rules": [{"status": 429, "method": "PUT", "count": 2, "retry_after": 1}]})

    client.upsert("customer", "c", customer_body("Acme", currency="USD"))

    assert sleeps == [1.0, 1.0]
    assert len(sandbox.records()["customer"]) == 1
    stats = sandbox.stats()
    assert stats["throttled"] == 2 and stats["by_status"]["204"] == 1


def test_persistent_500_exhausts_the_attempts_and_writes_nothing(
    sandbox: ErpSandbox, client: NetSuiteClient, sleeps: list[float]
) -> None:
    sandbox.set_faults({"rules": [{"status": 500, "method": "PUT"}]})

    with pytest.raises(ErpTransientError) as caught:
        client.upsert("customer", "c", customer_body("Acme", currency="USD"))

    assert caught.value.status == 500 and caught.value.code == "UNEXPECTED_ERROR"
    requests = {(r["method"], r["status"]): r["count"] for r in sandbox.stats()["requests"]}
    # Six PUTs; before each retry the client looked for the record (a 500 may follow a commit).
    assert requests == {("PUT", "500"): 6, ("GET", "404"): 5}
    assert len(sleeps) == 5 and sandbox.records()["customer"] == []


def test_one_500_then_success_lands_once(sandbox: ErpSandbox, client: NetSuiteClient) -> None:
    sandbox.set_faults({"rules": [{"status": 503, "count": 1, "method": "PUT"}]})

    client.upsert("customer", "c", customer_body("Acme", currency="USD"))

    assert len(sandbox.records()["customer"]) == 1


def test_a_permanent_code_fault_is_raised_at_once(sandbox: ErpSandbox, client: NetSuiteClient) -> None:
    customer_id, job_id = project(client)
    sandbox.add_fault(
        {"status": "CLOSED_PERIOD", "record_type": "invoice", "detail": "Period Nov 2026 is closed."}
    )

    error = failure(lambda: client.upsert("invoice", "i", an_invoice(customer_id, job_id)))

    assert (error.status, error.code, error.detail) == (400, "CLOSED_PERIOD", "Period Nov 2026 is closed.")
    assert sandbox.stats()["by_record_type"]["invoice"] == 1


def test_closed_periods_by_date_and_by_record(sandbox: ErpSandbox, client: NetSuiteClient) -> None:
    customer_id, job_id = project(client)
    client.upsert("timeBill", "t-open", time_bill(job_id))
    sandbox.mark_closed("timeBill", external_id="t-open")

    locked = failure(lambda: client.upsert("timeBill", "t-open", time_bill(job_id, hours="8")))
    sandbox.set_faults({"closed_before": "2026-12-01"})
    late = failure(lambda: client.upsert("invoice", "i", an_invoice(customer_id, job_id)))

    assert (locked.code, late.code, late.error_path) == ("CLOSED_PERIOD", "CLOSED_PERIOD", "tranDate")


WRITES = {
    "customer": lambda ids: customer_body("Dropped Co", currency="USD"),
    "job": lambda ids: job_body("Dropped", customer_id=ids[0], start_date=date(2026, 1, 1), currency="USD"),
    "timeBill": lambda ids: time_bill(ids[1]),
    "invoice": lambda ids: an_invoice(ids[0], ids[1]),
    "creditMemo": lambda ids: an_invoice(ids[0], ids[1]),
    "expenseReport": lambda ids: {"entity": {"externalId": "r2r-resource-maria"}, "tranDate": "2026-11-20",
                                  "expense": {"items": [{"amount": "42.10", "category": {"id": "3"}}]}},
    "employee": lambda ids: {"firstName": "Maria", "lastName": "Lopez"},
}  # fmt: skip


@pytest.mark.parametrize("record_type", list(WRITES))
def test_commit_then_drop_creates_exactly_one_record(
    sandbox: ErpSandbox, client: NetSuiteClient, record_type: str
) -> None:
    ids = project(client)
    before = len(sandbox.records()[record_type])
    sandbox.set_faults(
        {"rules": [{"mode": "commit_then_drop", "record_type": record_type, "method": "PUT", "count": 1}]}
    )
    eid = external_id(record_type, "dropped-1")

    internal_id = client.upsert(record_type, eid, WRITES[record_type](ids))

    records = sandbox.records()[record_type]
    assert len(records) == before + 1
    [record] = [r for r in records if r["externalId"] == eid]
    assert record["id"] == internal_id
    stats = sandbox.stats()
    assert stats["dropped"] == 1
    assert ("PUT", record_type, "dropped") in {
        (r["method"], r["record_type"], r["status"]) for r in stats["requests"]
    }


def test_commit_then_drop_on_a_post_with_external_id_does_not_post_twice(
    sandbox: ErpSandbox, client: NetSuiteClient
) -> None:
    sandbox.set_faults({"rules": [{"mode": "commit_then_drop", "method": "POST", "count": 1}]})

    internal_id = client.create("customer", {"externalId": "r2r-customer-post", "companyName": "Posted"})

    assert [r["id"] for r in sandbox.records()["customer"]] == [internal_id]


def test_commit_then_read_timeout_creates_exactly_one_record(sandbox: ErpSandbox) -> None:
    impatient = NetSuiteClient(sandbox.url, sandbox.tba_credentials(), read_timeout=0.2, sleep=lambda _: None)
    sandbox.set_faults(
        {"rules": [{"mode": "commit_then_delay", "delay_ms": 600, "method": "PUT", "count": 1}]}
    )

    internal_id = impatient.upsert("customer", "r2r-customer-slow", customer_body("Slow", currency="USD"))

    assert [r["id"] for r in sandbox.records()["customer"]] == [internal_id]


def test_over_the_concurrency_limit_every_write_still_lands(sandbox: ErpSandbox) -> None:
    _, job_id = project(NetSuiteClient(sandbox.url, sandbox.tba_credentials()))
    sandbox.set_faults({"concurrency_limit": 2, "latency_ms": 40})
    client = NetSuiteClient(
        sandbox.url, sandbox.tba_credentials(), base_delay=0.02, max_delay=0.2, max_attempts=20
    )
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def post(n: int) -> None:
        start.wait()
        try:
            client.upsert("timeBill", f"r2r-time-{n}", time_bill(job_id))
        except BaseException as exc:  # collected for the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)

    assert failures == []
    assert len(sandbox.records()["timeBill"]) == 8
    stats = sandbox.stats()
    assert stats["throttled"] > 0 and stats["peak_in_flight"] <= 2 and stats["peak_offered"] > 2
    status, _, body = raw(sandbox, "GET", "/_sandbox/stats", authorization=None)
    assert status == 200 and body["throttled"] == stats["throttled"]


def test_the_concurrency_429_has_netsuites_body(sandbox: ErpSandbox) -> None:
    sandbox.set_faults({"rules": [{"status": 429, "count": 1, "retry_after": 2}]})

    status, headers, body = raw(sandbox, "GET", f"{API}/customer")

    assert status == 429 and headers["Retry-After"] == "2"
    assert body["o:errorDetails"][0]["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
    assert body["title"] == "Too Many Requests"


def test_probability_faults_are_deterministic_for_a_seed(sandbox: ErpSandbox) -> None:
    def run() -> list[int]:
        sandbox.set_faults({"seed": 42, "rules": [{"status": 503, "probability": 0.5}]})
        return [raw(sandbox, "GET", f"{API}/customer")[0] for _ in range(12)]

    first, second = run(), run()

    assert first == second and set(first) == {200, 503}


# ---- control endpoints, restart, CLI ----------------------------------------------------------


def test_control_endpoints_over_http(sandbox: ErpSandbox, client: NetSuiteClient) -> None:
    client.upsert("customer", "c", customer_body("Acme", currency="USD"))
    config = {
        "seed": 1,
        "rules": [{"status": "INVALID_CONTENT", "record_type": "job", "count": 1}],
        "latency_ms": 0,
    }

    status, _, faults = raw(sandbox, "POST", "/_sandbox/faults", config, authorization=None)
    assert status == 200 and faults["rules"][0]["status"] == "INVALID_CONTENT"
    assert (
        raw(sandbox, "POST", "/_sandbox/faults", {"rules": [{"mode": "explode"}]}, authorization=None)[0]
        == 400
    )
    assert raw(sandbox, "GET", "/_sandbox/faults", authorization=None)[2]["rules"][0]["count"] == 1
    status, _, records = raw(sandbox, "GET", "/_sandbox/records", authorization=None)
    assert status == 200 and records["customer"][0]["companyName"] == "Acme"
    assert set(records) >= {
        "customer",
        "job",
        "timeBill",
        "invoice",
        "expenseReport",
        "creditMemo",
        "employee",
    }

    assert raw(sandbox, "POST", "/_sandbox/reset", authorization=None)[0] == 204
    assert sandbox.records()["customer"] == [] and sandbox.faults.snapshot()["rules"] == []
    assert sandbox.stats()["total"] == 0


def test_restart_on_the_same_file_keeps_the_records(tmp_path: Path) -> None:
    db = tmp_path / "erp.sqlite"
    with ErpSandbox(db) as first:
        client = NetSuiteClient(first.url, first.tba_credentials())
        customer_id, job_id = project(client)
        bill_id = client.upsert("timeBill", "r2r-time-1", time_bill(job_id))

    with ErpSandbox(db) as second:
        client = NetSuiteClient(second.url, second.tba_credentials())
        assert client.get_by_external_id("timeBill", "r2r-time-1")["id"] == bill_id
        assert client.get("timeBill", bill_id)["hours"] == Decimal("7.5")
        assert client.get("job", job_id)["parent"] == {"id": customer_id}
        # Internal ids keep counting up after a restart.
        assert client.upsert("timeBill", "r2r-time-2", time_bill(job_id)) == str(int(bill_id) + 1)


def test_the_sandbox_only_binds_to_loopback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        ErpSandbox(tmp_path / "erp.sqlite", host="0.0.0.0")


def test_python_dash_m_runs_it_in_the_foreground(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.erp_sandbox", "--port", "0", "--db", str(tmp_path / "erp.sqlite")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split()[3]
        assert url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 5
        while True:
            try:
                health = urllib3.request("GET", f"{url}/_sandbox/health", timeout=1, retries=False)
                break
            except urllib3.exceptions.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert health.status == 200 and health.json()["account_id"] == "TSTDRV1234567"
    finally:
        process.terminate()
        process.wait(timeout=5)
    assert process.returncode == 0
