"""The account mapping on the invoice the workflow writes; refused ERP writes as exceptions for finance."""

from __future__ import annotations

import json
from typing import Any

import pytest

from r2r_core.erp import ErpPermanentError, error_from_response
from r2r_core.erp.mapping import ErpMapping
from r2r_core.flows.exceptions import record_event_failure, record_execution_failure
from tests.integration.test_billing_flows import (  # the same moto tables and scenario helpers
    complete_milestone,
    envelope,
    ports,  # noqa: F401 - a fixture
    post,
    set_up,
)

MAPPING = ErpMapping.from_secret(
    {
        "mapping": {
            "subsidiary_id": "3",
            "items": {"time": "20", "milestone": "21"},
            "service_items_by_role": {"Cloud Engineer": "31"},
            "departments": {"EMEA": "4"},
            "classes": {"Cloud Services": "7"},
            "locations": {"EMEA": "2"},
            "tax_codes": {"GB": "11"},
        }
    }
)


def test_the_invoice_carries_the_accounts_subsidiary_items_segments_and_tax_code(
    ports: dict[str, Any],  # noqa: F811
) -> None:
    ports["steps"].mapping = MAPPING
    set_up(ports)
    post(ports, "12-time-maria-lopez-2026-11-16.json")  # Cloud Engineer
    post(ports, "02-time-priya-sharma-2026-11-16.json")  # Solution Architect

    state = complete_milestone(ports)

    [invoice] = ports["erp"].of_type("invoice")
    assert invoice["subsidiary"] == {"id": "3"}
    assert (invoice["department"], invoice["class"], invoice["location"]) == (
        {"id": "4"},
        {"id": "7"},
        {"id": "2"},
    )
    lines = invoice["item"]["items"]
    assert [line["item"]["id"] for line in lines] == ["31", "20", "21"]  # by role, by kind, milestone
    assert {line["taxCode"]["id"] for line in lines} == {"11"}  # the client bills from GB
    assert state["invoice_total"] == "27858.13"  # the mapping changes no amount


def netsuite_refusal(code: str, path: str, detail: str) -> ErpPermanentError:
    body = {"status": 400, "o:errorDetails": [{"detail": detail, "o:errorCode": code, "o:errorPath": path}]}
    error = error_from_response(400, json.dumps(body).encode())
    assert isinstance(error, ErpPermanentError)
    return error


@pytest.mark.parametrize(
    ("code", "path", "detail"),
    [
        ("INVALID_CONTENT", "hours", "The field hours must be greater than 0."),
        ("INVALID_KEY_OR_REF", "item", "Invalid item reference key 99."),
        ("CLOSED_PERIOD", "tranDate", "The accounting period of this transaction is closed."),
        ("USER_ERROR", "taxCode", "Tax code is required for this subsidiary."),
    ],
)
def test_a_refused_erp_write_is_an_exception_with_netsuites_code_path_and_detail(
    ports: dict[str, Any],  # noqa: F811
    code: str,
    path: str,
    detail: str,
) -> None:
    set_up(ports)
    event = envelope("12-time-maria-lopez-2026-11-16.json")

    created = record_event_failure(
        event,
        netsuite_refusal(code, path, detail),
        store=ports["store"],
        audit=ports["audit"],
        stage="time_posting",
    )

    assert created is True
    [record] = ports["store"].exceptions()
    assert record["erp_error_code"] == code
    assert record["erp_error_path"] == path
    assert record["erp_error_detail"] == detail
    assert record["engagement_id"] == "eng-acme-cloud-2026"


def test_a_failed_invoice_execution_keeps_the_erp_code_path_and_detail(ports: dict[str, Any]) -> None:  # noqa: F811
    error = netsuite_refusal("INVALID_KEY_OR_REF", "item", "Invalid item reference key 99.")
    cause = json.dumps({"errorType": "ErpPermanentError", "errorMessage": str(error)})
    event = {
        "detail": {
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:m2i:eng-1-ms-1",
            "status": "FAILED",
            "error": "ErpPermanentError",
            "cause": cause,
            "input": json.dumps({"engagement_id": "eng-acme-cloud-2026", "milestone_id": "ms-1"}),
        }
    }

    assert record_execution_failure(event, store=ports["store"], audit=ports["audit"]) is True

    [record] = ports["store"].exceptions()
    assert (record["erp_error_code"], record["erp_error_path"]) == ("INVALID_KEY_OR_REF", "item")
    assert record["erp_error_detail"] == "Invalid item reference key 99."
    assert record["erp_status"] == 400
