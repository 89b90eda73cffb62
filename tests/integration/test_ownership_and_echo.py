"""System of record at the shared consumer, echo suppression of r2r's own Salesforce writes, and PII
masking in the functions' logs (moto tables, the real handler modules)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from r2r_core.connectors.directory import StateDirectory
from r2r_core.connectors.salesforce import parse_outbound_message
from r2r_core.echo import last_write_of_record
from r2r_core.erp.mapping import ErpMapping
from r2r_core.flows.invoice_status import OPPORTUNITY, write_back_invoice_status
from r2r_core.flows.salesforce_outbound import accept_notification
from r2r_core.model.entities import InvoiceStatusChange
from r2r_core.model.events import EventEnvelope, WebhookPayload, build_envelope, event_type
from r2r_core.runtime import reset_clients, use_environ
from r2r_core.state import AuditLog, StateStore
from tests.conftest import REPO_ROOT, create_state_and_audit_tables

ORG = "00D5g000004XyZaEAK"
INTEGRATION_USER = "005000000000001AAA"
RESOURCE_SAMPLE = json.loads((REPO_ROOT / "events" / "samples" / "resource.upserted.json").read_text())


@dataclass
class Context:
    function_name: str = "fn"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:fn"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[EventEnvelope] = []

    def publish(self, envelope: EventEnvelope) -> None:
        self.published.append(envelope)


@pytest.fixture
def tables() -> Iterator[dict[str, Any]]:
    with mock_aws():
        reset_clients()
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_and_audit_tables(ddb)
        with use_environ(
            {"STATE_TABLE_NAME": "state", "AUDIT_TABLE_NAME": "audit", "AWS_REGION": "us-east-1"}
        ):
            yield {"store": StateStore("state", ddb), "audit": AuditLog("audit", ddb)}
        reset_clients()


def resource_envelope(source_system: str, delivery: str) -> EventEnvelope:
    payload = WebhookPayload.model_validate(RESOURCE_SAMPLE)
    record = event_type(payload.type).data_model.model_validate(payload.data)
    return build_envelope(source_system=source_system, delivery_id=delivery, payload=payload, record=record)


def sqs_event(*envelopes: EventEnvelope) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{n}",
                "receiptHandle": f"rh{n}",
                "body": json.dumps(
                    {
                        "version": "0",
                        "id": f"e{n}",
                        "detail-type": e.type,
                        "source": "r2r.canonical",
                        "detail": e.model_dump(mode="json"),
                    }
                ),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ResourceSyncQueue",
                "awsRegion": "us-east-1",
            }
            for n, e in enumerate(envelopes)
        ]
    }


def load_fresh(name: str, **env: str) -> ModuleType:
    """Import ``functions/<name>/handler.py`` afresh with ``env`` set while it is decorated."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        module_name = f"r2r_fn_test_fresh_{name}_{len(sys.modules)}"
        spec = importlib.util.spec_from_file_location(
            module_name, REPO_ROOT / "functions" / name / "handler.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---- the shared consumer -----------------------------------------------------------------------------


def test_the_consumer_ignores_a_non_owner_update_with_an_audit_record_and_applies_the_owners(
    tables: dict[str, Any],
) -> None:
    handler = load_fresh("resource_sync")
    erp = RecordingErp()
    # resource_sync also keeps the ERP employee record (a copy of the HRIS worker): a recording ERP here.
    handler.erp_client = lambda *_args: erp  # type: ignore[attr-defined]
    handler.erp_mapping = lambda *_args: ErpMapping()  # type: ignore[attr-defined]
    store, audit = tables["store"], tables["audit"]
    from_crm = resource_envelope("crm", "crm-1")  # worker identity and cost rate belong to the HRIS

    answer = handler.handler(sqs_event(from_crm), Context())

    assert answer == {"batchItemFailures": []}  # acknowledged: never retried, never applied
    assert store.get("RES#res-maria-lopez", "HRIS") is None
    [record] = audit.history("ownership", "resource.upserted#res-maria-lopez")
    assert record["action"] == "ignored_not_owner" and record["event_id"] == from_crm.event_id
    detail = json.loads(record["detail"]) if isinstance(record["detail"], str) else record["detail"]
    assert detail["path"] == "consumer:resource_sync" and detail["source_system"] == "crm"
    assert {"field": "cost_rate", "owner": "HRIS"} in detail["not_owned"]

    from_workday = resource_envelope("workday", "wd-1")
    assert handler.handler(sqs_event(from_workday), Context()) == {"batchItemFailures": []}
    stored = store.get("RES#res-maria-lopez", "HRIS")
    assert stored is not None and stored["source_system"] == "workday" and stored["status"] == "active"
    # Only the owner's update reached the ERP employee record.
    assert [(t, eid) for t, eid, _ in erp.upserts] == [("employee", "r2r-resource-res-maria-lopez")]


class RecordingErp:
    def __init__(self) -> None:
        self.upserts: list[tuple[str, str, dict[str, Any]]] = []

    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str:
        self.upserts.append((record_type, external_id, body))
        return str(len(self.upserts))

    def update(self, record_type: str, record_id: str, body: dict[str, Any]) -> None:
        self.upserts.append((record_type, record_id, body))


# ---- echo suppression ----------------------------------------------------------------------------------


OPPORTUNITY_XML = (REPO_ROOT / "events" / "salesforce" / "01-opportunity-closed-won.xml").read_bytes()
OPPORTUNITY_ID = "0065g00000Gx7bQAAS"  # the Id in that message


def notification_data(fields: dict[str, Any], notification_id: str) -> dict[str, Any]:
    [notification] = parse_outbound_message(OPPORTUNITY_XML).notifications
    merged = {**notification.fields, **fields}
    return {
        "org": ORG,
        "notification_id": notification_id,
        "sobject": notification.sobject_type,
        "record": f"Opportunity {merged['Id']} (notification {notification_id})",
        "fields": merged,
        "archived_as": "raw/x",
    }


class RecordingSalesforce:
    """Answers an upsert with the record id Salesforce would: the opportunity is the one notified."""

    def __init__(self, opportunity_id: str) -> None:
        self.opportunity_id = opportunity_id
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def upsert(self, sobject: str, external_id_field: str, value: str, fields: Any) -> str:
        self.writes.append((sobject, dict(fields)))
        return self.opportunity_id if sobject == OPPORTUNITY else "a2X000000000001AAA"


def test_the_echo_of_our_invoice_status_write_back_is_suppressed_and_a_real_edit_is_not(
    tables: dict[str, Any],
) -> None:
    store, audit = tables["store"], tables["audit"]
    directory, publisher = StateDirectory(store), FakePublisher()

    def accept(data: dict[str, Any], **more: Any) -> dict[str, Any]:
        return accept_notification(
            data,
            directory=directory,
            publisher=publisher,
            last_write=lambda record_id: last_write_of_record(store, "salesforce", record_id),
            audit=audit,
            **more,
        )

    # Given the closed-won deal came in through an Outbound Message and was set up
    first = accept(notification_data({}, "04l000000000001AAA"))
    [deal] = publisher.published
    assert first["events"][0]["type"] == "opportunity.closed_won"
    store.put_versioned(
        {
            "pk": f"ENG#{deal.data['engagement']['id']}",
            "sk": "TERMS",
            "version": 1,
            "deal": json.dumps(deal.data),
        }
    )
    # And r2r wrote the paid invoice back to the opportunity
    change = InvoiceStatusChange.model_validate(
        {"id": "inv-1", "version": 2, "engagement_id": deal.data["engagement"]["id"], "erp_id": "9001",
         "invoice_number": "INV-1001", "invoice_date": "2026-11-27", "status": "paid",
         "previous_status": "open",
         "total": {"amount": "10000.00", "currency": "USD"},
         "amount_remaining": {"amount": "0.00", "currency": "USD"},
         "amount_paid": {"amount": "10000.00", "currency": "USD"},
         "erp_last_modified": "2026-11-28T10:00:00Z"}
    )  # fmt: skip
    salesforce = RecordingSalesforce(OPPORTUNITY_ID)
    status_event = EventEnvelope(
        type="invoice.status_changed", schema_version="1.0", event_id="ev-status-1", source_system="erp",
        source_record_id="inv-1", source_record_version=2, correlation_id="c-1",
        occurred_at="2026-11-28T10:00:00Z", data=change.model_dump(mode="json"),
    )  # fmt: skip
    write_back_invoice_status(status_event, store=store, audit=audit, salesforce=salesforce)
    [(_, written)] = [w for w in salesforce.writes if w[0] == OPPORTUNITY]

    # When Salesforce notifies the change r2r made (a new SystemModstamp, r2r's values on the record)
    echo = accept(
        notification_data({**written, "SystemModstamp": "2026-11-28T10:00:05.000Z"}, "04l000000000002AAA")
    )

    # Then nothing is published again, and the echo is audited
    assert echo == {"events": [], "echo": "own_write"}
    assert len(publisher.published) == 1
    [audited] = audit.history("echo", f"Opportunity#{OPPORTUNITY_ID}")
    assert audited["action"] == "echo_suppressed" and "own_write" in str(audited["detail"])

    # A person's later edit (the amount) carries r2r's values too, but is a real change: published
    edit = accept(
        notification_data(
            {**written, "Amount": "65000.0", "SystemModstamp": "2026-11-29T09:00:00.000Z"},
            "04l000000000003AAA",
        )
    )
    assert [e["type"] for e in edit["events"]] == ["opportunity.closed_won"]
    assert Decimal(publisher.published[-1].data["amount"]["amount"]) == Decimal(65000)

    # And any notification of an edit by r2r's integration user is an echo, without looking further
    by_user = accept(
        notification_data({"LastModifiedById": INTEGRATION_USER, "Amount": "70000.0",
                           "SystemModstamp": "2026-11-30T09:00:00.000Z"}, "04l000000000004AAA"),
        integration_users=frozenset({INTEGRATION_USER[:15]}),
    )  # fmt: skip
    assert by_user == {"events": [], "echo": "integration_user"} and len(publisher.published) == 2


# ---- PII masking in the logs -------------------------------------------------------------------------


def test_no_name_or_email_in_the_logs_of_a_flow_even_with_event_logging_on(tables: dict[str, Any]) -> None:
    # POWERTOOLS_LOGGER_LOG_EVENT makes Powertools log the whole incoming event: the worker record with it.
    handler = load_fresh("resource_sync", POWERTOOLS_LOGGER_LOG_EVENT="true")
    buffer = io.StringIO()
    # Not setStream(): it flushes the stream the handler had, which may be a capture an earlier test on
    # this worker opened (the logger of a service is shared by name) and pytest has closed since.
    handler.logger.registered_handler.stream = buffer
    handler.logger.setLevel("INFO")  # as deployed (POWERTOOLS_LOG_LEVEL=INFO), whatever ran before here
    from_crm, from_workday = resource_envelope("crm", "crm-pii"), resource_envelope("workday", "wd-pii")

    handler.handler(sqs_event(from_crm, from_workday), Context())

    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    text = buffer.getvalue()
    assert lines, "the flow logged nothing"
    assert any(
        "Records" in json.dumps(line["message"]) for line in lines if isinstance(line["message"], dict)
    )
    for secret in ("Maria Lopez", "maria.lopez@northwind.example", "Lopez", "northwind.example"):
        assert secret not in text, f"{secret!r} in the logs"
    # business ids stay readable
    assert "res-maria-lopez" in text and from_crm.event_id in text and "CC-4410-NA" in text
