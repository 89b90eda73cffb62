"""Per-account mapping (subsidiary, items, segments, tax codes), credit memo bodies, error details."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from r2r_core.erp import InvoiceLine, error_from_response
from r2r_core.erp.errors import error_details_from_message
from r2r_core.erp.mapping import ErpMapping
from r2r_core.erp.records import credit_memo_body, invoice_body

SECRET = {
    "account_id": "123_SB1",
    "items": {"default": "9"},  # legacy top-level key, still read
    "mapping": {
        "subsidiary_id": 3,
        "items": {"time": "20", "milestone": "21"},
        "service_items_by_role": {"Cloud Engineer": "31"},
        "departments": {"EMEA": "4", "Cloud Services": "5"},
        "classes": {"Cloud Services": "7"},
        "locations": {"EMEA": "2"},
        "tax_codes": {"GB": "11", "default": "10"},
        "currency_ids": {"EUR": "2"},
    },
}


def test_mapping_from_the_secret_picks_items_segments_and_tax_codes() -> None:
    mapping = ErpMapping.from_secret(json.dumps(SECRET))

    assert mapping.subsidiary_id == "3"
    assert mapping.item_for("time", "Cloud Engineer") == "31"  # by role
    assert mapping.item_for("time", "Solution Architect") == "20"  # by kind
    assert mapping.item_for("milestone") == "21"
    assert mapping.item_for("expense") == "9"  # the legacy default, under the nested items
    assert mapping.segments("EMEA", "Cloud Services").as_fields() == {
        "department": {"id": "4"},  # region wins over business unit
        "class": {"id": "7"},
        "location": {"id": "2"},
    }
    assert mapping.segments("APAC", "Cloud Services").as_fields() == {
        "department": {"id": "5"},
        "class": {"id": "7"},
    }
    assert mapping.tax_code_for("gb") == "11"
    assert mapping.tax_code_for("US") == "10"
    assert mapping.currency_id("eur") == "2" and mapping.currency_id("USD") is None


def test_legacy_items_are_used_when_no_mapping_is_given_and_nothing_means_item_1() -> None:
    legacy = ErpMapping.from_secret({"items": {"time": "20", "default": "9"}})
    assert legacy.item_for("milestone") == "9"
    assert ErpMapping().item_for("time") == "1"
    assert ErpMapping().segments("EMEA", None).as_fields() == {}
    assert ErpMapping().tax_code_for("GB") is None


def test_a_bad_mapping_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"mapping configuration is invalid at: items"):
        ErpMapping.from_secret({"mapping": {"items": ["20"]}})


def line(amount: str, tax: str | None = None) -> InvoiceLine:
    return InvoiceLine("31", "Cloud Engineer", Decimal("2"), Decimal(amount) / 2, Decimal(amount), tax)


def test_invoice_body_carries_subsidiary_segments_and_line_tax_codes() -> None:
    body = invoice_body(
        customer_id="1",
        job_id="2",
        tran_date=date(2026, 11, 30),
        currency="EUR",
        currency_id="2",
        memo="m",
        lines=[line("300.00", "11")],
        subsidiary_id="3",
        segments={"department": {"id": "4"}, "class": {"id": "7"}},
    )

    assert body["subsidiary"] == {"id": "3"}
    assert body["department"] == {"id": "4"} and body["class"] == {"id": "7"}
    assert "location" not in body
    assert body["currency"] == {"id": "2"}
    assert body["item"]["items"][0]["taxCode"] == {"id": "11"}
    with pytest.raises(ValueError, match="unknown segments"):
        invoice_body(
            customer_id="1",
            job_id=None,
            tran_date=date(2026, 11, 30),
            currency="EUR",
            memo=None,
            lines=[line("300.00")],
            segments={"region": {"id": "1"}},
        )


def test_credit_memo_body_credits_an_invoice_with_positive_lines() -> None:
    body = credit_memo_body(
        customer_id="1",
        job_id="2",
        tran_date=date(2026, 12, 5),
        currency="USD",
        memo="credit for te-1 v1",
        lines=[line("1178.13")],
        invoice_id="17",
    )

    assert body["createdFrom"] == {"id": "17"}
    assert body["entity"] == {"id": "1"} and body["job"] == {"id": "2"}
    assert body["item"]["items"][0]["amount"] == "1178.13"
    assert "taxCode" not in body["item"]["items"][0]
    with pytest.raises(ValueError, match="positive"):
        credit_memo_body(
            customer_id="1",
            job_id=None,
            tran_date=date(2026, 12, 5),
            currency="USD",
            memo=None,
            lines=[line("-10.00")],
        )


def test_the_error_message_carries_code_path_and_detail_across_a_lambda_boundary() -> None:
    body = {
        "status": 400,
        "o:errorDetails": [
            {
                "detail": "Invalid item reference key 99.",
                "o:errorCode": "INVALID_KEY_OR_REF",
                "o:errorPath": "item",
            }
        ],
    }
    error = error_from_response(400, json.dumps(body).encode())

    assert str(error) == "NetSuite answered 400 INVALID_KEY_OR_REF at item: Invalid item reference key 99."
    assert error_details_from_message(str(error)) == {
        "erp_status": 400,
        "erp_error_code": "INVALID_KEY_OR_REF",
        "erp_error_path": "item",
        "erp_error_detail": "Invalid item reference key 99.",
    }
    assert error_details_from_message("NetSuite answered 503")["erp_error_code"] is None
    assert error_details_from_message("something else") == {}
