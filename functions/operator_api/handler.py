"""Operator API behind IAM authorization: lineage, exceptions for finance, KPIs.

``GET /ops/lineage/invoices/{id}``, ``GET /ops/exceptions`` (``?status=open|resolved|all``, default open),
``GET /ops/exceptions/{id}``, ``POST /ops/exceptions/{id}/resolve`` (body ``{"note": "..."}``),
``GET /ops/kpis``. API Gateway has already authorized the caller (SigV4, ``execute-api:Invoke`` on the
method); who resolves is the caller's IAM identity from the request context, never a field of the body.
The logic is the core's (``r2r_core.ops``), the same as the ``r2r`` CLI's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, NotFoundError

from r2r_core import settings as settings_module
from r2r_core.ops.exceptions import ExceptionNotFound, ResolveRefused, age_days, find, resolve_exception
from r2r_core.ops.kpi_report import kpi_document, open_exceptions, stack_kpis
from r2r_core.ops.lineage import NotFound, invoice_lineage
from r2r_core.settings import OperatorApiSettings
from r2r_core.state import AuditLog, StateStore
from r2r_core.telemetry import handler_metrics, tracer

logger = Logger(service="r2r-operator-api")
metrics = handler_metrics()
app = APIGatewayRestResolver()

STATUSES = ("open", "resolved", "all")
MAX_NOTE_LENGTH = 2000


def _stores() -> tuple[StateStore, AuditLog]:
    settings = settings_module.load(OperatorApiSettings)
    return StateStore(settings.state_table_name), AuditLog(settings.audit_table_name)


def _json(status: int, document: Any) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(document, default=str, sort_keys=True),
    )


def _caller() -> str:
    """The IAM identity API Gateway authorized (an assumed-role session ARN for the operator roles)."""
    identity = app.current_event.request_context.identity
    caller = identity.user_arn or identity.caller
    if not caller:
        # Only reachable if the method lost its IAM authorization: refuse rather than resolve anonymously.
        raise _Forbidden("no caller identity in the request: the operator API requires IAM authorization")
    return caller


class _Forbidden(Exception):
    pass


@app.exception_handler(_Forbidden)
def _forbidden(exc: _Forbidden) -> Response[str]:
    return _json(403, {"message": str(exc)})


@app.get("/ops/lineage/invoices/<invoice_id>")
def lineage(invoice_id: str) -> Response[str]:
    store, audit = _stores()
    try:
        return _json(200, invoice_lineage(store, audit, invoice_id))
    except NotFound as exc:
        raise NotFoundError(str(exc)) from exc


@app.get("/ops/exceptions")
def list_exceptions() -> Response[str]:
    status = app.current_event.get_query_string_value("status", "open") or "open"
    if status not in STATUSES:
        allowed = ", ".join(STATUSES)
        raise BadRequestError(f"query parameter 'status' must be one of {allowed}, not {status!r}")
    store, _audit = _stores()
    items = sorted(store.exceptions(), key=lambda e: str(e.get("created_at", "")))
    if status != "all":
        items = [e for e in items if e.get("status", "open") == status]
    return _json(200, {"status": status, "exceptions": [{**e, "age_days": age_days(e)} for e in items]})


@app.get("/ops/exceptions/<exception_id>")
def show_exception(exception_id: str) -> Response[str]:
    store, audit = _stores()
    try:
        item = find(store, exception_id)
    except ExceptionNotFound as exc:
        raise NotFoundError(str(exc)) from exc
    history = audit.history("exception", str(item["id"]))
    return _json(200, {"exception": {**item, "age_days": age_days(item)}, "audit": history})


@app.post("/ops/exceptions/<exception_id>/resolve")
def resolve(exception_id: str) -> Response[str]:
    try:
        body = app.current_event.json_body if app.current_event.body else None
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"body is not JSON: {exc.msg} at position {exc.pos}") from exc
    note = body.get("note") if isinstance(body, dict) else None
    if not isinstance(note, str) or not note.strip():
        raise BadRequestError("body: 'note' is required: a non-empty string saying what was done")
    if len(note) > MAX_NOTE_LENGTH:
        raise BadRequestError(f"body: 'note' is {len(note)} characters long, at most {MAX_NOTE_LENGTH}")
    by = _caller()
    store, audit = _stores()
    try:
        item = resolve_exception(store, audit, exception_id, by=by, note=note.strip())
    except ExceptionNotFound as exc:
        raise NotFoundError(str(exc)) from exc
    except ResolveRefused as exc:
        return _json(409, {"message": str(exc)})
    logger.info("exception resolved", extra={"exception_id": item["id"], "resolved_by": by})
    return _json(200, {"exception": item})


@app.get("/ops/kpis")
def kpis() -> Response[str]:
    store, _audit = _stores()
    found = stack_kpis(store)
    return _json(
        200,
        {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "open_exceptions": len(open_exceptions(store)),
            "kpis": [kpi_document(k) for k in found],
        },
    )


@logger.inject_lambda_context(clear_state=True, correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
