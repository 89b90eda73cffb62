"""Commit-then-timeout for every record type r2r writes, with the bodies our record builders make.

The sandbox commits the write, then answers only after the client has given up (a read timeout):
the retry must find the record by external id and not create a second one, whether the write was
a create or an update of an existing record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infra.erp_sandbox import ErpSandbox
from r2r_core.erp import InvoiceLine, NetSuiteClient, customer_body, external_id, job_body, time_bill_body
from r2r_core.erp.records import credit_memo_body, expense_report_body, invoice_body


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[ErpSandbox]:
    with ErpSandbox(tmp_path / "erp.sqlite") as erp:
        yield erp


def lines(amount: str) -> list[InvoiceLine]:
    return [InvoiceLine("1", "Cloud Engineer", Decimal("2"), Decimal(amount) / 2, Decimal(amount))]


Ids = dict[str, str]
BUILDERS: dict[str, Callable[[Ids, str], dict[str, Any]]] = {
    "customer": lambda ids, v: customer_body(f"Acme {v}", currency="USD"),
    "job": lambda ids, v: job_body(
        f"Cloud {v}", customer_id=ids["customer"], start_date=date(2026, 11, 2), currency="USD"
    ),
    "timeBill": lambda ids, v: time_bill_body(
        job_id=ids["job"], employee_external_id="r2r-resource-maria", tran_date=date(2026, 11, 18),
        hours=Decimal(v), rate=Decimal("162.50"), is_billable=True, item_id=None, memo="work",
    ),
    "expenseReport": lambda ids, v: expense_report_body(
        employee_external_id="r2r-resource-maria", job_id=ids["job"], tran_date=date(2026, 11, 19),
        amount=Decimal(v), currency="USD", is_billable=True, category_id="3", memo="travel",
    ),
    "invoice": lambda ids, v: invoice_body(
        customer_id=ids["customer"], job_id=ids["job"], tran_date=date(2026, 11, 30), currency="USD",
        memo="r2r invoice", lines=lines(v),
    ),
    "creditMemo": lambda ids, v: credit_memo_body(
        customer_id=ids["customer"], job_id=ids["job"], tran_date=date(2026, 12, 5), currency="USD",
        memo="r2r credit", lines=lines(v), invoice_id=ids["invoice"],
    ),
}  # fmt: skip
FIRST = {"timeBill": ("7.25", "8"), "expenseReport": ("42.10", "55.00")}


def values(record_type: str) -> tuple[str, str]:
    return FIRST.get(record_type, ("1200.00", "1500.00"))


def base_records(client: NetSuiteClient) -> Ids:
    ids = {"customer": client.upsert("customer", "r2r-customer-base", customer_body("Base", currency="USD"))}
    ids["job"] = client.upsert(
        "job",
        "r2r-job-base",
        job_body("Base", customer_id=ids["customer"], start_date=date(2026, 11, 2), currency="USD"),
    )
    ids["invoice"] = client.upsert("invoice", "r2r-invoice-base", BUILDERS["invoice"](ids, "100.00"))
    return ids


@pytest.mark.parametrize("record_type", list(BUILDERS))
@pytest.mark.parametrize("existing", [False, True], ids=["create", "update"])
def test_commit_then_timeout_writes_exactly_once(
    sandbox: ErpSandbox, record_type: str, existing: bool
) -> None:
    setup = NetSuiteClient(sandbox.url, sandbox.tba_credentials())
    ids = base_records(setup)
    first, second = values(record_type)
    eid = external_id(record_type, "slow-1")
    if existing:
        setup.upsert(record_type, eid, BUILDERS[record_type](ids, first))
    before = len(sandbox.records()[record_type])
    requests_before = counts(sandbox, record_type)
    impatient = NetSuiteClient(
        sandbox.url, sandbox.tba_credentials(), read_timeout=0.25, sleep=lambda _: None
    )
    sandbox.set_faults(
        {
            "rules": [
                {
                    "mode": "commit_then_delay",
                    "delay_ms": 700,
                    "record_type": record_type,
                    "method": "PUT",
                    "count": 1,
                }
            ]
        }
    )
    body = BUILDERS[record_type](ids, second if existing else first)

    internal_id = impatient.upsert(record_type, eid, body)

    records = sandbox.records()[record_type]
    assert len(records) == before + (0 if existing else 1)
    [record] = [r for r in records if r.get("externalId") == eid]
    assert record["id"] == internal_id
    deadline = time.monotonic() + 5
    while sandbox.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    sent = {key: n - requests_before.get(key, 0) for key, n in counts(sandbox, record_type).items()}
    # one (slow) PUT, then one GET by external id that found the write applied: no second PUT
    assert {key: n for key, n in sent.items() if n} == {("PUT", "204"): 1, ("GET", "200"): 1}


def counts(sandbox: ErpSandbox, record_type: str) -> dict[tuple[str, str], int]:
    return {
        (r["method"], r["status"]): r["count"]
        for r in sandbox.stats()["requests"]
        if r["record_type"] == record_type
    }
