"""PII masking in the structured logs: the function logger and the module loggers under it."""

from __future__ import annotations

import io
import json

import pytest
from aws_lambda_powertools import Logger

from r2r_core.telemetry import MASK, mask_pii, mask_text, service_logger


def test_module_loggers_of_a_function_are_masked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # The level a Lambda function runs at; other tests may leave the process at another one.
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    monkeypatch.delenv("AWS_LAMBDA_LOG_LEVEL", raising=False)
    buffer = io.StringIO()
    service_logger("r2r-test-masking", stream=buffer).setLevel("INFO")
    child = Logger(service="r2r-test-masking", child=True)  # what every r2r_core module holds
    child.setLevel("INFO")  # as deployed (POWERTOOLS_LOG_LEVEL=INFO), whatever level earlier tests left

    child.info(
        "worker synced",
        extra={
            "resource_id": "res-ada-king",
            "worker": {"Legal_First_Name": "Ada", "Legal_Last_Name": "King", "Email_Address": "ada@acme.io"},
            "contacts": [{"name": "Ada King", "phone": "+44 20 7946 0958"}],
        },
    )
    try:
        raise ValueError("Resource(id='res-ada-king', name='Ada King') rejected for ada@acme.io")
    except ValueError:
        child.exception("sync failed", extra={"resource_id": "res-ada-king"})

    text = buffer.getvalue()
    for secret in ("Ada", "King'", "ada@acme.io", "7946"):
        assert secret not in text.replace("res-ada-king", ""), secret
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["resource_id"] == "res-ada-king" and first["worker"]["Email_Address"] == MASK
    assert first["contacts"] == [{"name": MASK, "phone": MASK}]
    assert second["exception_name"] == "ValueError" and "res-ada-king" in second["exception"]


def test_text_masking_keeps_dates_amounts_and_ids() -> None:
    text = 'te-maria-lopez-2026-11-16 hours 7.25 on 2026-11-16, amount 43969.38, "email": "m@x.org"'
    assert (
        mask_text(text)
        == f'te-maria-lopez-2026-11-16 hours 7.25 on 2026-11-16, amount 43969.38, "email": "{MASK}"'
    )
    assert mask_text("call (415) 555-0100 or +1 415 555 0100") == f"call {MASK} or {MASK}"
    assert mask_pii({"name": None, "email": "", "id": "x"}) == {"name": None, "email": "", "id": "x"}
