"""Cost model: AWS cost per 1M approved time entries and per 1,000 invoices (``infra.cost``).

Uses the largest measured spike of this run (``ctx.results["spike"]``); when the spike section did not
run (or measured nothing), a small local spike is measured here first (``infra.cost.measure_fallback``).
"""

from __future__ import annotations

import json
from decimal import Decimal

from infra import cost as model
from infra.bench.figures import BenchContext, Figure

SECTION = "cost"


def run(ctx: BenchContext) -> list[Figure]:
    from infra.synth import ensure_synthesized

    template = json.loads(ensure_synthesized().read_text(encoding="utf-8"))
    spikes = model.measured_spikes([f.as_json() for f in ctx.results.get("spike", [])])
    summary = model.largest(spikes)
    if summary is None:
        summary = model.measure_fallback(ctx.repo_root)
        source = f"a fallback local spike of {model.FALLBACK_SIZE} entries (the spike section measured none)"
    else:
        source = f"the spike of {summary['entries']} entries of this run"
    report = model.cost_report(template, summary, model.states_per_execution(ctx.repo_root), source)
    document = report.as_json()
    return [
        Figure(
            SECTION,
            "AWS cost per 1M approved time entries",
            float(model.cents(report.total_per_million_entries)),
            "USD",
            target=float(model.TARGET_PER_MILLION_ENTRIES),
            detail={"breakdown": document["per_1m_entries_usd"], "source": source, **_dated()},
        ),
        Figure(
            SECTION,
            "AWS cost per 1,000 invoices",
            float(model.cents(report.total_per_thousand_invoices)),
            "USD",
            detail={"breakdown": document["per_1000_invoices_usd"], "source": source, **_dated()},
        ),
        Figure(
            SECTION,
            "AWS monthly fixed cost (any volume)",
            float(model.cents(sum(report.monthly_fixed.values(), Decimal(0)))),
            "USD",
            detail={"breakdown": document["monthly_fixed_usd"], **_dated()},
        ),
    ]


def _dated() -> dict[str, str]:
    return {"prices_as_of": model.PRICES_AS_OF.isoformat(), "region": model.PRICE_REGION}
