"""Logs, traces and metrics every function shares (Powertools Logger, Tracer, Metrics).

KPIs (:mod:`r2r_core.kpis`) are printed as CloudWatch EMF with Powertools' ``SingleMetric``: one EMF
document per value, because each KPI carries its own ``Region`` / ``BusinessUnit`` dimensions. That is a
line on stdout, no AWS call: CloudWatch Logs extracts the metrics. Every document also names the
``service`` (the function) so a KPI can be traced back to the function that emitted it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable

from aws_lambda_powertools import Logger, Metrics, Tracer
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
