"""Kantata OX connector and client without AWS: exact conversions, page shape, bad records, and the
client's retry policy (the sleep and the jitter are injected, so nothing really waits)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from urllib3.exceptions import ReadTimeoutError

from r2r_core.connectors import kantata
from r2r_core.connectors.base import Fields, MappingError
from r2r_core.connectors.directory import MemoryDirectory, Remember
from r2r_core.psa.kantata import (
    KantataClient,
    KantataCredentials,
    KantataPermanentError,
    KantataTransientError,
)

LINK = kantata.link_value(
    engagement_id="eng-1",
    project_id="prj-1",
    client_id="cl-1",
    region="EMEA",
    start_date="2026-11-01",
    business_unit=None,
    currency="USD",
)


def entry(**overrides: Any) -> dict[str, Any]:
    record = {
        "id": "10",
        "date_performed": "2026-11-16",
        "time_in_minutes": 90,
        "billable": True,
        "approved": True,
        "workspace_id": "42",
        "user_id": "7",
        "role_id": "3",
        "updated_at": "2026-11-21T09:30:00Z",
    }
    return record | overrides


ROLES = {"roles": {"3": {"id": "3", "name": "Cloud Engineer"}}}


def linked_directory(**link: Any) -> MemoryDirectory:
    directory = MemoryDirectory()
    directory.put(Remember(kantata.WORKSPACE_LINK, "42", 1, LINK | link))
    return directory


# --- exact conversions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "hours"),
    [
        (480, "8.00"),
        (450, "7.50"),
        (90, "1.50"),
        (45, "0.75"),
        (3, "0.05"),
        (20, "0.33"),
        (1, "0.02"),
        (0, "0.00"),
    ],
)
def test_minutes_become_hours_without_a_float(minutes: int, hours: str) -> None:
    assert kantata.minutes_to_hours(minutes) == Decimal(hours)


@given(st.integers(min_value=0, max_value=480))
def test_every_multiple_of_three_minutes_is_exact(third: int) -> None:
    minutes = third * 3
    assert kantata.minutes_to_hours(minutes) * 60 == minutes


@pytest.mark.parametrize(
    ("cents", "currency", "base", "amount"),
    [
        (41270, "USD", None, "412.70"),
        (41270, "USD", 100, "412.70"),
        (5, "USD", None, "0.05"),
        (24500, "JPY", None, "24500"),
        (24500, "JPY", 1, "24500"),
        (12345, "KWD", None, "12.345"),
        (12340, "KWD", 100, "123.400"),
        (-1500, "EUR", None, "-15.00"),
    ],
)
def test_cents_become_exact_money_in_the_currency(
    cents: int, currency: str, base: int | None, amount: str
) -> None:
    money = kantata.cents_to_money(cents, currency, base_unit=base)
    assert (money.amount, money.currency) == (Decimal(amount), currency)
    assert str(money.amount) == amount


def test_cents_finer_than_the_currency_are_refused_not_rounded() -> None:
    with pytest.raises(ValueError, match="finer than JPY"):
        kantata.cents_to_money(2450, "JPY", base_unit=100)
    with pytest.raises(ValueError, match="power of ten"):
        kantata.cents_to_money(100, "USD", base_unit=60)


# --- mapping ----------------------------------------------------------------------------------------


def map_entry(record: dict[str, Any], directory: MemoryDirectory | None = None) -> kantata.Mapped:
    return kantata.map_record("time_entries", record["id"], record, ROLES, directory or linked_directory())


def test_an_approved_entry_becomes_time_in_the_linked_project() -> None:
    [event] = map_entry(entry()).envelopes
    assert event.type == "time_entry.approved"
    assert event.source_system == "kantata"
    assert event.data["id"] == "kantata-te-10"
    assert (event.data["engagement_id"], event.data["project_id"]) == ("eng-1", "prj-1")
    assert (event.data["hours"], event.data["role"], event.data["region"]) == (
        "1.50",
        "Cloud Engineer",
        "EMEA",
    )
    assert event.data["resource_id"] == "kantata-user-7"
    assert event.source_record_version == 1795253400000


def test_the_same_record_and_version_is_the_same_event_id() -> None:
    first, second = map_entry(entry()).envelopes[0], map_entry(entry()).envelopes[0]
    assert first.event_id == second.event_id
    newer = map_entry(entry(updated_at="2026-11-22T09:30:00Z")).envelopes[0]
    assert newer.event_id != first.event_id


@pytest.mark.parametrize(
    ("overrides", "field_name", "problem"),
    [
        ({"time_in_minutes": 90.5}, "time_in_minutes", "whole number"),
        ({"time_in_minutes": "ninety"}, "time_in_minutes", "not a whole number"),
        ({"time_in_minutes": 1441}, "time_in_minutes", "one day"),
        ({"time_in_minutes": None}, "time_in_minutes", "required"),
        ({"date_performed": "16/11/2026"}, "date_performed", "not a date"),
        ({"updated_at": "yesterday"}, "updated_at", "ISO 8601"),
        ({"role_id": "99"}, "role_id", "side-loaded"),
        ({"role_id": None}, "role_id", "default_role"),
        ({"user_id": None}, "user_id", "required"),
        ({"approved": "maybe"}, "approved", "true or false"),
    ],
)
def test_a_bad_time_entry_names_its_field_and_record(
    overrides: dict[str, Any], field_name: str, problem: str
) -> None:
    with pytest.raises(MappingError) as caught:
        map_entry(entry(**overrides))
    assert caught.value.field == field_name
    assert problem in caught.value.problem
    assert caught.value.record == "Kantata time_entries 10"


def test_the_link_default_role_stands_in_for_a_missing_role_id() -> None:
    [event] = map_entry(entry(role_id=None), linked_directory(default_role="Consultant")).envelopes
    assert event.data["role"] == "Consultant"


def test_an_entry_approval_withdrawn_later_is_published_unapproved_with_the_approved_hours() -> None:
    directory = linked_directory()
    first = map_entry(entry(), directory)
    for item in first.remember:
        directory.put(item)
    withdrawn = map_entry(entry(approved=False, updated_at="2026-11-24T08:00:00Z"), directory)
    [event] = withdrawn.envelopes
    assert (event.data["status"], event.data["hours"]) == ("unapproved", "1.50")
    never = map_entry(entry(id="11", approved=False), directory)
    assert never.envelopes == [] and never.note is not None


def test_an_approved_entry_edited_to_zero_minutes_withdraws_the_approved_hours() -> None:
    directory = linked_directory()
    for item in map_entry(entry(), directory).remember:
        directory.put(item)
    [event] = map_entry(entry(time_in_minutes=0, updated_at="2026-11-24T08:00:00Z"), directory).envelopes
    assert (event.data["status"], event.data["hours"]) == ("unapproved", "1.50")
    assert map_entry(entry(id="12", time_in_minutes=0)).envelopes == []


def test_an_entry_of_an_unlinked_workspace_waits_for_its_link() -> None:
    with pytest.raises(kantata.WorkspaceNotLinked) as caught:
        map_entry(entry(workspace_id="999"))
    assert caught.value.workspace_id == "999"


def test_a_page_in_the_wrong_shape_is_refused_with_the_field() -> None:
    with pytest.raises(MappingError) as caught:
        kantata.parse_page("time_entries", {"count": "2", "results": []}, page=1, per_page=20)
    assert caught.value.field == "count"
    with pytest.raises(MappingError) as caught:
        kantata.parse_page("time_entries", {"count": 1, "results": [{"id": "1"}]}, page=3, per_page=20)
    assert (caught.value.field, caught.value.record) == ("results[0]", "Kantata time_entries page 3")
    with pytest.raises(MappingError):
        kantata.parse_page("time_entries", ["not", "an", "object"], page=1, per_page=20)


def test_a_page_keeps_results_order_and_side_loads() -> None:
    document = {
        "count": 45,
        "results": [{"key": "time_entries", "id": "2"}, {"key": "time_entries", "id": 1}],
        "time_entries": {"1": {"id": "1"}, "2": {"id": "2"}},
        "roles": {"3": {"id": "3", "name": "X"}},
    }
    page = kantata.parse_page("time_entries", document, page=2, per_page=20)
    assert [record_id for record_id, _ in page.records] == ["2", "1"]
    assert page.included["roles"]["3"]["name"] == "X"
    assert page.has_more  # 2 × 20 < 45
    assert not kantata.parse_page("time_entries", document, page=3, per_page=20).has_more


def test_expense_money_comes_from_cents_in_the_workspace_currency_when_the_expense_has_none() -> None:
    record = {
        "id": "5",
        "date": "2026-11-18",
        "category": "Meals",
        "amount_in_cents": 3899,
        "is_billable": False,
        "workspace_id": "42",
        "user_id": "7",
        "updated_at": "2026-11-21T10:00:00Z",
    }
    directory = linked_directory(currency="GBP")
    [event] = kantata.map_record("expenses", "5", record, {}, directory).envelopes
    assert event.data["amount"] == {"amount": "38.99", "currency": "GBP"}
    assert (event.data["billable"], event.data["receipt_attached"]) == (False, False)
    with pytest.raises(MappingError) as caught:
        kantata.map_record("expenses", "5", record | {"currency": "XYZ"}, {}, directory)
    assert caught.value.field == "currency"


def test_fields_reader_names_the_record() -> None:
    fields = Fields("Kantata time_entries 1", {"time_in_minutes": True})
    with pytest.raises(MappingError, match="Kantata time_entries 1: field time_in_minutes"):
        kantata.hours_of(fields)


# --- the client's retry policy ----------------------------------------------------------------------


@dataclass
class FakeResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> bytes:
        return json.dumps(self.body).encode() if self.body is not None else b""


class FakeHttp:
    """Answers from a script; an exception in it is raised like a transport error."""

    def __init__(self, *answers: FakeResponse | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def request(self, method: str, url: str, *, headers: dict[str, str], **_: Any) -> FakeResponse:
        self.requests.append((method, url, headers))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


PAGE = {"count": 0, "results": []}


def client(http: FakeHttp, sleeps: list[float], **options: Any) -> KantataClient:
    return KantataClient(
        "https://api.example.test/api/v1",
        KantataCredentials.from_secret_json('{"api_token": "tok-123"}'),
        http=http,  # type: ignore[arg-type]
        sleep=sleeps.append,
        jitter=lambda ceiling: ceiling,  # the top of each window, so the schedule is visible
        **options,
    )


def test_429_without_retry_after_backs_off_exponentially_with_jitter() -> None:
    http = FakeHttp(FakeResponse(429), FakeResponse(429), FakeResponse(429), FakeResponse(200, PAGE))
    sleeps: list[float] = []
    answer = client(http, sleeps, base_delay=0.5).list_page("time_entries", page=2, per_page=50)
    assert answer == PAGE
    assert sleeps == [0.5, 1.0, 2.0]
    method, url, headers = http.requests[-1]
    assert (method, headers["Authorization"]) == ("GET", "Bearer tok-123")
    assert (
        url.startswith("https://api.example.test/api/v1/time_entries.json?") and "page=2&per_page=50" in url
    )


def test_jitter_draws_below_the_window() -> None:
    seen: list[float] = []

    def quarter(ceiling: float) -> float:
        seen.append(ceiling)
        return ceiling / 4

    kantata_client = KantataClient(
        "https://x.test",
        KantataCredentials.from_secret_json('{"api_token": "t"}'),
        http=FakeHttp(),  # type: ignore[arg-type]
        jitter=quarter,
        base_delay=1,
        max_delay=5,
    )
    assert [kantata_client.backoff_delay(n) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 1.25]
    assert seen == [1, 2, 4, 5]  # capped at max_delay


def test_retry_after_is_honoured_when_present() -> None:
    http = FakeHttp(FakeResponse(429, headers={"Retry-After": "7"}), FakeResponse(200, PAGE))
    sleeps: list[float] = []
    client(http, sleeps).list_page("expenses", page=1, per_page=20)
    assert sleeps == [7.0]


def test_retry_after_longer_than_the_budget_gives_up_at_once() -> None:
    http = FakeHttp(FakeResponse(429, headers={"Retry-After": "600"}))
    sleeps: list[float] = []
    with pytest.raises(KantataTransientError):
        client(http, sleeps, max_delay=30).list_page("expenses", page=1, per_page=20)
    assert sleeps == []


def test_throttling_that_never_ends_is_a_transient_error_after_max_attempts() -> None:
    http = FakeHttp(*[FakeResponse(429)] * 4)
    sleeps: list[float] = []
    with pytest.raises(KantataTransientError) as caught:
        client(http, sleeps, max_attempts=4, base_delay=1).list_page("time_entries", page=1, per_page=20)
    assert caught.value.status == 429
    assert sleeps == [1, 2, 4]


def test_5xx_and_timeouts_are_retried_4xx_are_not() -> None:
    timeout = ReadTimeoutError(None, "/", "timed out")  # type: ignore[arg-type]
    http = FakeHttp(FakeResponse(503), timeout, FakeResponse(200, PAGE))
    sleeps: list[float] = []
    assert client(http, sleeps).list_page("workspaces", page=1, per_page=20) == PAGE
    assert len(sleeps) == 2
    refused = FakeHttp(FakeResponse(401, {"errors": [{"type": "authentication", "message": "bad token"}]}))
    with pytest.raises(KantataPermanentError, match="401 bad token"):
        client(refused, []).list_page("workspaces", page=1, per_page=20)
    assert len(refused.requests) == 1


def test_the_secret_needs_an_api_token() -> None:
    for text in ("{}", '{"api_token": ""}', "not json"):
        with pytest.raises(ValueError, match="api_token"):
            KantataCredentials.from_secret_json(text)
    assert "s3cr3t" not in repr(KantataCredentials.from_secret_json('{"api_token": "s3cr3t"}'))


# --- the declarative field map agrees with the mappers on the fixtures --------------------------------


def test_the_kantata_field_map_agrees_with_the_fixtures() -> None:
    root = Path(__file__).resolve().parents[2] / "events" / "kantata"
    checked: set[tuple[str, Any]] = set()
    problems: list[str] = []
    for file in sorted(root.glob("[0-9]*.json")):
        document = json.loads(file.read_text())
        resource = document["results"][0]["key"]
        outcomes = {o["record"]: o for o in json.loads((root / "expected" / file.name).read_text())}
        for record_id, record in (document.get(resource) or {}).items():
            for event in outcomes.get(f"{resource}/{record_id}", {}).get("events", []):
                for row in kantata.FIELD_MAP[resource]:
                    source = record.get(row.source)
                    if row.event_type != event["type"] or source is None:
                        continue
                    value: Any = event["data"]
                    for part in row.target.split("."):
                        value = value.get(part, "<missing>") if isinstance(value, dict) else "<missing>"
                    checked.add((resource, row))
                    right = {
                        "copy": row.target.startswith("(") or value == source,
                        "date": value == str(source)[:10],
                        "flag": value is bool(source),
                        "id": str(source) in str(value),
                    }.get(row.how, value != "<missing>" or row.target.startswith("("))
                    if not right:
                        problems.append(f"{file.name} {resource}.{row.source} -> {row.target} = {value!r}")
    assert not problems, problems
    assert {resource for resource, _ in checked} == set(kantata.FIELD_MAP)
    total = sum(len(rows) for rows in kantata.FIELD_MAP.values())
    assert len(checked) >= total * 0.8, f"only {len(checked)} of {total} rows met a fixture"
