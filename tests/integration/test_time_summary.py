"""Summary posting mode: same charges, lineage and invoices as detail mode, a few ERP records per period.

Both modes run the sold-to-billed scenario on moto DynamoDB with an in-memory ERP that counts its
requests; the ERP's time (hours, and hours × rate of billable time) must be identical in both modes,
also after corrections and reversals, and redeliveries or repeated flushes must post nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from r2r_core.erp.mapping import ErpMapping
from r2r_core.flows.charges import charge_of
from r2r_core.flows.invocation_reads import InvocationReads
from r2r_core.flows.invoicing import InvoiceSteps
from r2r_core.flows.period_close import period_end_items
from r2r_core.flows.project_setup import set_up_project
from r2r_core.flows.time_posting import SummaryCounts, post_time
from r2r_core.flows.time_summary import PENDING_SK, flush_ended_periods, flush_period, pending_periods
from r2r_core.runtime import reset_clients
from r2r_core.state import AuditLog, StateStore, _to_item
from tests.integration.test_billing_flows import FakeErp, FakePublisher, complete_milestone, envelope

SCENARIO = Path(__file__).resolve().parents[2] / "events" / "scenarios" / "sold-to-billed"
DUPLICATE = "18-duplicate-delivery-maria-lopez-2026-11-18.json"
TIME_FILES = [*sorted(p.name for p in SCENARIO.glob("*-time-*.json")), DUPLICATE]
ENGAGEMENT = "eng-acme-cloud-2026"
SUMMARY = ErpMapping(time_posting="summary", summary_flush_changes=1000)


class CountingErp(FakeErp):
    """FakeErp plus NetSuite's delete by external id; counts every request by method."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str, str]] = []

    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str:
        self.requests.append(("PUT", record_type, external_id))
        return super().upsert(record_type, external_id, body)

    def delete_by_external_id(self, record_type: str, external_id: str) -> bool:
        self.requests.append(("DELETE", record_type, external_id))
        return self.records.pop((record_type, external_id), None) is not None

    def time_requests(self) -> int:
        return sum(1 for _, record_type, _ in self.requests if record_type == "timeBill")

    def time_totals(self) -> tuple[Decimal, Decimal]:
        """(hours, hours × rate of billable time) over every timeBill in the ERP."""
        hours, amount = Decimal(0), Decimal(0)
        for record in self.of_type("timeBill"):
            hours += Decimal(record["hours"])
            if record["isBillable"]:
                amount += Decimal(record["hours"]) * Decimal(record["rate"])
        return hours, amount


@pytest.fixture
def both() -> Iterator[dict[str, dict[str, Any]]]:
    """Two independent worlds, one per posting mode (two tables pairs in one moto)."""
    with mock_aws():
        reset_clients()
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        worlds: dict[str, dict[str, Any]] = {}
        for mode in ("detail", "summary"):
            _create_tables(ddb, mode)
            store, audit = StateStore(f"state-{mode}", ddb), AuditLog(f"audit-{mode}", ddb)
            erp, publisher = CountingErp(), FakePublisher()
            steps = InvoiceSteps(
                store=store,
                audit=audit,
                erp=lambda erp=erp: erp,  # type: ignore[misc]
                publisher=lambda publisher=publisher: publisher,  # type: ignore[misc]
                today=lambda: datetime(2026, 11, 23, tzinfo=UTC),
            )
            worlds[mode] = {
                "store": store,
                "audit": audit,
                "erp": erp,
                "publisher": publisher,
                "steps": steps,
                "mapping": SUMMARY if mode == "summary" else ErpMapping(),
            }
        yield worlds
        reset_clients()


def _create_tables(ddb: Any, mode: str) -> None:
    """A state and an audit table per world, laid out as the stack defines them."""
    for name in ("state", "audit"):
        ddb.create_table(
            TableName=f"{name}-{mode}",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )


def set_up(world: dict[str, Any]) -> None:
    set_up_project(
        envelope("01-opportunity-closed-won.json"),
        store=world["store"],
        audit=world["audit"],
        erp=world["erp"],
    )


def post(world: dict[str, Any], file_name: str, **overrides: Any) -> dict[str, Any]:
    return post_time(
        envelope(file_name, **overrides),
        store=world["store"],
        audit=world["audit"],
        erp=world["erp"],
        mapping=world["mapping"],
        publisher=world["publisher"],
    )


def period_end_flush(world: dict[str, Any], today: date = date(2026, 12, 1)) -> int:
    """The flush as the tick makes it: from the items the tick read for both its steps."""
    flushed = flush_ended_periods(
        world["store"],
        world["audit"],
        world["erp"],
        world["mapping"],
        today=today,
        correlation_id="tick-1",
        publisher=world["publisher"],
        items=period_end_items(world["store"]),
    )
    assert flushed.remaining == 0
    return sum(r.erp_requests for r in flushed.results)


def time_revenue(world: dict[str, Any]) -> dict[tuple[str, str], Decimal]:
    """The revenue time recognised, as published (``revenue.recognized`` of time entries or summaries),
    summed by project and currency; each event counted once (consumers deduplicate on its id)."""
    events = {
        e.source_record_id: e.data
        for e in world["publisher"].published
        if e.type == "revenue.recognized" and e.source_record_id.startswith("rev-time")
    }
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for data in events.values():
        totals[(data["project_id"], data["amount"]["currency"])] += Decimal(data["amount"]["amount"])
    return {key: total for key, total in totals.items() if total}


def test_sold_to_billed_bills_the_same_invoice_and_posts_the_same_time_in_both_modes(
    both: dict[str, dict[str, Any]],
) -> None:
    states = {}
    for mode, world in both.items():
        set_up(world)
        for name in TIME_FILES:
            post(world, name)
        if mode == "summary":
            period_end_flush(world)
        states[mode] = complete_milestone(world)

    detail, summary = both["detail"], both["summary"]
    # Same invoice, line for line.
    [detail_invoice] = detail["erp"].of_type("invoice")
    [summary_invoice] = summary["erp"].of_type("invoice")
    assert summary_invoice["item"] == detail_invoice["item"]
    assert states["summary"]["invoice_total"] == states["detail"]["invoice_total"]
    # Same time in the ERP: 16 distinct entries (one duplicate delivery) in detail mode ...
    assert len(detail["erp"].of_type("timeBill")) == 16
    assert summary["erp"].time_totals() == detail["erp"].time_totals()
    # ... and one record per project, role, region, rate and billable flag in summary mode:
    # Solution Architect EMEA, Cloud Engineer NA (Maria), Cloud Engineer EMEA (Tom), Tom's training.
    assert len(summary["erp"].of_type("timeBill")) == 4
    assert summary["erp"].time_requests() == 4 and detail["erp"].time_requests() == 16
    # Every charge keeps its lineage: decision per entry, and the summary record it was posted in.
    charges = list(summary["store"].query_prefix(f"ENG#{ENGAGEMENT}", "CHARGE#"))
    assert len(charges) == 16
    assert all(c["erp_summary_external_id"].startswith("r2r-timesum-") for c in charges)
    assert all("erp_time_bill_id" not in c for c in charges)
    group = summary["store"].get(
        f"ENG#{ENGAGEMENT}", f"TIMESUM#GROUP#{charges[0]['erp_summary_external_id']}"
    )
    assert f"{charges[0]['source_id']}@v1" in group["members"]
    # The same revenue recognised: per entry in detail mode, per summary record in summary mode.
    assert time_revenue(summary) == time_revenue(detail) != {}
    per_entry = [e for e in detail["publisher"].published if e.source_record_id.startswith("rev-time-")]
    per_group = [e for e in summary["publisher"].published if e.source_record_id.startswith("rev-timesum-")]
    assert not [e for e in summary["publisher"].published if e.source_record_id.startswith("rev-time-")]
    assert len(per_group) <= 4 < len(per_entry)
    assert all(e.data["recognized_on"] == "2026-11-30" for e in per_group)
    # Its lineage: the group's events name their entries.
    assert sorted(i for e in per_group for i in e.data["source_ids"]) == sorted(
        {str(c["source_id"]) for c in charges if c.get("revenue_recognised")}
    )


def test_corrections_and_reversals_leave_the_same_time_in_the_erp_as_detail_mode(
    both: dict[str, dict[str, Any]],
) -> None:
    for world in both.values():
        set_up(world)
        for name in TIME_FILES:
            post(world, name)
    period_end_flush(both["summary"])
    for world in both.values():
        post(world, "12-time-maria-lopez-2026-11-16.json", version=2, hours="6")  # correction
        post(world, "02-time-priya-sharma-2026-11-16.json", version=2, status="unapproved")  # reversal
        # moved to another month: the November record shrinks, a December one appears
        post(world, "07-time-tom-becker-2026-11-16.json", version=2, work_date="2026-12-01")
    summary = both["summary"]
    assert pending_periods(summary["store"], ENGAGEMENT) == ["2026-11", "2026-12"]
    assert period_end_flush(summary, today=date(2027, 1, 1)) > 0
    assert summary["erp"].time_totals() == both["detail"]["erp"].time_totals()
    assert pending_periods(summary["store"], ENGAGEMENT) == []
    hours = {Decimal(r["hours"]) for r in summary["erp"].of_type("timeBill") if r["tranDate"] == "2026-12-31"}
    assert hours == {Decimal(8)}  # Tom's 8 h, now December's
    # The revenue follows: the November groups publish what they lost (negative), December what it gained.
    assert time_revenue(summary) == time_revenue(both["detail"]) != {}
    negative = [
        e
        for e in summary["publisher"].published
        if e.source_record_id.startswith("rev-timesum-") and Decimal(e.data["amount"]["amount"]) < 0
    ]
    assert negative and all(e.data["recognized_on"] == "2026-11-30" for e in negative)


def test_a_group_left_empty_is_deleted_from_the_erp(both: dict[str, dict[str, Any]]) -> None:
    world = both["summary"]
    set_up(world)
    post(world, "17-time-tom-becker-training-non-billable.json")
    period_end_flush(world)
    assert len(world["erp"].of_type("timeBill")) == 1
    post(world, "17-time-tom-becker-training-non-billable.json", version=2, work_date="2026-12-01")
    period_end_flush(world, today=date(2027, 1, 1))
    [record] = world["erp"].of_type("timeBill")
    assert record["tranDate"] == "2026-12-31"
    assert ("DELETE", "timeBill") in {(m, t) for m, t, _ in world["erp"].requests}


def test_redeliveries_and_repeated_flushes_post_nothing_twice(both: dict[str, dict[str, Any]]) -> None:
    world = both["summary"]
    set_up(world)
    for name in TIME_FILES:
        post(world, name)
    first = period_end_flush(world)
    assert first == 4
    # The whole week again (a replay): duplicates change nothing, so the flush posts nothing.
    for name in TIME_FILES:
        assert post(world, name)["duplicate"] is True
    assert period_end_flush(world) == 0
    result = flush_period(
        world["store"],
        world["audit"],
        world["erp"],
        world["mapping"],
        engagement_id=ENGAGEMENT,
        period="2026-11",
        correlation_id="again",
    )
    assert result.erp_requests == 0 and result.revenue_events == 0
    assert world["erp"].time_requests() == 4


def test_open_periods_wait_and_a_period_flushes_itself_after_enough_changes(
    both: dict[str, dict[str, Any]],
) -> None:
    world = both["summary"]
    world["mapping"] = ErpMapping(time_posting="summary", summary_flush_changes=5)
    set_up(world)
    maria = [n for n in TIME_FILES if "maria-lopez-2026" in n and "duplicate" not in n]  # 5 entries, 1 group
    for name in maria[:4]:
        assert post(world, name)["summary_flushed"] == 0
    assert world["erp"].time_requests() == 0
    assert post(world, maria[4])["summary_flushed"] == 1  # the 5th change flushes the period
    assert world["erp"].time_requests() == 1
    assert world["store"].get(f"ENG#{ENGAGEMENT}", f"{PENDING_SK}2026-11") is None
    # November has not ended on 30 November: the period-end tick leaves a pending open period alone.
    post(world, "02-time-priya-sharma-2026-11-16.json")
    assert period_end_flush(world, today=date(2026, 11, 30)) == 0
    assert period_end_flush(world, today=date(2026, 12, 1)) == 1


def test_a_period_changed_during_a_flush_stays_pending(both: dict[str, dict[str, Any]]) -> None:
    world = both["summary"]
    set_up(world)
    post(world, "02-time-priya-sharma-2026-11-16.json")

    class ChangesMeanwhile(CountingErp):
        def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str:
            if not self.requests:  # another entry of the period is recorded while the flush posts
                post(world, "03-time-priya-sharma-2026-11-17.json")
            return super().upsert(record_type, external_id, body)

    world["erp"] = ChangesMeanwhile()
    assert period_end_flush(world) == 1
    assert pending_periods(world["store"], ENGAGEMENT) == ["2026-11"]
    assert period_end_flush(world) == 1  # the next flush posts both days: 8 h + 7.5 h
    [record] = world["erp"].of_type("timeBill")
    assert Decimal(record["hours"]) == Decimal("15.5")


def test_the_period_end_flush_stops_at_its_deadline_and_says_what_is_left(
    both: dict[str, dict[str, Any]],
) -> None:
    world = both["summary"]
    set_up(world)
    post(world, "02-time-priya-sharma-2026-11-16.json")
    late = flush_ended_periods(
        world["store"],
        world["audit"],
        world["erp"],
        world["mapping"],
        today=date(2026, 12, 1),
        correlation_id="tick-1",
        deadline=0.0,  # already past
    )
    assert (late.results, late.remaining) == ([], 1)
    assert world["erp"].time_requests() == 0
    assert period_end_flush(world) == 1  # the retry flushes it


def test_the_period_end_flush_workers_see_the_callers_environment(both: dict[str, dict[str, Any]]) -> None:
    """Clients created inside the flush's worker threads are made for the caller's environment."""
    from r2r_core.runtime import environ, use_environ

    world = both["summary"]
    set_up(world)
    for name in TIME_FILES[:3]:
        post(world, name)
    seen: list[str | None] = []

    class Watching(CountingErp):
        def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str:
            seen.append(environ().get("R2R_TEST_MARKER"))
            return super().upsert(record_type, external_id, body)

    world["erp"] = Watching()
    with use_environ({"R2R_TEST_MARKER": "the caller's"}):
        assert period_end_flush(world) == 1
    assert seen == ["the caller's"]


class CrashOnce:
    """Raises once where the process dies: a state-store or publisher call matching ``when``."""

    def __init__(self, wrapped: Any, when: Any) -> None:
        self._wrapped, self._when, self.crashed = wrapped, when, False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._wrapped, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if not self.crashed and self._when(name, args, kwargs):
                self.crashed = True
                raise RuntimeError(f"the Lambda died in {name}")
            return target(*args, **kwargs)

        return call


def _summary_count(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return name == "add_count" and str(args[1]).startswith(PENDING_SK)


def _revenue_publish(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return name == "publish" and args[0].type == "revenue.recognized"


@pytest.mark.parametrize(
    ("mode", "crash_at"),
    [("summary", _summary_count), ("detail", _revenue_publish)],
    ids=["summary-after-charge", "detail-at-publish"],
)
def test_a_redelivery_after_a_crash_past_the_charge_write_completes_the_steps_after_it(
    both: dict[str, dict[str, Any]], mode: str, crash_at: Any
) -> None:
    """No idempotency record guards time_posting: the redelivered version finds its charge recorded and
    completes what the crash left undone (summary count or revenue event, audit), each once."""
    world = both[mode]
    set_up(world)
    name = TIME_FILES[0]
    event = envelope(name)
    entry_id = event.source_record_id
    store, publisher = world["store"], world["publisher"]
    crashing_store, crashing_publisher = CrashOnce(store, crash_at), CrashOnce(publisher, crash_at)
    with pytest.raises(RuntimeError, match="the Lambda died"):
        post_time(
            event,
            store=crashing_store,  # type: ignore[arg-type]
            audit=world["audit"],
            erp=world["erp"],
            mapping=world["mapping"],
            publisher=crashing_publisher,  # type: ignore[arg-type]
        )
    charge = store.get(f"ENG#{ENGAGEMENT}", f"CHARGE#{entry_id}")
    assert charge is not None  # recorded; what follows it was not done
    assert not [e for e in publisher.published if e.type == "revenue.recognized"]
    assert not world["audit"].history("time_entry", entry_id)

    # SQS delivers the same message again, twice (a redelivery can itself be duplicated): the first
    # completes the steps, the second finds the audit record and redoes (and republishes) nothing.
    for _ in range(2):
        again = post_time(
            envelope(name),
            store=store,
            audit=world["audit"],
            erp=world["erp"],
            mapping=world["mapping"],
            publisher=publisher,
        )
        assert again["duplicate"] is True

    # The audit record names the engagement: an operator finds the charge by the entry's id alone.
    found = charge_of(store, world["audit"], kind="time", source_id=entry_id)
    assert found is not None and found["pk"] == f"ENG#{ENGAGEMENT}" and found["version"] == 1
    actions = [item["action"] for item in world["audit"].history("time_entry", entry_id)]
    assert actions.count(f"charge_{charge['decision']}") == 1
    revenue = [e for e in publisher.published if e.type == "revenue.recognized"]
    amount = {"amount": str(charge["revenue_recognised"]), "currency": charge["currency"]}
    if mode == "detail":
        assert [(e.source_record_id, e.data["amount"]) for e in revenue] == [
            (f"rev-time-{entry_id}-v1", amount)
        ]
        assert world["erp"].time_requests() == 1
        return
    pending = store.get(f"ENG#{ENGAGEMENT}", f"{PENDING_SK}{charge['erp_summary_period']}")
    assert pending is not None and pending["changes"] >= 1
    assert revenue == []  # summary mode: the revenue goes with the summary posting
    # And the period's summary posts the entry like any other, with its revenue.
    period_end_flush(world)
    assert world["erp"].time_requests() == 1
    revenue = [e for e in publisher.published if e.type == "revenue.recognized"]
    assert [(e.data["amount"], e.data["source_ids"]) for e in revenue] == [(amount, [entry_id])]


def _batch(world: dict[str, Any], names: list[str], counts: SummaryCounts) -> None:
    """One invocation's records, posted as the handler posts them (shared reads and counts)."""
    reads = InvocationReads()
    for name in names:
        post_time(
            envelope(name),
            store=world["store"],
            audit=world["audit"],
            erp=world["erp"],
            mapping=world["mapping"],
            reads=reads,
            counts=counts,
        )


def _pending_changes(world: dict[str, Any]) -> int | None:
    item = world["store"].get(f"ENG#{ENGAGEMENT}", f"{PENDING_SK}2026-11")
    return None if item is None else int(item["changes"])


def test_a_batch_counts_its_changes_of_a_period_in_two_updates_and_flushes_at_the_threshold(
    both: dict[str, dict[str, Any]],
) -> None:
    world = both["summary"]
    world["mapping"] = ErpMapping(time_posting="summary", summary_flush_changes=5)
    set_up(world)
    maria = [n for n in TIME_FILES if "maria-lopez-2026" in n and "duplicate" not in n]  # 5 entries, 1 period
    counts = SummaryCounts()
    _batch(world, maria[:4], counts)
    # The first change made the period pending at once; the other three wait for the end of the batch.
    assert _pending_changes(world) == 1
    assert counts.apply() == 0
    assert _pending_changes(world) == 4
    # The next batch's change reaches the threshold at once: the period is flushed, nothing is pending.
    counts = SummaryCounts()
    _batch(world, maria[4:], counts)
    assert counts.apply() == 0
    assert world["erp"].time_requests() == 1
    assert _pending_changes(world) is None


def test_a_batch_that_dies_before_counting_is_counted_by_its_redelivery(
    both: dict[str, dict[str, Any]],
) -> None:
    world = both["summary"]
    set_up(world)
    priya = [n for n in TIME_FILES if "priya-sharma" in n]
    _batch(world, priya, SummaryCounts())  # recorded, audited … and the invocation dies before apply()
    assert _pending_changes(world) == 1  # still pending: the period-end flush would post every day
    # SQS delivers the whole batch again: each redelivery counts its change again (spare counts only).
    redelivery = SummaryCounts()
    _batch(world, priya, redelivery)
    redelivery.apply()
    assert _pending_changes(world) == 1 + len(priya)
    assert period_end_flush(world) == 1
    [record] = world["erp"].of_type("timeBill")
    assert Decimal(record["hours"]) == sum(
        (Decimal(str(envelope(n).data["hours"])) for n in priya), Decimal(0)
    )


def test_a_flush_that_dies_before_publishing_its_revenue_is_completed_by_the_next(
    both: dict[str, dict[str, Any]],
) -> None:
    """The group's revenue events are saved with it before they are published: a flush that dies in
    between leaves them pending, and the next flush of the period publishes them, once, same ids."""
    world = both["summary"]
    set_up(world)
    for name in TIME_FILES:
        post(world, name)
    publisher = world["publisher"]

    class BusDown:
        def publish(self, envelope: Any) -> None:
            raise RuntimeError("EventBridge is down")

    at = datetime(2026, 12, 1, 6, tzinfo=UTC)
    with pytest.raises(RuntimeError, match="EventBridge is down"):
        flush_period(
            world["store"],
            world["audit"],
            world["erp"],
            world["mapping"],
            engagement_id=ENGAGEMENT,
            period="2026-11",
            correlation_id="tick-1",
            publisher=BusDown(),  # type: ignore[arg-type]
            now=at,
        )
    assert not [e for e in publisher.published if e.source_record_id.startswith("rev-timesum-")]
    groups = list(world["store"].query_prefix(f"ENG#{ENGAGEMENT}", "TIMESUM#GROUP#"))
    assert [g for g in groups if g.get("revenue_pending")]  # saved, not yet published

    # The next flush (after the dead one's lease) publishes what was pending, and nothing else.
    again = flush_period(
        world["store"],
        world["audit"],
        world["erp"],
        world["mapping"],
        engagement_id=ENGAGEMENT,
        period="2026-11",
        correlation_id="tick-2",
        publisher=publisher,
        now=at + timedelta(minutes=5),
    )
    assert again.flushed and again.revenue_events >= 1
    summary_events = [
        e.source_record_id for e in publisher.published if e.source_record_id.startswith("rev-timesum-")
    ]
    assert len(summary_events) == len(set(summary_events)) == again.revenue_events
    assert not [
        g
        for g in world["store"].query_prefix(f"ENG#{ENGAGEMENT}", "TIMESUM#GROUP#")
        if g.get("revenue_pending")
    ]
    charges = list(world["store"].query_prefix(f"ENG#{ENGAGEMENT}", "CHARGE#"))
    assert sum(time_revenue(world).values()) == sum(Decimal(str(c["revenue_recognised"])) for c in charges)
    # A third flush has nothing to publish.
    assert period_end_flush(world) == 0
    assert len([e for e in publisher.published if e.source_record_id.startswith("rev-timesum-")]) == len(
        summary_events
    )


def test_a_group_saved_before_revenue_went_with_the_posting_keeps_its_own_revenue_from_its_next_flush(
    both: dict[str, dict[str, Any]],
) -> None:
    """Groups saved by an earlier release have no ``revenue``: their entries published revenue one by one
    then. Their next flush takes that as published (nothing is published twice) and saves the group's
    revenue, so every later change publishes its difference."""
    world = both["summary"]
    set_up(world)
    for name in TIME_FILES:
        post(world, name)
    period_end_flush(world)
    store = world["store"]
    for group in store.query_prefix(f"ENG#{ENGAGEMENT}", "TIMESUM#GROUP#"):
        legacy = {k: v for k, v in group.items() if k not in {"revenue", "revenue_pending"}}
        store.client.put_item(TableName=store.table_name, Item=_to_item(legacy))
    before = len(world["publisher"].published)
    post(world, "12-time-maria-lopez-2026-11-16.json", version=2, hours="6")  # 8 h → 6 h
    period_end_flush(world)
    assert not [e for e in world["publisher"].published[before:] if e.type == "revenue.recognized"]
    maria = store.get(f"ENG#{ENGAGEMENT}", "CHARGE#te-maria-lopez-2026-11-16")
    assert "revenue" in store.get(f"ENG#{ENGAGEMENT}", f"TIMESUM#GROUP#{maria['erp_summary_external_id']}")

    post(world, "12-time-maria-lopez-2026-11-16.json", version=3, hours="7")  # 6 h → 7 h
    period_end_flush(world)
    new = [e for e in world["publisher"].published[before:] if e.type == "revenue.recognized"]
    rate = Decimal(str(store.get(f"ENG#{ENGAGEMENT}", "CHARGE#te-maria-lopez-2026-11-16")["rate"]))
    assert [Decimal(e.data["amount"]["amount"]) for e in new] == [rate]  # the 1 h more


def test_an_account_switching_to_summary_mode_publishes_each_entrys_revenue_once(
    both: dict[str, dict[str, Any]],
) -> None:
    """Entries posted in detail mode published their revenue one by one; once the account is in summary
    mode, a new version of such an entry gives that back (a negative event of its own) because its summary
    record publishes all the entry recognises: the revenue published still sums to what r2r holds."""
    world = both["detail"]
    set_up(world)
    for name in TIME_FILES:
        post(world, name)
    world["mapping"] = SUMMARY
    post(world, "12-time-maria-lopez-2026-11-16.json", version=2, hours="6")  # now a summary-mode charge
    period_end_flush(world)

    store = world["store"]
    charges = list(store.query_prefix(f"ENG#{ENGAGEMENT}", "CHARGE#"))
    held: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for c in charges:
        held[(str(c["project_id"]), str(c["currency"]))] += Decimal(str(c.get("revenue_recognised") or 0))
    assert time_revenue(world) == {k: v for k, v in held.items() if v}
    maria = [
        Decimal(e.data["amount"]["amount"])
        for e in world["publisher"].published
        if e.source_record_id.startswith("rev-time-te-maria-lopez-2026-11-16-v")
    ]
    assert len(maria) == 2 and maria[1] == -maria[0] != 0  # v1's revenue, then v2 gives it back


class ReadCounting:
    """A state store that counts the single-item reads of charges."""

    def __init__(self, store: StateStore) -> None:
        self._store, self.charge_reads = store, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def get(self, pk: str, sk: str) -> Any:
        if sk.startswith("CHARGE#"):
            self.charge_reads += 1
        return self._store.get(pk, sk)


@pytest.mark.parametrize("mode", ["detail", "summary"])
def test_a_batch_reads_no_charge_of_its_own_and_a_version_recorded_meanwhile_is_not_posted_twice(
    both: dict[str, dict[str, Any]], mode: str
) -> None:
    """Time and materials: an entry's stored version comes with the engagement's charges the invocation
    read once, so the batch reads no charge item of its own. A version another invocation recorded after
    that read is still refused (or superseded) by the charge's conditional write."""
    world = both[mode]
    set_up(world)
    counting = ReadCounting(world["store"])
    reads = InvocationReads()
    names = [n for n in TIME_FILES if "maria-lopez-2026-11-16" not in n]
    for name in names:
        post_time(
            envelope(name),
            store=counting,  # type: ignore[arg-type]
            audit=world["audit"],
            erp=world["erp"],
            mapping=world["mapping"],
            reads=reads,
        )
    assert counting.charge_reads == 0
    requests = world["erp"].time_requests()

    # Another invocation records Maria's entry; this batch's copy of the charges predates it.
    maria = "12-time-maria-lopez-2026-11-16.json"
    post(world, maria)
    again = post_time(
        envelope(maria),
        store=counting,  # type: ignore[arg-type]
        audit=world["audit"],
        erp=world["erp"],
        mapping=world["mapping"],
        reads=reads,
    )
    assert again["duplicate"] is True
    charge = world["store"].get(f"ENG#{ENGAGEMENT}", "CHARGE#te-maria-lopez-2026-11-16")
    assert charge["version"] == 1
    actions = [r["action"] for r in world["audit"].history("time_entry", "te-maria-lopez-2026-11-16")]
    assert len([a for a in actions if a.startswith("charge_")]) == 1
    # A newer version through the same stale copy supersedes it (the write reads what is stored then).
    newer = post_time(
        envelope(maria, version=2, hours="6"),
        store=counting,  # type: ignore[arg-type]
        audit=world["audit"],
        erp=world["erp"],
        mapping=world["mapping"],
        reads=reads,
    )
    assert newer.get("duplicate") is not True
    charge = world["store"].get(f"ENG#{ENGAGEMENT}", "CHARGE#te-maria-lopez-2026-11-16")
    assert charge["version"] == 2 and Decimal(str(charge["hours"])) == 6
    if mode == "detail":
        assert world["erp"].time_requests() >= requests + 2  # Maria's timeBill, then its correction
    else:
        period_end_flush(world)
        summary_hours = sum(Decimal(r["hours"]) for r in world["erp"].of_type("timeBill"))
        held = sum(
            Decimal(str(c["hours"])) for c in world["store"].query_prefix(f"ENG#{ENGAGEMENT}", "CHARGE#")
        )
        assert summary_hours == held
