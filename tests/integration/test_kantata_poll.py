"""The Kantata poll on moto (DynamoDB, S3) against the Kantata sandbox on 127.0.0.1: paging, the
watermark per resource, 429s ridden out (the client's sleep is injected: nothing really waits), bad
records turned into exceptions while the good ones proceed, raw pages kept, and a poll that dies half way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.saas_sandbox import KantataSandbox
from r2r_core.flows.ingest import RawArchive
from r2r_core.flows.kantata_poll import link_workspace, poll_kantata, watermark_key
from r2r_core.model.entities import ClosedWonDeal
from r2r_core.model.events import EventEnvelope
from r2r_core.psa.kantata import KantataClient, KantataCredentials
from r2r_core.runtime import reset_clients
from r2r_core.state import AuditLog, StateStore
from tests.conftest import create_state_and_audit_tables
from tests.e2e.kantata_seed import CLOSED_WON, seed_week

BUCKET = "raw-archive"


class FakePublisher:
    def __init__(self, fail_at: int | None = None) -> None:
        self.published: list[EventEnvelope] = []
        self.fail_at = fail_at

    def publish(self, envelope: EventEnvelope) -> None:
        if self.fail_at is not None and len(self.published) + 1 >= self.fail_at:
            self.fail_at = None
            raise RuntimeError("EventBridge unavailable")
        self.published.append(envelope)


class Clock:
    """The sandbox's clock: every record gets a distinct second unless told otherwise."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def world() -> Iterator[dict[str, Any]]:
    with KantataSandbox(clock=Clock()) as sandbox, mock_aws():
        reset_clients()
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_state_and_audit_tables(ddb)
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        store, audit = StateStore("state", ddb), AuditLog("audit", ddb)
        deal = ClosedWonDeal.model_validate(CLOSED_WON["body"]["data"])
        store.put_new(
            {"pk": f"ENG#{deal.engagement.id}", "sk": "TERMS", "version": 1, "deal": deal.model_dump_json()}
        )
        sleeps: list[float] = []
        client = KantataClient(
            sandbox.url,
            KantataCredentials.from_secret_json(json.dumps(sandbox.secret_values())),
            sleep=sleeps.append,
        )
        yield {
            "sandbox": sandbox,
            "store": store,
            "audit": audit,
            "s3": s3,
            "client": client,
            "sleeps": sleeps,
            "archive": RawArchive(BUCKET, s3),
        }
        reset_clients()


def poll(world: dict[str, Any], publisher: FakePublisher, **options: Any) -> dict[str, Any]:
    return poll_kantata(
        kantata=world["client"],
        store=world["store"],
        audit=world["audit"],
        publisher=publisher,
        archive=world["archive"],
        **options,
    )


def linked(world: dict[str, Any]) -> str:
    workspace = world["sandbox"].seed("workspaces", {"title": "Acme cloud migration", "currency": "USD"})
    link_workspace(
        world["store"], world["audit"], workspace_id=workspace, engagement_id="eng-acme-cloud-2026"
    )
    return workspace


def test_pages_are_read_in_full_and_each_entry_published_once(world: dict[str, Any]) -> None:
    workspace = linked(world)
    seeded = seed_week(world["sandbox"], workspace, entries=7)
    publisher = FakePublisher()
    result = poll(world, publisher, per_page=3)
    entries = [e for e in publisher.published if e.type == "time_entry.approved"]
    assert sorted(e.data["id"] for e in entries) == sorted(f"kantata-te-{i}" for i in seeded["time_entries"])
    assert result["time_entries"]["pages"] == 3  # 7 entries, 3 per page
    assert next(e for e in publisher.published if e.type == "expense.approved").data["amount"] == {
        "amount": "412.70",
        "currency": "USD",
    }
    assert world["sandbox"].stats()["GET time_entries"] == 3


def test_the_watermark_makes_a_second_poll_publish_nothing(world: dict[str, Any]) -> None:
    workspace = linked(world)
    seed_week(world["sandbox"], workspace, entries=10)  # one second apart
    first = FakePublisher()
    poll(world, first, per_page=3)
    mark = world["store"].get(*watermark_key("time_entries"))
    newest = max(r["updated_at"] for r in world["sandbox"].records("time_entries"))
    assert mark["since"] == newest
    second = FakePublisher()
    result = poll(world, second, per_page=3)
    assert second.published == []
    # Only the last few seconds were read again (the 5 s overlap), never the whole history.
    assert 0 < result["time_entries"]["read"] <= 6
    # A change after the watermark is read and published on the next poll.
    changed = world["sandbox"].records("time_entries")[0]["id"]
    world["sandbox"].update("time_entries", changed, {"approved": False})
    third = FakePublisher()
    poll(world, third, per_page=3)
    assert [(e.data["id"], e.data["status"]) for e in third.published] == [
        (f"kantata-te-{changed}", "unapproved")
    ]


def test_a_burst_of_429s_is_ridden_out_with_backoff_and_retry_after(world: dict[str, Any]) -> None:
    workspace = linked(world)
    seed_week(world["sandbox"], workspace, entries=2)
    world["sandbox"].throttle(3)  # Kantata's usual 429: no Retry-After
    world["sandbox"].throttle(1, retry_after=2)
    publisher = FakePublisher()
    poll(world, publisher)
    assert len([e for e in publisher.published if e.type == "time_entry.approved"]) == 2
    sleeps = world["sleeps"]
    assert len(sleeps) == 4 and sleeps[3] == 2.0  # the last one honoured Retry-After
    assert all(0 <= s <= 4.0 for s in sleeps[:3])  # jittered within 1, 2, 4 s windows
    assert world["sandbox"].stats()["429"] == 4


def test_a_bad_record_is_one_exception_with_its_raw_page_and_the_good_ones_proceed(
    world: dict[str, Any],
) -> None:
    workspace = linked(world)
    seed_week(world["sandbox"], workspace, entries=3)
    bad = world["sandbox"].seed(
        "time_entries",
        {
            "date_performed": "2026-11-18",
            "time_in_minutes": 90.5,
            "approved": True,
            "workspace_id": workspace,
            "user_id": "77002",
            "role_id": "502",
        },
    )
    publisher = FakePublisher()
    result = poll(world, publisher)
    assert result["time_entries"]["rejected"] == 1
    assert len([e for e in publisher.published if e.type == "time_entry.approved"]) == 3
    [exception] = [e for e in world["store"].exceptions() if e["connector"] == "kantata"]
    assert (exception["kind"], exception["field"], exception["kantata_id"]) == (
        "connector_rejected",
        "time_in_minutes",
        bad,
    )
    assert f"Kantata time_entries {bad}" in exception["record"]
    raw = world["s3"].get_object(Bucket=BUCKET, Key=exception["archived_as"])["Body"].read()
    assert b"90.5" in raw
    # Polled again: the same exception, not a second one.
    poll(world, FakePublisher())
    assert len([e for e in world["store"].exceptions() if e["connector"] == "kantata"]) == 1


def test_time_of_an_unlinked_workspace_is_one_waiting_exception_per_workspace(world: dict[str, Any]) -> None:
    workspace = world["sandbox"].seed("workspaces", {"title": "Not billed through r2r", "currency": "USD"})
    seed_week(world["sandbox"], workspace, entries=3)
    publisher = FakePublisher()
    result = poll(world, publisher)
    assert result["time_entries"]["unlinked"] == 3
    assert [e for e in publisher.published if e.type == "time_entry.approved"] == []
    [waiting] = [e for e in world["store"].exceptions() if e["kind"] == "connector_waiting"]
    assert waiting["workspace_id"] == workspace


def test_a_poll_that_dies_half_way_keeps_the_pages_published_and_the_next_goes_on(
    world: dict[str, Any],
) -> None:
    workspace = linked(world)
    seeded = seed_week(world["sandbox"], workspace, entries=6)
    dying = FakePublisher(fail_at=6)  # workspace event, then entries: dies on page 2 of time entries
    with pytest.raises(RuntimeError):
        poll(world, dying, per_page=3)
    mark = world["store"].get(*watermark_key("time_entries"))
    page_1 = sorted(world["sandbox"].records("time_entries"), key=lambda r: r["updated_at"])[:3]
    assert mark["since"] == page_1[-1]["updated_at"]  # page 1 done, page 2 not
    survivor = FakePublisher()
    poll(world, survivor, per_page=3)
    published = [
        e.data["id"] for e in dying.published + survivor.published if e.type == "time_entry.approved"
    ]
    assert sorted(set(published)) == sorted(f"kantata-te-{i}" for i in seeded["time_entries"])
    assert len(published) == len(set(published))  # nothing twice


def test_records_moving_while_paging_rewind_the_watermark(world: dict[str, Any]) -> None:
    workspace = linked(world)
    seed_week(world["sandbox"], workspace, entries=6)
    sandbox = world["sandbox"]
    original = world["client"].list_page

    def list_page(resource: str, *, page: int, per_page: int, params: Any = None) -> Any:
        if resource == "time_entries" and page == 2:
            # An entry of page 1 is edited meanwhile: it moves to the end, shifting one unread entry
            # onto page 1.
            first = sorted(sandbox.records("time_entries"), key=lambda r: r["updated_at"])[0]
            sandbox.update("time_entries", first["id"], {"notes": "edited"})
        return original(resource, page=page, per_page=per_page, params=params)

    world["client"].list_page = list_page
    publisher = FakePublisher()
    result = poll(world, publisher, per_page=3)
    assert result["time_entries"]["rewound"]
    world["client"].list_page = original
    again = FakePublisher()
    poll(world, again, per_page=3)
    published = {
        e.data["id"] for e in publisher.published + again.published if e.type == "time_entry.approved"
    }
    assert published == {f"kantata-te-{r['id']}" for r in sandbox.records("time_entries")}


def test_a_link_needs_a_known_engagement(world: dict[str, Any]) -> None:
    with pytest.raises(LookupError, match="eng-unknown"):
        link_workspace(world["store"], world["audit"], workspace_id="4201", engagement_id="eng-unknown")
    with pytest.raises(ValueError, match="not a number"):
        link_workspace(
            world["store"], world["audit"], workspace_id="ws-1", engagement_id="eng-acme-cloud-2026"
        )
