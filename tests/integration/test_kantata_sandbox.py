"""The Kantata sandbox over HTTP on 127.0.0.1 (what the local stack and the poll tests rely on), and the
scenario step that seeds it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from infra.local.scenario import ScenarioError, load_step
from infra.saas_sandbox import KantataSandbox

TOKEN = {"Authorization": "Bearer r2r-local-kantata-token"}


@pytest.fixture
def sandbox() -> Iterator[KantataSandbox]:
    moments = iter(datetime(2026, 11, 21, 9, 0, tzinfo=UTC) + timedelta(seconds=s) for s in range(1000))
    with KantataSandbox(clock=lambda: next(moments)) as running:
        yield running


def test_every_api_request_needs_the_bearer_token(sandbox: KantataSandbox) -> None:
    answer = requests.get(f"{sandbox.url}/time_entries.json", timeout=5)
    assert answer.status_code == 401 and answer.json()["errors"][0]["type"] == "authentication"
    wrong = requests.get(f"{sandbox.url}/time_entries.json", headers={"Authorization": "Bearer x"}, timeout=5)
    assert wrong.status_code == 401


def test_list_answers_in_kantata_shape_with_strict_updated_after_paging_and_includes(
    sandbox: KantataSandbox,
) -> None:
    sandbox.seed("roles", {"id": "7", "name": "Cloud Engineer"})
    ids = [sandbox.seed("time_entries", {"role_id": "7", "workspace_id": "1"}) for _ in range(5)]
    third = sandbox.records("time_entries")[2]["updated_at"]
    answer = requests.get(
        f"{sandbox.url}/time_entries.json",
        params={
            "updated_after": third,
            "order": "updated_at:asc",
            "per_page": 1,
            "page": 2,
            "include": "role",
        },
        headers=TOKEN,
        timeout=5,
    ).json()
    assert answer["count"] == 2  # strictly after the third
    assert answer["results"] == [{"key": "time_entries", "id": ids[4]}]
    assert set(answer["time_entries"]) == {ids[4]}
    assert answer["roles"]["7"]["name"] == "Cloud Engineer"
    assert answer["meta"] == {"count": 2, "page_count": 2, "page_number": 2, "page_size": 1}
    too_many = requests.get(f"{sandbox.url}/time_entries.json?per_page=201", headers=TOKEN, timeout=5)
    assert too_many.status_code == 422


def test_control_endpoints_seed_change_and_throttle(sandbox: KantataSandbox) -> None:
    control = sandbox.root_url + "/_sandbox"
    created = requests.post(f"{control}/records/expenses", json={"amount_in_cents": 100}, timeout=5).json()
    changed = requests.post(
        f"{control}/records/expenses/{created['id']}", json={"approved": False}, timeout=5
    )
    assert changed.json()["approved"] is False
    assert changed.json()["updated_at"] > changed.json()["created_at"]
    requests.post(f"{control}/throttle", json={"count": 1}, timeout=5)
    requests.post(f"{control}/throttle", json={"count": 1, "retry_after": 3}, timeout=5)
    first = requests.get(f"{sandbox.url}/expenses.json", headers=TOKEN, timeout=5)
    second = requests.get(f"{sandbox.url}/expenses.json", headers=TOKEN, timeout=5)
    third = requests.get(f"{sandbox.url}/expenses.json", headers=TOKEN, timeout=5)
    assert (first.status_code, "Retry-After" in first.headers) == (429, False)
    assert (second.status_code, second.headers.get("Retry-After")) == (429, "3")
    assert third.status_code == 200 and third.json()["count"] == 1
    assert requests.get(f"{control}/stats", timeout=5).json()["429"] == 2
    assert requests.get(f"{control}/records", timeout=5).json()["expenses"][0]["id"] == created["id"]


def test_the_sandbox_binds_loopback_only() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        KantataSandbox(host="0.0.0.0")


def test_a_kantata_scenario_step_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "02-kantata.json"
    good.write_text(json.dumps({"kantata": {"link": {"workspace_id": "1", "engagement_id": "eng-1"}}}))
    assert load_step(good).kantata == {"link": {"workspace_id": "1", "engagement_id": "eng-1"}}
    wrongs: list[dict[str, object]] = [
        {"kantata": {"seed": {"time_entries": {"id": "1"}}}},
        {"kantata": {"link": {"workspace_id": 1, "engagement_id": "eng-1"}}},
        {"kantata": {"delete": {}}},
        {"kantata": {}, "source": "crm"},
    ]
    for wrong in wrongs:
        good.write_text(json.dumps(wrong))
        with pytest.raises(ScenarioError, match="kantata"):
            load_step(good)
