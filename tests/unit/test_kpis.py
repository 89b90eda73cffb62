"""KPI computations (hand-worked) and their EMF form."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from r2r_core import kpis, telemetry
from r2r_core.runtime import use_environ


def _time(region: str, resource: str, day: int, hours: str, amount: str, **kw: object) -> kpis.BilledTime:
    return kpis.BilledTime(
        region=region,
        resource_id=resource,
        work_date=date(2026, 11, day),
        approved_at=datetime(2026, 11, 21, 9, 30, tzinfo=UTC),
        hours=Decimal(hours),
        billable_hours=Decimal(hours),
        amount=Decimal(amount),
        **kw,  # type: ignore[arg-type]
    )


def test_aging_and_time_to_bill_are_weighted_and_worst_case() -> None:
    invoiced = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    old = _time("EMEA", "a", 16, "6", "600")
    recent = kpis.BilledTime(**{**old.__dict__, "approved_at": datetime(2026, 11, 25, 9, 30, tzinfo=UTC)})
    recent = kpis.BilledTime(**{**recent.__dict__, "hours": Decimal(2), "billable_hours": Decimal(2)})
    # (5 days x 6 h + 1 day x 2 h) / 8 h = 4 days; the oldest approval waited 5 days.
    assert kpis.approved_time_aging_days([old, recent], invoiced) == Decimal("4.00")
    assert kpis.time_to_bill_days([old, recent], invoiced) == Decimal("5.00")
    assert kpis.approved_time_aging_days([], invoiced) is None


def test_capacity_is_a_standard_day_on_every_weekday_of_the_period() -> None:
    entries = [_time("EMEA", "a", 16, "8", "1"), _time("EMEA", "b", 20, "4", "1")]
    # Mon 16 .. Fri 20 Nov 2026: 5 weekdays x 8 h x 2 resources.
    assert kpis.capacity_hours(entries) == Decimal(80)
    assert kpis.weekdays(date(2026, 11, 20), date(2026, 11, 23)) == 2  # Fri, (Sat, Sun), Mon
    assert kpis.utilization_percent(Decimal(12), Decimal(80)) == Decimal("15.00")
    assert kpis.utilization_percent(Decimal(12), Decimal(0)) is None


def test_write_off_backlog_margin() -> None:
    assert kpis.write_off_percent(Decimal(900), Decimal(100)) == Decimal("10.00")
    assert kpis.backlog(Decimal("120000.00"), Decimal("43969.38")) == Decimal("76030.62")
    assert kpis.backlog(None, Decimal(1)) is None
    entries = [_time("EMEA", "a", 16, "10", "2100"), _time("NA", "b", 16, "2", "325")]
    revenue, cost, uncosted = kpis.margin(entries, {"a": Decimal("95.50")})
    assert (revenue, cost, uncosted) == (Decimal(2425), Decimal("955.00"), Decimal(2))


def test_invoice_kpis_carry_region_and_business_unit() -> None:
    time = [_time("EMEA", "a", 16, "8", "1680"), _time("NA", "b", 16, "8", "1300")]
    values = kpis.invoice_kpis(
        region="EMEA",
        business_unit="Cloud Services",
        currency="USD",
        invoice_total=Decimal("27980.00"),
        invoiced_at=datetime(2026, 11, 26, tzinfo=UTC),
        milestone_completed_at=datetime(2026, 11, 25, 23, 59, tzinfo=UTC),
        time=time,
        contract_value=Decimal("120000.00"),
        billed_before=Decimal(0),
    )
    by = {(k.name, k.dimensions["Region"]): k for k in values}
    assert by[(kpis.BILLING_TRIGGER_LATENCY, "EMEA")].value == Decimal("60.00")
    assert by[(kpis.BACKLOG, "EMEA")].value == Decimal("92020.00")
    assert by[(kpis.BACKLOG, "EMEA")].dimensions["Currency"] == "USD"
    assert by[(kpis.UTILIZATION, "NA")].value == Decimal("100.00")  # one day, one resource, 8 h
    assert by[(kpis.INVOICE_EXCEPTION_RATE, "EMEA")].value == 0
    assert by[(kpis.UNCOSTED_HOURS, "EMEA")].value == Decimal(16)  # no HRIS cost rates: no margin
    assert (kpis.MARGIN, "EMEA") not in by
    assert all(k.dimensions["BusinessUnit"] == "Cloud Services" for k in values)


def test_missing_dimensions_are_unassigned_and_records_name_their_region() -> None:
    assert kpis.dimensions(None, "") == {"Region": "unassigned", "BusinessUnit": "unassigned"}
    deal = {"engagement": {"region": "EMEA", "business_unit": "Cloud"}}
    assert kpis.region_of(deal) == ("EMEA", "Cloud")
    assert kpis.region_of({"region": "NA"}) == ("NA", None)
    assert kpis.region_of({}) == (None, None)


@pytest.mark.parametrize(
    ("days", "bucket"), [(0, "0-30"), (30, "0-30"), (31, "31-60"), (90, "61-90"), (91, "91+")]
)
def test_age_buckets(days: int, bucket: str) -> None:
    assert kpis.age_bucket(days) == bucket


def test_erp_days_parse_in_iso_and_netsuite_forms() -> None:
    assert kpis.parse_day("2026-11-26T06:00:00.000Z") == date(2026, 11, 26)
    assert kpis.parse_day("11/26/2026 6:00 am") == date(2026, 11, 26)
    assert kpis.parse_day("soon") is None


def test_emit_prints_one_emf_document_per_kpi(capsys: pytest.CaptureFixture[str]) -> None:
    kpi = kpis.Kpi(kpis.TIME_TO_BILL, kpis.NONE, Decimal("5.25"), kpis.dimensions("EMEA", "Cloud"))
    with use_environ({"POWERTOOLS_SERVICE_NAME": "r2r-invoice-workflow"}):
        telemetry.emit([kpi, kpi])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    doc = lines[0]
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "r2r"
    assert set(directive["Dimensions"][0]) == {"Region", "BusinessUnit", "service"}
    assert directive["Metrics"] == [{"Name": "TimeToBillDays", "Unit": "None"}]
    assert (doc["Region"], doc["BusinessUnit"], doc["service"]) == ("EMEA", "Cloud", "r2r-invoice-workflow")
    assert doc["TimeToBillDays"] == [5.25]


def test_stack_wide_kpis_are_also_published_without_dimensions(capsys: pytest.CaptureFixture[str]) -> None:
    (rate, *_) = kpis.invoice_failed_kpis("EMEA", None)[1:]
    assert rate.name == kpis.INVOICE_EXCEPTION_RATE and rate.stack_wide
    telemetry.emit([rate])
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in docs] == [
        [["Region", "BusinessUnit", "service"]],
        [[]],
    ]
    assert docs[1]["InvoiceExceptionRate"] == [100.0]
