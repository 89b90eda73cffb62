"""Logs, traces and metrics every function shares (Powertools Logger, Tracer, Metrics).

KPIs (:mod:`r2r_core.kpis`) are printed as CloudWatch EMF with Powertools' ``SingleMetric``: one EMF
document per value, because each KPI carries its own ``Region`` / ``BusinessUnit`` dimensions. That is a
line on stdout, no AWS call: CloudWatch Logs extracts the metrics. Every document also names the
``service`` (the function) so a KPI can be traced back to the function that emitted it.

**PII never leaves in clear.** Every function builds its Logger with :func:`service_logger`, whose
formatter (Powertools' ``LambdaPowertoolsFormatter``, the Logger's extension point) masks personal data
in every structured log line just before it is serialised — its own keys and those of the module
loggers that propagate to it, the message, the exception text, and whole events logged with
``POWERTOOLS_LOGGER_LOG_EVENT``: the values of personal keys (``name``, ``email``, ``phone`` and their
variants, Workday's and Salesforce's field names included) at any depth and inside JSON or ``repr``
text, and every e-mail address and international phone number in any string. Business ids are kept.
A free-text message that spells a name out cannot be recognised: log names only under a key.
Powertools' data masking utility (``DataMasking.erase``) was measured at about 7 ms per log line
(JSONPath parsed per call) and warns for every absent field, so the formatter walks the record itself.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any, TextIO

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.base import SingleMetric

from r2r_core.kpis import NAMESPACE, Kpi
from r2r_core.runtime import environ

# Only what r2r calls is patched for X-Ray: botocore (every AWS call) and httplib (the ERP and SaaS APIs,
# through urllib3). Tracer() alone patches every library it finds importable (sqlite3, requests, httpx…),
# importing each one on a cold start for nothing.
TRACED_MODULES = ("botocore", "httplib")
tracer = Tracer(patch_modules=TRACED_MODULES)
logger = Logger(child=True)

MASK = "*****"
# Personal keys, compared in lower case: canonical names, Workday and Salesforce field names.
PII_KEYS = frozenset(
    {
        "name",
        "legal_name",
        "first_name",
        "last_name",
        "full_name",
        "display_name",
        "contact_name",
        "resource_name",
        "worker_name",
        "email",
        "email_address",
        "billing_email",
        "phone",
        "mobile",
        "mobile_phone",
        "phone_number",
        "legal_first_name",
        "legal_last_name",
        "firstname",
        "lastname",
        "mobilephone",
        "r2r_billing_email__c",
        "r2r_client_name__c",
        "r2r_client_legal_name__c",
        "pse__email__c",
    }
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# International numbers (+44 20 7946 0958, +1 (415) 555-0100) and (415) 555-0100; never dates or ids.
_PHONE = re.compile(r"(?<![\w+])\+\d[\d ().-]{6,}\d(?!\w)|\(\d{2,4}\) ?\d{3,4}[ .-]\d{3,4}(?!\w)")
# key: "value" / 'key': 'value' / key='value' inside text (a JSON body, a pydantic repr, a traceback).
_KEYED = re.compile(
    r"""(?P<kq>["']?)(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P=kq)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<vq>\\?["'])(?P<value>.*?)(?<!\\)(?P=vq)"""
)


def mask_text(text: str) -> str:
    """``text`` with personal values behind known keys, e-mail addresses and phone numbers masked."""

    def keyed(match: re.Match[str]) -> str:
        if match["key"].lower() not in PII_KEYS:
            return match[0]
        return f"{match['kq']}{match['key']}{match['kq']}{match['sep']}{match['vq']}{MASK}{match['vq']}"

    return _PHONE.sub(MASK, _EMAIL.sub(MASK, _KEYED.sub(keyed, text)))


def mask_pii(value: Any) -> Any:
    """A copy of a log record (dicts, lists, strings) with personal data masked (see the module doc)."""
    if isinstance(value, dict):
        return {
            key: (
                MASK
                if isinstance(key, str) and key.lower() in PII_KEYS and item not in (None, "")
                else mask_pii(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_pii(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    if value is None or isinstance(value, bool | int | float | Decimal | date):
        return value
    return mask_text(str(value))  # an exception, a model, any object: serialised as its text anyway


class MaskingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, with personal data masked in every record before it is written."""

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        return super().serialize(mask_pii(log))


def service_logger(service: str, *, stream: TextIO | None = None) -> Logger:
    """The Logger of one function (``service``): Powertools JSON with PII masked."""
    return Logger(service=service, logger_formatter=MaskingFormatter(), stream=stream)


# KPIs leave as single-metric EMF documents (emit below), so a handler's own metric set often holds
# nothing but the cold start: an empty flush is expected, not a mistake worth a warning per container.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def handler_metrics() -> Metrics:
    """The technical metrics of a handler (cold starts); KPIs go through :func:`emit`."""
    return Metrics(namespace=NAMESPACE)


def emit(kpis: Iterable[Kpi]) -> None:
    """Print each KPI as one EMF document (and a dimensionless one when ``stack_wide``).

    Never fails the business flow over a metric."""
    service = environ().get("POWERTOOLS_SERVICE_NAME") or "r2r"
    for kpi in kpis:
        try:
            _print_emf(kpi, {**kpi.dimensions, "service": service})
            if kpi.stack_wide:
                _print_emf(kpi, {})
        except Exception:  # a malformed metric must not fail a posting or an invoice
            logger.exception("kpi metric not emitted", extra={"metric": kpi.name})


def _print_emf(kpi: Kpi, dimensions: dict[str, str]) -> None:
    # service="" keeps Powertools from adding the process's service dimension on its own: the
    # dimension sets are exactly the ones the dashboard searches and the alarms watch.
    metric = SingleMetric(namespace=NAMESPACE, service="")
    metric.add_metric(name=kpi.name, unit=MetricUnit(kpi.unit), value=float(kpi.value))  # EMF boundary
    for name, value in dimensions.items():
        metric.add_dimension(name=name, value=value)
    print(json.dumps(metric.serialize_metric_set(), separators=(",", ":")))


def annotate(correlation_id: str | None, **more: str | None) -> None:
    """X-Ray annotations (searchable) for the business flow; a no-op outside Lambda."""
    if correlation_id:
        tracer.put_annotation("correlation_id", correlation_id)
    for key, value in more.items():
        if value:
            tracer.put_annotation(key, value)
