"""Contract tests: every Salesforce / Certinia fixture under events/ maps to exactly the committed events.

Outbound Message fixtures (``*.xml``) and Change Data Capture fixtures (``events/salesforce/cdc/*.json``, the
EventBridge events Event Relay or AppFlow deliver, with the REST answers of the re-read under ``rest/``).

Each folder is a story read in file-name order with one connector directory (what r2r remembers
between deliveries), the way the intake reads it. For each notification the outcome — the canonical
events (validated against the published JSON Schemas), a rejection naming the record and field, a
note, or "waiting" — must equal ``<folder>/expected/<file stem>.json``. Set ``R2R_UPDATE_GOLDEN=1``
to rewrite the expected files after a deliberate change (then review the diff).
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from r2r_core.connectors import kantata
from r2r_core.connectors.base import MappingError, NotReady
from r2r_core.connectors.directory import MemoryDirectory, Remember
from r2r_core.connectors.salesforce import parse_outbound_message
from r2r_core.flows.salesforce_cdc import ChangeIntake, accept_change
from r2r_core.flows.salesforce_outbound import accept_notification
from r2r_core.model.events import EVENT_TYPES, EventEnvelope

ROOT = Path(__file__).resolve().parents[2]
STORIES = [
    ROOT / "events" / "salesforce",
    ROOT / "events" / "certinia",
    ROOT / "events" / "scenarios" / "salesforce-certinia",
]
UPDATE = os.environ.get("R2R_UPDATE_GOLDEN") == "1"


class Collect:
    def __init__(self) -> None:
        self.published: list[EventEnvelope] = []

    def publish(self, envelope: EventEnvelope) -> None:
        self.published.append(envelope)


def _schema(type_name: str) -> dict[str, Any]:
    version = EVENT_TYPES[type_name].schema_version
    return json.loads((ROOT / "events" / "schemas" / f"{type_name}.v{version}.json").read_text())


def run_story(folder: Path) -> dict[str, list[dict[str, Any]]]:
    directory = MemoryDirectory()
    outcomes: dict[str, list[dict[str, Any]]] = {}
    for file in sorted(folder.glob("*.xml")):
        message = parse_outbound_message(file.read_bytes())
        results = []
        for notification in message.notifications:
            publisher = Collect()
            data = {
                "org": message.organization_id,
                "notification_id": notification.id,
                "sobject": notification.sobject_type,
                "record": notification.record,
                "fields": notification.fields,
                "archived_as": f"raw/{file.name}",
            }
            try:
                result = accept_notification(data, directory=directory, publisher=publisher)
            except NotReady as exc:
                results.append({"notification": notification.id, "waiting": str(exc)})
                continue
            for envelope in publisher.published:
                jsonschema.validate(json.loads(envelope.model_dump_json()), _schema(envelope.type))
            outcome: dict[str, Any] = {"notification": notification.id}
            if result.get("rejected"):
                outcome["rejected"] = result["rejected"]
            if result.get("note"):
                outcome["note"] = result["note"]
            outcome["events"] = [json.loads(e.model_dump_json()) for e in publisher.published]
            results.append(outcome)
        outcomes[file.stem] = results
    return outcomes


@pytest.mark.parametrize("folder", STORIES, ids=[p.name for p in STORIES])
def test_every_fixture_maps_to_the_committed_events(folder: Path) -> None:
    outcomes = run_story(folder)
    assert outcomes, f"no *.xml fixture in {folder}"
    expected_dir = folder / "expected"
    if UPDATE:
        expected_dir.mkdir(exist_ok=True)
        for stem, results in outcomes.items():
            (expected_dir / f"{stem}.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    expected_files = {p.stem for p in expected_dir.glob("*.json")}
    assert expected_files == set(outcomes), "every fixture has exactly one expected file"
    for stem, results in outcomes.items():
        expected = json.loads((expected_dir / f"{stem}.json").read_text())
        assert results == expected, f"{folder.name}/{stem}.xml no longer maps to expected/{stem}.json"


def _events(outcome: list[dict[str, Any]]) -> list[tuple[str, str, str | None, str | None]]:
    return [
        (e["type"], e["data"]["id"], e["data"].get("status"), e["data"].get("hours"))
        for item in outcome
        for e in item.get("events", [])
    ]


def test_certinia_story_semantics() -> None:
    """What the golden files say, in words: the things finance relies on."""
    story = run_story(ROOT / "events" / "certinia")
    card = "a1D5g000000Tc02AAC"
    assert _events(story["03-timecard-approved"]) == [
        ("time_entry.approved", f"{card}-2026-11-{d}", "approved", "8.0") for d in (16, 17, 18, 19, 20)
    ]
    # Rejected after approval: every approved day withdrawn, with the hours that were approved.
    assert _events(story["04-timecard-rejected-after-approval"]) == [
        ("time_entry.approved", f"{card}-2026-11-{d}", "unapproved", "8.0") for d in (16, 17, 18, 19, 20)
    ]
    # Approved again with Friday 6 h: all five days published anew (they were withdrawn).
    assert _events(story["05-timecard-approved-again-edited"])[-1] == (
        "time_entry.approved",
        f"{card}-2026-11-20",
        "approved",
        "6.0",
    )
    # Edited after approval: Friday removed → withdrawn (6 h), Thursday 8 → 9.5 → new version.
    assert _events(story["06-timecard-edited-after-approval"]) == [
        ("time_entry.approved", f"{card}-2026-11-20", "unapproved", "6.0"),
        ("time_entry.approved", f"{card}-2026-11-19", "approved", "9.5"),
    ]
    [stale] = story["07-timecard-stale-redelivery"]
    assert stale["events"] == [] and stale["note"].startswith("stale")
    [submitted] = story["08-timecard-submitted"]
    assert submitted["events"] == [] and "Submitted" in submitted["note"]
    assert _events(story["09-milestone-planned"]) == []
    assert _events(story["10-milestone-complete"]) == [
        ("milestone.completed", "ms-globex-design", "completed", None)
    ]
    assert _events(story["12-expense-rejected-after-approval"]) == [
        ("expense.approved", "a1F5g000000Ex01AAC", "unapproved", None)
    ]
    [wrong] = story["13-timecard-wrong-type-hours"]
    assert wrong["rejected"]["field"] == "pse__Tuesday_Hours__c"
    assert "a1D5g000000Tc09AAC" in wrong["rejected"]["record"]
    [waiting] = story["14-timecard-unknown-project"]
    assert "a1B5g000009ZzZ9AAK" in waiting["waiting"]


def test_opportunity_semantics() -> None:
    story = run_story(ROOT / "events" / "salesforce")
    [[won]] = [item["events"] for item in story["01-opportunity-closed-won"]]
    assert won["type"] == "opportunity.closed_won"
    deal = won["data"]
    assert deal["amount"] == {"amount": "60000.0", "currency": "USD"}
    assert deal["engagement"]["billing_type"] == "mixed"
    assert deal["engagement"]["rate_card"]["rates"][0]["rate"] == "200.00"
    assert deal["project"]["id"] == "prj-0065g00000Gx7bQAAS"
    assert won["source_record_version"] == 1794582245000  # SystemModstamp 2026-11-13T15:04:05Z
    [update] = story["02-opportunity-amount-changed-negotiation"]
    assert update["events"][0]["type"] == "opportunity.updated"
    assert update["events"][0]["data"]["amount"] == {"amount": "84500.0", "currency": "USD"}
    [missing] = story["03-opportunity-closed-won-without-billing-type"]
    assert missing["rejected"]["field"] == "R2R_Billing_Type__c"
    assert "0065g00000Jz9aaAAC" in missing["rejected"]["record"]
    won_and_lost = story["04-two-opportunities-one-message"]
    assert [item["events"][0]["type"] for item in won_and_lost] == [
        "opportunity.closed_won",
        "opportunity.updated",
    ]


# --- Change Data Capture (Event Relay / AppFlow) -------------------------------------------------

CDC = ROOT / "events" / "salesforce" / "cdc"


class _Archive:
    def put(self, *, source: str, delivery_id: str, body: bytes, content_type: str, received_at: Any) -> str:
        return f"raw/{source}/{delivery_id}"


class _Audit:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def append(self, **entry: Any) -> None:
        self.entries.append(entry)


def run_cdc_story(folder: Path) -> tuple[dict[str, dict[str, Any]], set[Path]]:
    """Every ``*.json`` change event of ``folder`` through the intake, in name order.

    The REST re-read of a record during step ``<stem>`` answers ``rest/<stem>/<record id>.json`` (404
    when there is none), the idempotency layer is a dict, and the outcome of each step is what it
    published, the exceptions it recorded, the notes of what it ignored, and whether it waits.
    """
    directory, audit = MemoryDirectory(), _Audit()
    done: dict[tuple[str, ...], dict[str, Any]] = {}
    read_files: set[Path] = set()
    outcomes: dict[str, dict[str, Any]] = {}
    for file in sorted(folder.glob("*.json")):
        publisher = Collect()
        exceptions: list[dict[str, Any]] = []
        notes: list[str] = []

        def read(sobject: str, record_id: str, stem: str = file.stem) -> dict[str, Any] | None:
            path = folder / "rest" / stem / f"{record_id}.json"
            if not path.is_file():
                return None
            read_files.add(path)
            record: dict[str, Any] = json.loads(path.read_text(), parse_float=Decimal)
            assert record["attributes"]["type"] == sobject
            return record

        def accept_once(
            *,
            data: dict[str, Any],
            read: Any = read,
            publisher: Collect = publisher,
            notes: list[str] = notes,
        ) -> Any:
            key = (data["channel"], data["entity"], data["record_id"], data["change_key"])
            if key in done:
                notes.append(f"{data['record_id']}: duplicate of an accepted change")
                return done[key]
            result = accept_change(
                data, directory=directory, publisher=publisher, read_record=read, audit=audit
            )
            done[key] = result
            if result.get("note"):
                notes.append(f"{data['record_id']}: {result['note']}")
            return result

        def record_exception(exceptions: list[dict[str, Any]] = exceptions, **kwargs: Any) -> bool:
            error = kwargs["error"]
            exceptions.append(
                {
                    "kind": kwargs["kind"],
                    "record": getattr(error, "record", None),
                    "field": getattr(error, "field", None),
                    "problem": getattr(error, "problem", str(error)),
                }
            )
            return True

        intake = ChangeIntake(
            archive=_Archive(),
            accept_once=accept_once,
            record_exception=record_exception,
            resolve_waiting=lambda key: None,
        )
        outcome: dict[str, Any] = {}
        try:
            intake.handle(file.read_bytes())
        except NotReady as exc:
            outcome["waiting"] = str(exc)
        for envelope in publisher.published:
            jsonschema.validate(json.loads(envelope.model_dump_json()), _schema(envelope.type))
        outcome["events"] = [json.loads(e.model_dump_json()) for e in publisher.published]
        outcome["exceptions"] = exceptions
        outcome["notes"] = notes
        outcomes[file.stem] = outcome
    return outcomes, read_files


def test_every_change_event_fixture_maps_to_the_committed_events() -> None:
    outcomes, read_files = run_cdc_story(CDC)
    assert outcomes, f"no *.json fixture in {CDC}"
    expected_dir = CDC / "expected"
    if UPDATE:
        expected_dir.mkdir(exist_ok=True)
        for stem, outcome in outcomes.items():
            (expected_dir / f"{stem}.json").write_text(json.dumps(outcome, indent=2, sort_keys=True) + "\n")
    assert {p.stem for p in expected_dir.glob("*.json")} == set(outcomes), "one expected file per fixture"
    for stem, outcome in outcomes.items():
        expected = json.loads((expected_dir / f"{stem}.json").read_text())
        assert outcome == expected, f"cdc/{stem}.json no longer maps to expected/{stem}.json"
    # Every REST answer in the fixtures is one the intake actually read: none is dead weight.
    assert read_files == set((CDC / "rest").rglob("*.json"))
    # And every fixture file under events/salesforce is run by some contract test.
    ran = {*(CDC.glob("*.json")), *read_files, *(CDC / "expected").glob("*.json")}
    assert {p for p in CDC.rglob("*") if p.is_file()} == ran


def test_change_event_story_semantics() -> None:
    """What the CDC golden files say, in words."""
    story, _ = run_cdc_story(CDC)
    [won] = story["01-opportunity-update-closed-won"]["events"]
    # The UPDATE carried only StageName: the deal terms come from the re-read (formula fields included).
    assert won["type"] == "opportunity.closed_won"
    assert won["data"]["client"]["name"] and won["data"]["engagement"]["rate_card"]
    assert won["source_record_version"] == 1794582245000  # the record's SystemModstamp, as on the SOAP path
    assert [e["data"]["id"] for e in story["03-assignments-update-two-records"]["events"]] == [
        "a1C5g000000As01AAC",
        "a1C5g000000As02AAC",
    ]
    card = "a1D5g000000Tc02AAC"
    assert len(story["04-timecard-update-approved"]["events"]) == 5
    duplicate = story["05-timecard-update-duplicate-delivery"]
    assert duplicate["events"] == [] and "duplicate" in duplicate["notes"][0]
    assert {(e["data"]["id"], e["data"]["status"]) for e in story["06-timecard-delete"]["events"]} == {
        (f"{card}-2026-11-{d}", "unapproved") for d in (16, 17, 18, 19, 20)
    }
    assert {e["data"]["status"] for e in story["07-timecard-undelete"]["events"]} == {"approved"}
    assert [e["type"] for e in story["08-milestone-gap-update"]["events"]] == ["milestone.completed"]
    [withdrawn] = story["10-expense-gap-delete-record-gone"]["events"]
    assert withdrawn["data"]["status"] == "unapproved"
    assert Decimal(withdrawn["data"]["amount"]["amount"]) == Decimal("312.40")
    deleted = story["11-opportunity-delete"]
    assert deleted["events"] == [] and "no removal" in deleted["notes"][0]
    [overflow] = story["12-project-gap-overflow"]["exceptions"]
    assert overflow["kind"] == "connector_resync"
    [wrong] = story["13-timecard-update-wrong-type-hours"]["exceptions"]
    assert (wrong["kind"], wrong["field"]) == ("connector_rejected", "pse__Tuesday_Hours__c")
    assert "a1D5g000000Tc09AAC" in wrong["record"]
    assert "a1B5g000009ZzZ9AAK" in story["14-timecard-update-unknown-project"]["waiting"]
    [unmapped] = story["15-account-update-not-mapped"]["exceptions"]
    assert unmapped["field"].endswith("ChangeEventHeader.entityName") and "Account" in unmapped["record"]


# --- Kantata OX (polled pages) -----------------------------------------------------------------------

KANTATA = ROOT / "events" / "kantata"


def run_kantata_story(folder: Path = KANTATA) -> dict[str, list[dict[str, Any]]]:
    """Every page fixture, in file-name order, through the mappers with one directory seeded with the
    story's workspace links (``links.json``), applying what each record teaches as the poller does."""
    directory = MemoryDirectory()
    for workspace_id, link in json.loads((folder / "links.json").read_text()).items():
        if workspace_id != "description":
            directory.put(Remember(kantata.WORKSPACE_LINK, workspace_id, 1, link))
    outcomes: dict[str, list[dict[str, Any]]] = {}
    for file in sorted(folder.glob("[0-9]*.json")):
        document = json.loads(file.read_text())
        meta = document.get("meta") or {}
        resource = document["results"][0]["key"]
        page = kantata.parse_page(
            resource, document, page=int(meta.get("page_number", 1)), per_page=int(meta.get("page_size", 20))
        )
        results: list[dict[str, Any]] = []
        for record_id, record in page.records:
            outcome: dict[str, Any] = {"record": f"{resource}/{record_id}"}
            try:
                mapped = kantata.map_record(resource, record_id, record, page.included, directory)
            except kantata.WorkspaceNotLinked as exc:
                outcome["waiting"] = str(exc)
            except MappingError as exc:
                outcome["rejected"] = exc.as_detail()
            else:
                for envelope in mapped.envelopes:
                    jsonschema.validate(json.loads(envelope.model_dump_json()), _schema(envelope.type))
                for item in mapped.remember:
                    directory.put(item)
                if mapped.note:
                    outcome["note"] = mapped.note
                outcome["events"] = [json.loads(e.model_dump_json()) for e in mapped.envelopes]
            results.append(outcome)
        outcomes[file.stem] = results
    return outcomes


def test_every_kantata_fixture_maps_to_the_committed_events() -> None:
    outcomes = run_kantata_story()
    pages = {p.stem for p in KANTATA.glob("*.json")} - {"links"}
    assert set(outcomes) == pages, "every Kantata page fixture is run"
    expected_dir = KANTATA / "expected"
    if UPDATE:
        expected_dir.mkdir(exist_ok=True)
        for stem, results in outcomes.items():
            (expected_dir / f"{stem}.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    assert {p.stem for p in expected_dir.glob("*.json")} == set(outcomes)
    for stem, results in outcomes.items():
        expected = json.loads((expected_dir / f"{stem}.json").read_text())
        assert results == expected, f"kantata/{stem}.json no longer maps to expected/{stem}.json"


def test_kantata_story_semantics() -> None:
    """The golden files in words: exact hours and money, withdrawals, bad records named."""
    story = run_kantata_story()
    [linked, unlinked] = story["01-workspaces"]
    assert linked["events"][0]["type"] == "project.upserted"
    assert linked["events"][0]["data"]["id"] == "prj-acme-cloud-2026"
    assert "not linked" in unlinked["note"]
    page_1 = [e["data"] for item in story["02-time-entries-page-1"] for e in item["events"]]
    assert [(d["id"], d["hours"], d["role"], d["region"]) for d in page_1] == [
        ("kantata-te-910001", "8.00", "Solution Architect", "EMEA"),
        ("kantata-te-910002", "7.50", "Cloud Engineer", "EMEA"),
        ("kantata-te-910003", "0.33", "Cloud Engineer", "EMEA"),  # 20 minutes, half-up to 0.01 h
    ]
    [bad, elsewhere] = story["03-time-entries-page-2"]
    assert bad["rejected"]["field"] == "time_in_minutes" and "910004" in bad["rejected"]["record"]
    assert "workspace 4299" in elsewhere["waiting"]
    [withdrawn, submitted] = story["04-time-entries-submitted-and-withdrawn"]
    assert [(e["data"]["id"], e["data"]["status"], e["data"]["hours"]) for e in withdrawn["events"]] == [
        ("kantata-te-910002", "unapproved", "7.50")
    ]
    assert submitted["events"] == [] and "not approved" in submitted["note"]
    [again] = story["05-time-entries-read-again"]
    assert again["events"] == [] and "already published" in again["note"]
    travel, meals, lodging, hotel = story["06-expenses"]
    assert travel["events"][0]["data"]["amount"] == {"amount": "412.70", "currency": "USD"}
    assert travel["events"][0]["data"]["receipt_attached"] is True
    # No currency on the expense: the workspace's (USD, learned from the workspace page).
    assert meals["events"][0]["data"]["amount"] == {"amount": "38.99", "currency": "USD"}
    assert meals["events"][0]["data"]["billable"] is False
    assert lodging["rejected"]["field"] == "amount_in_cents" and "float" in lodging["rejected"]["problem"]
    assert hotel["events"][0]["data"]["amount"] == {"amount": "24500", "currency": "JPY"}
    [missing] = story["07-page-missing-record"]
    assert "missing from the page" in missing["rejected"]["problem"]


def test_every_fixture_folder_is_run_by_a_contract_test() -> None:
    """A new folder of fixtures under events/ must come with its runner (here or in the file tests)."""
    runners = {"salesforce", "certinia", "kantata", "workday", "file_exchange"}
    folders = {p.name for p in (ROOT / "events").iterdir() if p.is_dir()} - {
        "samples",
        "schemas",
        "scenarios",
        "openapi",  # the inbound API's spec: tests/infra/test_openapi.py and the fuzz run
    }
    assert folders == runners
