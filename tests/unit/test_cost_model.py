"""The cost model's arithmetic (``infra.cost``): exact Decimals from usage × dated list prices."""

from __future__ import annotations

from decimal import Decimal

import pytest

from infra import cost

TEMPLATE = {
    "Resources": {
        "TimePostingFn": {
            "Type": "AWS::Lambda::Function",
            "Metadata": {"r2r:source": "functions/time_posting"},
            "Properties": {"MemorySize": 256, "Architectures": ["arm64"]},
        },
        "TimePostingEsm": {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "FunctionName": {"Ref": "TimePostingFn"},
                "ScalingConfig": {"MaximumConcurrency": 5},
            },
        },
        "IntakeFn": {
            "Type": "AWS::Lambda::Function",
            "Metadata": {"r2r:source": "functions/file_intake"},
            "Properties": {"MemorySize": 1024},
        },
        "Secret": {"Type": "AWS::SecretsManager::Secret"},
        "Alarm1": {"Type": "AWS::CloudWatch::Alarm"},
        "Alarm2": {"Type": "AWS::CloudWatch::Alarm"},
        "Key": {"Type": "AWS::KMS::Key"},
    }
}


def test_function_settings_come_from_the_template() -> None:
    settings = cost.function_settings(TEMPLATE)
    assert settings["time_posting"] == cost.FunctionSetting(256, "arm64", 5)
    # Lambda's defaults when the template says nothing: x86_64, and no event source mapping here.
    assert settings["file_intake"] == cost.FunctionSetting(1024, "x86_64", None)


def test_lambda_costs_gb_seconds_at_the_architectures_price_plus_requests() -> None:
    usage = cost.Usage(
        units=Decimal(1000),
        lambda_invocations={"time_posting": Decimal(100), "file_intake": Decimal(2)},
        lambda_seconds={"time_posting": Decimal(50), "file_intake": Decimal(4)},
    )
    costs = cost.breakdown(usage, cost.function_settings(TEMPLATE), Decimal(1_000_000))
    # per 1,000 entries: 50 s × 0.25 GB × 0.0000133334 + 4 s × 1 GB × 0.0000166667 + 102 × 0.20/1M
    per_thousand = (
        Decimal(50) * Decimal("0.25") * Decimal("0.0000133334")
        + Decimal(4) * Decimal("0.0000166667")
        + Decimal(102) * Decimal("0.20") / Decimal(1_000_000)
    )
    assert costs["Lambda"] == per_thousand * 1000
    assert costs["Lambda"] == Decimal("0.2537343")  # 0.1666675 + 0.0666668 + 0.0204
    assert all(costs[s] == 0 for s in cost.SERVICES if s != "Lambda")


def test_every_service_is_priced_per_its_unit() -> None:
    usage = cost.Usage(
        units=Decimal(1_000_000),
        sqs_requests=Decimal(3_000_000),
        eventbridge_events=Decimal(2_000_000),
        dynamodb_wru=Decimal(8_000_000),
        dynamodb_rru=Decimal(4_000_000),
        dynamodb_gb=Decimal(2),
        s3_puts=Decimal(2_000),
        s3_gets=Decimal(2_000),
        s3_gb=Decimal(1),
        sfn_transitions=Decimal(5_000),
        api_requests=Decimal(1_000_000),
        log_gb=Decimal(3),
        kms_requests=Decimal(20_000),
        secrets_calls=Decimal(10_000),
        xray_traces=Decimal(100_000),
        firehose_records=Decimal(2_000_000),
        firehose_gb=Decimal(4),
    )
    costs = cost.breakdown(usage, {}, Decimal(1_000_000))
    assert costs == {
        "Lambda": Decimal(0),
        "SQS": Decimal("1.2"),
        "EventBridge": Decimal("2"),
        "DynamoDB": Decimal("5") + Decimal("0.5") + Decimal("0.5"),
        "S3": Decimal("0.01") + Decimal("0.0008") + Decimal("0.023"),
        "Step Functions": Decimal("0.125"),
        "API Gateway": Decimal("3.5"),
        "CloudWatch Logs": Decimal("1.5"),
        "KMS": Decimal("0.06"),
        "Secrets Manager": Decimal("0.05"),
        "X-Ray": Decimal("0.5"),
        # 2M records billed at 5 KB each = 10.24 GB at $0.029, plus 4 GB partitioned at $0.020.
        "Firehose": Decimal("10.24") * Decimal("0.029") + Decimal("0.08"),
    }
    assert all(isinstance(v, Decimal) for v in costs.values())


def test_breakdown_scales_linearly_and_refuses_empty_usage() -> None:
    usage = cost.Usage(units=Decimal(250), eventbridge_events=Decimal(250))
    assert cost.breakdown(usage, {}, Decimal(1_000_000))["EventBridge"] == Decimal(1)
    with pytest.raises(ValueError, match="at least one unit"):
        cost.breakdown(cost.Usage(units=Decimal(0)), {}, Decimal(1))
    with pytest.raises(KeyError, match="ghost"):
        cost.breakdown(cost.Usage(units=Decimal(1), lambda_invocations={"ghost": Decimal(1)}), {}, Decimal(1))


def test_monthly_fixed_costs_count_what_the_template_creates() -> None:
    assert cost.monthly_fixed(TEMPLATE) == {
        "secret": Decimal("0.40"),
        "kms_key": Decimal("1.00"),
        "alarm": Decimal("0.20"),
        "dashboard": Decimal(0),
    }


SPIKE = {
    "entries": 1000,
    "milestones": 10,
    "webhooks": 10,
    "files": 2,
    "file_bytes": 150_000,
    "entries_phase_s": 200.0,
    "period_end_flush_s": 40.0,
    "milestones_phase_s": 30.0,
    "posting_mode": "summary",
    "erp_by_record_type": {"timeBill": 20, "invoice": 10},
    "usage": {
        "invocations": {"time_posting": 100, "file_intake": 2, "invoice_workflow": 50},
        "seconds": {"time_posting": 50.0, "file_intake": 4.0, "invoice_workflow": 10.0},
        "cpu_seconds": {"time_posting": 20.0, "file_intake": 1.0, "invoice_workflow": 3.0},
        "records": {"time_posting": 1000, "file_intake": 2},
        "calls": {
            "time_posting dynamodb:PutItem": 3000,
            "time_posting dynamodb:Query": 1000,
            "time_posting events:PutEvents": 1000,
            "file_intake events:PutEvents": 1000,
            "file_intake s3:GetObject": 2,
            "invoice_workflow dynamodb:PutItem": 40,
        },
        "units": {
            "time_posting dynamodb:PutItem": 4000,
            "time_posting dynamodb:Query": 9000,
            "invoice_workflow dynamodb:PutItem": 60,
        },
        "items": {"time_posting events:PutEvents": 1000, "file_intake events:PutEvents": 1000},
        "bytes_written": {"time_posting": 2_000_000},
        "log_bytes": {"time_posting": 1_000_000, "invoice_workflow": 5000},
    },
}


def test_entry_usage_is_taken_from_the_entry_functions_only() -> None:
    settings = cost.function_settings(TEMPLATE)
    usage = cost.usage_from_spike(
        SPIKE, settings, kind="entries", states_per_execution=5, scale_to=Decimal(1_000_000)
    )
    assert usage.units == 1000
    assert usage.lambda_invocations == {"file_intake": 2, "time_posting": 100}
    # billed duration: CPU + a typical latency per AWS call (3000 puts + 1000 queries at 6 ms, 1000 PutEvents
    # at 20 ms); the local wall time is kept apart as the upper bound
    assert usage.lambda_seconds["time_posting"] == Decimal(20) + Decimal("24") + Decimal("20")
    assert usage.lambda_seconds["file_intake"] == Decimal(1) + Decimal("20") + Decimal("0.05")
    assert usage.local_wall_seconds == {"time_posting": Decimal("50.0"), "file_intake": Decimal("4.0")}
    assert usage.sqs_requests == (1000 + 2 * 100) + (2 + 2 * 2)  # delivered + receive + delete per batch
    assert usage.eventbridge_events == 2000
    assert (usage.dynamodb_wru, usage.dynamodb_rru) == (4000, 9000)
    assert usage.s3_puts == 2 and usage.s3_gets == 2  # the two files: dropped, then read
    assert usage.dynamodb_gb == Decimal("0.002") and usage.s3_gb == Decimal("0.00015")
    assert usage.log_gb == (Decimal(1_000_000) + 102 * cost.PLATFORM_LOG_BYTES) / cost.GB
    assert usage.api_requests == 0 and usage.sfn_transitions == 0


def test_invoice_usage_counts_webhooks_and_state_transitions() -> None:
    settings = {
        **cost.function_settings(TEMPLATE),
        "invoice_workflow": cost.FunctionSetting(256, "arm64", None),
    }
    usage = cost.usage_from_spike(
        SPIKE, settings, kind="invoices", states_per_execution=5, scale_to=Decimal(1000)
    )
    assert usage.units == 10
    assert usage.api_requests == 10 and usage.sfn_transitions == 50
    # 3 s CPU + 40 puts at 6 ms + 10 invoices at the ERP's 300 ms
    assert usage.lambda_seconds["invoice_workflow"] == Decimal(3) + Decimal("0.24") + Decimal(3)
    assert usage.dynamodb_wru == 60 and usage.sqs_requests == 0  # invoked by Step Functions, not SQS


def test_measured_spikes_are_found_in_a_results_document_without_flooded_or_unmeasured_ones() -> None:
    document = {
        "spike": [
            {"section": "spike", "name": "a", "detail": {"measured": True, "entries": 5, "usage": {}}},
            {"section": "spike", "name": "b", "detail": {"measured": False, "entries": 50}},
            {"section": "spike", "name": "c", "detail": {"measured": True, "entries": 9, "usage": {}}},
        ],
        "isolation": [
            {"section": "spike", "detail": {"measured": True, "entries": 99, "usage": {}, "flood_records": 9}}
        ],
    }
    found = cost.measured_spikes(document)
    assert [s["entries"] for s in found] == [5, 9]
    assert cost.largest(found) == {"measured": True, "entries": 9, "usage": {}}
    assert cost.largest([]) is None


def test_cents_round_half_up() -> None:
    assert cost.cents(Decimal("0.125")) == Decimal("0.13")
    assert cost.cents(Decimal("4.994999")) == Decimal("4.99")
