"""Pure parts of provisioning and the analytics feed: record bodies, the cost forecast, the local Firehose."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.constructs.analytics import DELIVERY_PREFIX, ERROR_PREFIX, PARTITION_QUERY
from infra.local.firehose import FirehoseSpec, PartitionQuery, UnsupportedQuery
from r2r_core.erp import records
from r2r_core.flows.psa_provisioning import psa_project_fields
from r2r_core.flows.resource_allocation import CostCurrencyConflict, forecast_lines
from r2r_core.model.entities import ClosedWonDeal

EVENT = {
    "version": "0",
    "id": "e-1",
    "detail-type": "time_entry.approved",
    "source": "r2r.canonical",
    "time": "2026-11-21T09:30:00Z",
    "detail": {"type": "time_entry.approved"},
}
ARRIVAL = datetime(2026, 11, 26, 8, 5, 9, tzinfo=UTC)


# ---- record bodies ------------------------------------------------------------------------------


def test_employee_body_splits_the_name_and_carries_status_and_cost() -> None:
    body = records.employee_body(
        "Ana Maria Costa",
        email="ana@example.com",
        inactive=True,
        release_date=date(2026, 11, 30),
        labor_cost=Decimal("91.235"),
        labor_cost_currency="USD",
        title="Senior Cloud Engineer",
        subsidiary_id="3",
        segments={"department": {"id": "4"}, "class": {"id": "7"}, "location": {"id": "2"}},
    )
    assert body == {
        "firstName": "Ana Maria",
        "lastName": "Costa",
        "email": "ana@example.com",
        "isInactive": True,
        "releaseDate": "2026-11-30",
        "laborCost": "91.235",  # finer than cents is kept, never rounded
        "title": "Senior Cloud Engineer",
        "subsidiary": {"id": "3"},
        "department": {"id": "4"},
        "location": {"id": "2"},  # an employee has no class
    }
    single = records.employee_body(
        "Cher", email=None, inactive=False, release_date=None, labor_cost=Decimal(80),
        labor_cost_currency="JPY", title=None,
    )  # fmt: skip
    assert (single["firstName"], single["lastName"], single["laborCost"]) == ("Cher", "Cher", "80")
    with pytest.raises(ValueError, match="currency"):
        records.employee_body("A B", email=None, inactive=False, release_date=None, labor_cost=Decimal(1),
                              labor_cost_currency=None, title=None)  # fmt: skip


def test_allocation_and_forecast_bodies_are_exact_and_refuse_nonsense() -> None:
    body = records.resource_allocation_body(
        job_id="7", employee_external_id="r2r-resource-x", hours=Decimal("100.50"),
        start_date=date(2026, 11, 16), end_date=date(2027, 3, 31),
    )  # fmt: skip
    assert body["allocationAmount"] == "100.50" and body["project"] == {"id": "7"}
    assert body["allocationUnit"] == {"id": "H"}
    with pytest.raises(ValueError, match="positive"):
        records.resource_allocation_body(job_id="7", employee_external_id="e", hours=Decimal(0),
                                         start_date=date(2026, 1, 1), end_date=date(2026, 1, 2))  # fmt: skip
    with pytest.raises(ValueError, match="before"):
        records.resource_allocation_body(job_id="7", employee_external_id="e", hours=Decimal(1),
                                         start_date=date(2026, 1, 2), end_date=date(2026, 1, 1))  # fmt: skip
    assert records.job_cost_forecast_body(
        labor_cost=Decimal("74001.12"), currency="USD", hours=Decimal("980.5")
    ) == {
        "estimatedLaborCost": "74001.12",
        "estimatedTime": "980.5",
    }
    with pytest.raises(ValueError, match="precision"):
        records.job_cost_forecast_body(labor_cost=Decimal("1.005"), currency="USD", hours=Decimal(1))
    with pytest.raises(TypeError):
        records.job_cost_forecast_body(labor_cost=1.5, currency="USD", hours=Decimal(1))  # type: ignore[arg-type]


def test_psa_fields_link_a_deal_from_salesforce_by_id_and_others_by_r2r_id() -> None:
    sample = json.loads(open("events/samples/opportunity.closed_won.json").read())["data"]  # noqa: SIM115
    deal = ClosedWonDeal.model_validate(sample)
    fields = psa_project_fields(deal)
    assert fields["Name"] == deal.project.name[:80]
    assert fields["R2R_Written_By__c"] == "r2r-integration"
    salesforce_deal = deal.model_copy(update={"id": "opp-0065g00000Jk1mNAAR"})
    assert psa_project_fields(salesforce_deal)["pse__Opportunity__c"] == "0065g00000Jk1mNAAR"
    other = deal.model_copy(update={"id": "opp-from-the-webhook"})
    assert psa_project_fields(other)["pse__Opportunity__r"] == {"R2R_Id__c": "opp-from-the-webhook"}


# ---- cost forecast --------------------------------------------------------------------------------


def test_forecast_rounds_each_allocation_once_and_sums_the_rounded_lines() -> None:
    forecast = forecast_lines(
        [
            {"resource_id": "a", "hours": "0.5"},  # 0.5 x 10.003 = 5.0015 -> 5.00
            {"resource_id": "a", "hours": "1.5"},  # 1.5 x 10.003 = 15.0045 -> 15.00
            {"resource_id": "b", "hours": "3"},  # no cost rate: uncosted
            {"resource_id": "a", "hours": "0"},  # nothing planned: ignored
        ],
        {"a": {"amount": "10.003", "currency": "USD"}, "b": None},
    )
    assert forecast["labor_cost"] == "20.00"  # the rounded lines' sum, not round(2 x 10.003) = 20.01
    hours = (forecast["hours"], forecast["costed_hours"], forecast["uncosted_hours"])
    assert tuple(map(Decimal, hours)) == (5, 2, 3)
    assert forecast["currency"] == "USD"
    nothing = forecast_lines([], {})
    assert (nothing["currency"], nothing["labor_cost"], nothing["lines"]) == (None, None, [])
    with pytest.raises(CostCurrencyConflict, match="EUR, USD"):
        forecast_lines(
            [{"resource_id": "a", "hours": "1"}, {"resource_id": "b", "hours": "1"}],
            {"a": {"amount": "1", "currency": "USD"}, "b": {"amount": "1", "currency": "EUR"}},
        )


@given(
    st.lists(
        st.tuples(
            st.decimals(min_value=Decimal("0.25"), max_value=Decimal(2000), places=2),
            st.decimals(min_value=Decimal(0), max_value=Decimal(500), places=3),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_forecast_total_is_the_sum_of_half_up_lines_in_jpy_and_usd(
    rows: list[tuple[Decimal, Decimal]],
) -> None:
    for currency, quantum in (("USD", Decimal("0.01")), ("JPY", Decimal(1))):
        allocations = [{"resource_id": f"r{i}", "hours": str(h)} for i, (h, _r) in enumerate(rows)]
        rates = {f"r{i}": {"amount": str(r), "currency": currency} for i, (_h, r) in enumerate(rows)}
        forecast = forecast_lines(allocations, rates)
        expected = sum(((h * r).quantize(quantum, rounding="ROUND_HALF_UP") for h, r in rows), Decimal(0))
        assert Decimal(forecast["labor_cost"]) == expected
        assert Decimal(forecast["labor_cost"]).as_tuple().exponent == quantum.as_tuple().exponent


# ---- the local Firehose ---------------------------------------------------------------------------


def spec(**overrides: object) -> FirehoseSpec:
    props = {
        "ExtendedS3DestinationConfiguration": {
            "BucketARN": "arn:aws:s3:::analytics",
            "Prefix": DELIVERY_PREFIX,
            "ErrorOutputPrefix": ERROR_PREFIX,
            "CompressionFormat": "GZIP",
            "FileExtension": ".json.gz",
            "DynamicPartitioningConfiguration": {"Enabled": True},
            "ProcessingConfiguration": {
                "Enabled": True,
                "Processors": [
                    {"Type": "MetadataExtraction", "Parameters": [
                        {"ParameterName": "MetadataExtractionQuery", "ParameterValue": PARTITION_QUERY},
                        {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]},
                    {"Type": "AppendDelimiterToRecord", "Parameters": [
                        {"ParameterName": "Delimiter", "ParameterValue": "\\n"}]},
                ],
            },
            **overrides,
        }
    }  # fmt: skip
    return FirehoseSpec.from_properties("Stream", "r2r-dev-stream", "arn:aws:firehose:::x", props)


def test_the_template_query_partitions_by_detail_type_and_day_of_time() -> None:
    query = PartitionQuery.parse(PARTITION_QUERY)
    assert query.evaluate(EVENT) == {"type": "time_entry.approved", "dt": "2026-11-21"}
    assert PartitionQuery.parse('{a: .detail.type, "b": .resources[0], c: .id[:1]}').evaluate(
        {**EVENT, "resources": ["r-1"]}
    ) == {"a": "time_entry.approved", "b": "r-1", "c": "e"}
    for unsupported in ('.time | split("T")', "{dt: .time | ascii_downcase}", "{x: .items[]}"):
        with pytest.raises(UnsupportedQuery):
            PartitionQuery.parse(unsupported)


def test_records_land_under_their_partition_and_bad_ones_under_the_error_prefix() -> None:
    stream = spec()
    prefix, error = stream.key_prefix(json.dumps(EVENT).encode(), ARRIVAL)
    assert (prefix, error) == ("events/type=time_entry.approved/dt=2026-11-21/", None)
    key = stream.object_key(prefix, ARRIVAL)
    assert key.startswith(prefix + "r2r-dev-stream-1-2026-11-26-08-05-09-") and key.endswith(".json.gz")

    prefix, error = stream.key_prefix(json.dumps({"time": "2026-11-21T09:30:00Z"}).encode(), ARRIVAL)
    assert prefix == "errors/partitioning-failed/dt=2026-11-26/"  # error prefix: arrival day
    assert error is not None and error["errorCode"] == "DynamicPartitioning.MetadataExtractionFailed"
    assert "'type'" in error["errorMessage"]
    prefix, error = stream.key_prefix(b"not json", ARRIVAL)
    assert prefix.startswith("errors/") and error is not None

    body = stream.encode([b'{"a":1}', b'{"b":2}'])
    assert gzip.decompress(body) == b'{"a":1}\n{"b":2}\n'  # one event per line
    assert spec(CompressionFormat="UNCOMPRESSED").encode([b"x"]) == b"x\n"
    with pytest.raises(UnsupportedQuery, match="Snappy"):
        spec(CompressionFormat="Snappy")
