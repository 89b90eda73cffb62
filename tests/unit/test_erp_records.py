"""Request bodies: exact Decimal strings, references and sublists in NetSuite's shapes."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal

import pytest

from r2r_core.erp.records import (
    MAX_EXTERNAL_ID_LENGTH,
    InvoiceLine,
    customer_body,
    external_id,
    invoice_body,
    job_body,
    money_string,
    time_bill_body,
)


def test_customer_body() -> None:
    assert customer_body(
        "Acme Logistics plc", currency="usd", subsidiary_id="3", email="ap@acme.example"
    ) == {
        "companyName": "Acme Logistics plc",
        "isPerson": False,
        "currency": {"externalId": "USD"},
        "subsidiary": {"id": "3"},
        "email": "ap@acme.example",
    }
    assert customer_body("Acme", currency="EUR", currency_id="2") == {
        "companyName": "Acme",
        "isPerson": False,
        "currency": {"id": "2"},
    }


def test_job_body_refers_to_its_customer() -> None:
    body = job_body(
        "Acme cloud migration",
        customer_id="17",
        start_date=date(2026, 11, 2),
        end_date=date(2027, 3, 31),
        currency="GBP",
    )

    assert body == {
        "companyName": "Acme cloud migration",
        "parent": {"id": "17"},
        "startDate": "2026-11-02",
        "projectedEndDate": "2027-03-31",
        "currency": {"externalId": "GBP"},
    }
    with pytest.raises(ValueError, match="before"):
        job_body("x", customer_id="1", start_date=date(2026, 2, 1), end_date=date(2026, 1, 1), currency="USD")


def test_time_bill_body_keeps_hours_and_rate_exact() -> None:
    body = time_bill_body(
        job_id="5",
        employee_external_id="r2r-resource-res-maria-lopez",
        tran_date=date(2026, 11, 18),
        hours=Decimal("7.25"),
        rate=Decimal("162.5"),
        is_billable=True,
        item_id="9",
        memo="Cloud Engineer (NA)",
    )

    assert body == {
        "customer": {"id": "5"},
        "employee": {"externalId": "r2r-resource-res-maria-lopez"},
        "tranDate": "2026-11-18",
        "hours": "7.25",
        "isBillable": True,
        "rate": "162.50",
        "item": {"id": "9"},
        "memo": "Cloud Engineer (NA)",
    }


def test_time_bill_body_non_billable_without_rate_or_item() -> None:
    body = time_bill_body(
        job_id="5",
        employee_external_id="emp",
        tran_date=date(2026, 11, 20),
        hours=Decimal("2"),
        rate=None,
        is_billable=False,
        item_id=None,
        memo=None,
    )

    assert body == {
        "customer": {"id": "5"},
        "employee": {"externalId": "emp"},
        "tranDate": "2026-11-20",
        "hours": "2",
        "isBillable": False,
    }


def test_a_rate_finer_than_cents_is_not_rounded() -> None:
    body = time_bill_body(
        job_id="5", employee_external_id="e", tran_date=date(2026, 1, 1), hours=Decimal("1"),
        rate=Decimal("123.4567"), is_billable=True, item_id=None, memo=None,
    )  # fmt: skip

    assert body["rate"] == "123.4567"


@pytest.mark.parametrize("hours", [Decimal("0"), Decimal("-1")])
def test_time_bill_needs_positive_hours(hours: Decimal) -> None:
    with pytest.raises(ValueError, match="positive"):
        time_bill_body(job_id="5", employee_external_id="e", tran_date=date(2026, 1, 1), hours=hours,
                       rate=None, is_billable=False, item_id=None, memo=None)  # fmt: skip


def test_invoice_body_lines_are_exact_strings_with_the_currency_minor_units() -> None:
    lines = [
        InvoiceLine("11", "Cloud Engineer (NA)", Decimal("37.75"), Decimal("162.5"), Decimal("6134.38")),
        InvoiceLine("12", "Milestone: sign-off", Decimal("1"), Decimal("25000"), Decimal("25000")),
    ]

    body = invoice_body(
        customer_id="1", job_id="2", tran_date=date(2026, 11, 30), currency="USD", memo="r2r invoice inv-1",
        lines=lines,
    )  # fmt: skip

    assert body == {
        "entity": {"id": "1"},
        "job": {"id": "2"},
        "tranDate": "2026-11-30",
        "currency": {"externalId": "USD"},
        "memo": "r2r invoice inv-1",
        "item": {
            "items": [
                {"item": {"id": "11"}, "description": "Cloud Engineer (NA)", "quantity": "37.75",
                 "rate": "162.50", "amount": "6134.38"},
                {"item": {"id": "12"}, "description": "Milestone: sign-off", "quantity": "1",
                 "rate": "25000.00", "amount": "25000.00"},
            ]
        },
    }  # fmt: skip
    # No float anywhere: every number travels as a JSON string.
    assert not re.search(r":\s*-?\d", json.dumps(body))


def test_invoice_amounts_follow_the_currency() -> None:
    body = invoice_body(
        customer_id="1", job_id=None, tran_date=date(2026, 1, 1), currency="JPY", memo=None,
        lines=[InvoiceLine("1", "x", Decimal("3"), Decimal("1500"), Decimal("4500"))],
    )  # fmt: skip

    assert body["item"]["items"][0]["amount"] == "4500"
    assert "job" not in body
    assert money_string(Decimal("1.5"), "KWD") == "1.500"


def test_money_is_never_rounded_silently_and_floats_are_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        money_string(Decimal("10.005"), "USD")
    with pytest.raises(TypeError):
        money_string(10.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one line"):
        invoice_body(
            customer_id="1", job_id="2", tran_date=date(2026, 1, 1), currency="USD", memo=None, lines=[]
        )
    with pytest.raises(ValueError, match="ISO 4217"):
        customer_body("x", currency="dollars")


def test_external_id_plain() -> None:
    assert external_id("time", "te-0042_a") == "r2r-time-te-0042_a"


def test_external_id_sanitised_deterministic_and_distinct() -> None:
    dotted = external_id("invoice", "eng/acme.2026:ms 1")
    underscored = external_id("invoice", "eng_acme_2026_ms_1")

    assert re.fullmatch(r"[A-Za-z0-9_-]+", dotted)
    assert dotted.startswith("r2r-invoice-eng_acme_2026_ms_1-")
    assert dotted == external_id("invoice", "eng/acme.2026:ms 1")
    assert dotted != underscored


def test_long_external_ids_are_hashed_under_the_limit() -> None:
    first = external_id("time", "x" * 400 + "1")
    second = external_id("time", "x" * 400 + "2")

    assert len(first) <= MAX_EXTERNAL_ID_LENGTH < 255
    assert first != second
    assert re.fullmatch(r"[A-Za-z0-9_-]+", first)
    with pytest.raises(ValueError):
        external_id("time", "")
