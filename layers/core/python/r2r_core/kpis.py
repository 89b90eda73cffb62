"""Business KPIs of the resource-to-revenue flow: pure computations, no AWS, no I/O.

The flows gather the inputs they already read (charges of a billing run, the invoice, the milestone,
an invoice status change) and call these functions; :mod:`r2r_core.telemetry` turns the results into
CloudWatch EMF metrics (namespace ``r2r``) with ``Region`` and ``BusinessUnit`` dimensions. The HTML
report and reconciliation use the same functions, so a number means the same everywhere.

Amounts stay ``Decimal``; a value becomes a float only at the EMF boundary.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

NAMESPACE = "r2r"

# Metric names: one name per KPI, the same in EMF, the dashboard, the alarms, the report and the README.
APPROVED_TIME_AGING = "ApprovedTimeAgingDays"  # approval -> invoiced, hours-weighted mean per invoice
TIME_TO_BILL = "TimeToBillDays"  # approval of the oldest entry on an invoice -> invoice created
BILLING_TRIGGER_LATENCY = "BillingTriggerLatencySeconds"  # milestone completed -> invoice created
INVOICE_EXCEPTION_RATE = "InvoiceExceptionRate"  # 0 per invoice created, 100 per failed invoice run
INVOICES_CREATED = "InvoicesCreated"
INVOICE_RUNS_FAILED = "InvoiceRunsFailed"
SYNC_SUCCESS = "SyncSuccess"
SYNC_FAILURE = "SyncFailure"
OWNERSHIP_IGNORED = "OwnershipIgnored"  # an update from a system that does not own what it sent
ECHO_SUPPRESSED = "EchoSuppressed"  # r2r's own write came back and was not processed again
UTILIZATION = "UtilizationPercent"
BACKLOG = "BacklogAmount"
BILLED_REVENUE = "BilledRevenue"
MARGIN = "MarginAmount"
MARGIN_PERCENT = "MarginPercent"
UNCOSTED_HOURS = "UncostedHours"
WRITE_OFF_PERCENT = "WriteOffPercent"
PROJECT_SETUP_ACCURACY = "ProjectSetupAccuracy"  # 100 per setup completed, 0 per setup exception
DAYS_TO_COLLECT = "DaysToCollect"  # invoice date -> paid
ERP_THROTTLED = "ErpThrottled"  # NetSuite answered 429
UNBILLED_APPROVED_AMOUNT = "UnbilledApprovedAmount"  # reconciliation: revenue leakage by age bucket
RECONCILIATION_FINDINGS = "ReconciliationFindings"

# Units as CloudWatch names them.
COUNT, PERCENT, SECONDS, NONE = "Count", "Percent", "Seconds", "None"

UNASSIGNED = "unassigned"
HOURS_PER_DAY = Decimal(8)  # a standard working day, the capacity of a resource on a weekday
AGE_BUCKETS = ((0, 30), (31, 60), (61, 90), (91, None))

_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Kpi:
    """One KPI value with its dimensions (``Region``, ``BusinessUnit``, and more where it matters)."""

    name: str
    unit: str
    value: Decimal
    dimensions: Mapping[str, str] = field(default_factory=dict)
    # Also published without dimensions: the stack-wide series an alarm watches (alarms cannot search).
    stack_wide: bool = False


@dataclass(frozen=True)
class BilledTime:
    """A time charge as billed on an invoice (what the billing run froze in its draft)."""

    region: str
    resource_id: str
    work_date: date
    approved_at: datetime
    hours: Decimal
    billable_hours: Decimal
    amount: Decimal
    held_amount: Decimal = Decimal(0)
    written_off: bool = False


def dimensions(region: str | None, business_unit: str | None, **more: str) -> dict[str, str]:
    """EMF dimension values must be non-empty: a missing one is ``unassigned``."""
    return {"Region": region or UNASSIGNED, "BusinessUnit": business_unit or UNASSIGNED, **more}


def _q(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def days_between(start: datetime, end: datetime) -> Decimal:
    """Elapsed days (two decimals); never negative (clocks of two systems may disagree a little)."""
    seconds = Decimal(str(max((end - start).total_seconds(), 0.0)))
    return _q(seconds / Decimal(86400))


def seconds_between(start: datetime, end: datetime) -> Decimal:
    return _q(Decimal(str(max((end - start).total_seconds(), 0.0))))


def approved_time_aging_days(entries: Iterable[BilledTime], invoiced_at: datetime) -> Decimal | None:
    """Hours-weighted mean age (days) of approved time when it was invoiced; None without hours."""
    weighted, hours = Decimal(0), Decimal(0)
    for entry in entries:
        weighted += days_between(entry.approved_at, invoiced_at) * entry.billable_hours
        hours += entry.billable_hours
    return _q(weighted / hours) if hours > 0 else None


def time_to_bill_days(entries: Iterable[BilledTime], invoiced_at: datetime) -> Decimal | None:
    """Days from the approval of the oldest entry on the invoice to the invoice: the worst wait."""
    approvals = [e.approved_at for e in entries if e.billable_hours > 0]
    return days_between(min(approvals), invoiced_at) if approvals else None


def weekdays(first: date, last: date) -> int:
    days, current = 0, first
    while current <= last:
        days += current.weekday() < 5
        current += timedelta(days=1)
    return days


def capacity_hours(entries: Iterable[BilledTime], hours_per_day: Decimal = HOURS_PER_DAY) -> Decimal:
    """Capacity without HRIS calendars: every resource with time in the period, a standard day on every
    weekday from the first to the last work date of the period."""
    entries = list(entries)
    if not entries:
        return Decimal(0)
    first, last = min(e.work_date for e in entries), max(e.work_date for e in entries)
    resources = {e.resource_id for e in entries}
    return hours_per_day * weekdays(first, last) * len(resources)


def utilization_percent(billable_hours: Decimal, capacity: Decimal) -> Decimal | None:
    return _q(billable_hours / capacity * 100) if capacity > 0 else None


def write_off_percent(billed: Decimal, written_off: Decimal) -> Decimal | None:
    """Share of billable value written off or held over a cap: written_off / (billed + written_off)."""
    whole = billed + written_off
    return _q(written_off / whole * 100) if whole > 0 else None


def backlog(contract_value: Decimal | None, billed_to_date: Decimal) -> Decimal | None:
    """Contract value not yet billed (None for contracts without a value, e.g. plain T&M)."""
    return max(contract_value - billed_to_date, Decimal(0)) if contract_value is not None else None


def margin(
    entries: Iterable[BilledTime], cost_rates: Mapping[str, Decimal]
) -> tuple[Decimal, Decimal, Decimal]:
    """(revenue, cost, uncosted hours) of billed time at the resources' HRIS cost rates.

    Hours of a resource without a known cost rate are counted as uncosted, never at zero cost."""
    revenue, cost, uncosted = Decimal(0), Decimal(0), Decimal(0)
    for entry in entries:
        revenue += entry.amount
        rate = cost_rates.get(entry.resource_id)
        if rate is None:
            uncosted += entry.hours
        else:
            cost += _q(entry.hours * rate)
    return revenue, cost, uncosted


def invoice_kpis(
    *,
    region: str | None,
    business_unit: str | None,
    currency: str,
    invoice_total: Decimal,
    invoiced_at: datetime,
    milestone_completed_at: datetime | None,
    time: Iterable[BilledTime],
    contract_value: Decimal | None,
    billed_before: Decimal,
    cost_rates: Mapping[str, Decimal] | None = None,
) -> list[Kpi]:
    """The KPIs of one invoice created: aging and time-to-bill, utilization and write-off per region of
    the work; trigger latency, backlog, revenue and margin for the engagement's region and unit."""
    time = list(time)
    engagement = dimensions(region, business_unit)
    money = dimensions(region, business_unit, Currency=currency)
    kpis = [
        Kpi(INVOICES_CREATED, COUNT, Decimal(1), engagement),
        Kpi(INVOICE_EXCEPTION_RATE, PERCENT, Decimal(0), engagement, stack_wide=True),
        Kpi(BILLED_REVENUE, NONE, invoice_total, money),
    ]
    if milestone_completed_at is not None:
        kpis.append(
            Kpi(
                BILLING_TRIGGER_LATENCY,
                SECONDS,
                seconds_between(milestone_completed_at, invoiced_at),
                engagement,
            )
        )
    remaining = backlog(contract_value, billed_before + invoice_total)
    if remaining is not None:
        kpis.append(Kpi(BACKLOG, NONE, remaining, money))
    by_region: dict[str, list[BilledTime]] = defaultdict(list)
    for entry in time:
        by_region[entry.region].append(entry)
    for work_region in sorted(by_region):
        entries = by_region[work_region]
        dims = dimensions(work_region, business_unit)
        for name, value in (
            (APPROVED_TIME_AGING, approved_time_aging_days(entries, invoiced_at)),
            (TIME_TO_BILL, time_to_bill_days(entries, invoiced_at)),
            (
                UTILIZATION,
                utilization_percent(
                    sum((e.billable_hours for e in entries), Decimal(0)), capacity_hours(entries)
                ),
            ),
            (
                WRITE_OFF_PERCENT,
                write_off_percent(
                    sum((e.amount for e in entries), Decimal(0)),
                    sum((e.held_amount for e in entries if e.written_off), Decimal(0)),
                ),
            ),
        ):
            if value is not None:
                kpis.append(
                    Kpi(name, PERCENT if name in {UTILIZATION, WRITE_OFF_PERCENT} else NONE, value, dims)
                )
    revenue, cost, uncosted = margin(time, cost_rates or {})
    if uncosted > 0:
        kpis.append(Kpi(UNCOSTED_HOURS, COUNT, uncosted, engagement))
    elif revenue > 0:
        kpis.append(Kpi(MARGIN, NONE, revenue - cost, money))
        kpis.append(Kpi(MARGIN_PERCENT, PERCENT, _q((revenue - cost) / revenue * 100), engagement))
    return kpis


def invoice_failed_kpis(region: str | None, business_unit: str | None) -> list[Kpi]:
    dims = dimensions(region, business_unit)
    return [
        Kpi(INVOICE_RUNS_FAILED, COUNT, Decimal(1), dims),
        Kpi(INVOICE_EXCEPTION_RATE, PERCENT, Decimal(100), dims, stack_wide=True),
    ]


def sync_kpi(*, succeeded: bool, source_system: str, region: str | None, business_unit: str | None) -> Kpi:
    return Kpi(
        SYNC_SUCCESS if succeeded else SYNC_FAILURE,
        COUNT,
        Decimal(1),
        dimensions(region, business_unit, SourceSystem=source_system or UNASSIGNED),
    )


def ownership_kpi(*, source_system: str, event_type: str) -> Kpi:
    """One update ignored because its source does not own what it sent (``r2r_core.ownership``)."""
    return Kpi(
        OWNERSHIP_IGNORED,
        COUNT,
        Decimal(1),
        {"SourceSystem": source_system or UNASSIGNED, "EventType": event_type or UNASSIGNED},
        stack_wide=True,
    )


def echo_kpi(*, source_system: str, reason: str) -> Kpi:
    """One change notification recognised as r2r's own write coming back (``r2r_core.echo``)."""
    return Kpi(
        ECHO_SUPPRESSED, COUNT, Decimal(1), {"SourceSystem": source_system or UNASSIGNED, "Reason": reason}
    )


def project_setup_kpi(*, succeeded: bool, region: str | None, business_unit: str | None) -> Kpi:
    return Kpi(
        PROJECT_SETUP_ACCURACY, PERCENT, Decimal(100 if succeeded else 0), dimensions(region, business_unit)
    )


def days_to_collect(invoice_date: date, paid_on: date) -> Decimal:
    return Decimal(max((paid_on - invoice_date).days, 0))


def collection_kpi(
    *, invoice_date: date, paid_on: date, region: str | None, business_unit: str | None
) -> Kpi:
    return Kpi(
        DAYS_TO_COLLECT, NONE, days_to_collect(invoice_date, paid_on), dimensions(region, business_unit)
    )


def age_bucket(age_days: int) -> str:
    """``0-30``, ``31-60``, ``61-90``, ``91+`` days."""
    for low, high in AGE_BUCKETS:
        if high is None or age_days <= high:
            return f"{low}+" if high is None else f"{low}-{high}"
    raise AssertionError("unreachable")


def region_of(data: Mapping[str, object]) -> tuple[str | None, str | None]:
    """Region and business unit of a canonical record: its own, or its engagement's / client's."""
    for holder in (data, data.get("engagement"), data.get("client"), data.get("project")):
        if isinstance(holder, Mapping) and holder.get("region"):
            unit = holder.get("business_unit")
            return str(holder["region"]), str(unit) if unit else None
    return None, None


def parse_day(text: str | None) -> date | None:
    """The day of an ERP timestamp: ISO (``2026-11-26T…``) or NetSuite's ``11/26/2026 …``; else None."""
    if not text:
        return None
    head = text.strip().split(" ")[0].split("T")[0]
    try:
        if "/" in head:
            month, day, year = (int(part) for part in head.split("/"))
            return date(year, month, day)
        return date.fromisoformat(head)
    except ValueError:
        return None
