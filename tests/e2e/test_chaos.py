"""Chaos: 1,000+ approved time entries on 20 projects through a faulty ERP, duplicated, shuffled
and crashed deliveries, two poison messages; after draining and one redrive nothing is lost, nothing is
billed twice, and every invoice is exactly what the billing rules say.

Given 20 closed-won deals (mixed billing: time at the rate card plus one milestone each) set up first,
an ERP sandbox answering 20 % of record requests 429, 5 % 500 and committing then dropping the
connection on 2 % (seeded), and a time_posting consumer that crashes once after committing part of a
batch, when 50 entries per project (10 % with a second version: changed hours or approval withdrawn)
are delivered shuffled, 10 % of the deliveries twice with the same webhook-id, plus two poison entries
(a role without a rate; an engagement that is not set up), then the poison causes are fixed (a corrected
deal with the rate; the missing deal arrives), each DLQ is redriven once and every milestone completed:

- every entry has exactly one charge, at its final version, and exactly one ERP timeBill with its hours;
- no ERP record exists twice (by external id, and per business key);
- each of the 20 invoices equals, line by line and in total, an independent billing run of
  ``r2r_core.billing`` on the final versions;
- each poison message produced exactly one exception for finance, and nothing else did.

The figures (entries, duplicates, faults by kind, retries, DLQ depths, invoices, totals, wall time) are
printed, written to ``chaos-figures.json`` in the test's tmp dir and shown in the pytest summary.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.local.stack import LocalStack, write_json
from r2r_core.billing.decisions import decide_time_entry
from r2r_core.billing.invoicing import Charge, MilestoneBilling, billing_run
from r2r_core.model.entities import Engagement, TimeEntry
from r2r_core.state import StateStore

ROOT = Path(__file__).resolve().parents[2]

SEED = 20261126
PROJECTS = 20
ENTRIES_PER_PROJECT = 50
SECOND_VERSION_SHARE = 0.10
DUPLICATE_SHARE = 0.10
FAULTS = {"429": Decimal("0.20"), "500": Decimal("0.05"), "commit_then_drop": Decimal("0.02")}
POST_THREADS = 4
DRAIN_S = 600.0  # a bound, not a target: on a shared, loaded machine moto's SQS and DynamoDB get slow
TIMEOUT_S = 1800  # the whole run stops by itself (pytest-timeout) even if something hangs

RULE_POISON = "te-chaos-03-norate"  # a role the rate card has no rate for
LATE_POISON = "te-chaos-late-001"  # an engagement that is not set up when the entry arrives
LATE = "late"

ROLES = (
    ("Solution Architect", Decimal("212.50")),
    ("Cloud Engineer", Decimal("147.35")),
    ("Data Analyst", Decimal("118.90")),
)
REGIONS = ("EMEA", "NA", "APAC")
HOURS = ("1", "2.5", "3.75", "4", "6", "7.25", "7.5", "8")

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local"), pytest.mark.timeout(TIMEOUT_S)]


# -- the data -------------------------------------------------------------------------------------


def _tag(index: int | str) -> str:
    return f"{index:02d}" if isinstance(index, int) else index


def _deal(index: int | str, version: int = 1, *, with_data_engineer: bool = False) -> dict[str, Any]:
    """The closed-won deal of project ``index``: a mixed contract, a rate card per role and region."""
    tag = _tag(index)
    step = Decimal(index if isinstance(index, int) else 21)
    region = REGIONS[int(step) % len(REGIONS)]
    rates = [
        {
            "role": role,
            "region": rate_region,
            "rate": str(base + step + (Decimal("12.25") if rate_region != region else 0)),
            "effective_from": "2026-01-01",
            "effective_to": "2026-12-31",
        }
        for role, base in ROLES
        for rate_region in REGIONS
    ]
    if with_data_engineer:
        rates.append(
            {
                "role": "Data Engineer",
                "region": region,
                "rate": "150.00",
                "effective_from": "2026-01-01",
                "effective_to": "2026-12-31",
            }
        )
    milestone_amount = str(Decimal(10000) + step * Decimal("250.50"))
    client = f"chaos-client-{tag}"
    return {
        "type": "opportunity.closed_won",
        "timestamp": "2026-10-30T10:00:00Z",
        "data": {
            "id": f"opp-chaos-{tag}",
            "version": version,
            "name": f"Chaos programme {tag}",
            "amount": {"amount": "250000.00", "currency": "USD"},
            "close_date": "2026-10-30",
            "client": {
                "id": client,
                "version": 1,
                "name": f"Chaos Client {tag}",
                "legal_name": f"Chaos Client {tag} Ltd",
                "billing_country": "GB",
                "currency": "USD",
                "tax_registration": f"GB{100000000 + int(step)}",
                "region": region,
                "business_unit": "Cloud Services",
                "email": f"ap-{tag}@chaos.example",
            },
            "engagement": {
                "id": f"eng-chaos-{tag}",
                "version": version,
                "client_id": client,
                "opportunity_id": f"opp-chaos-{tag}",
                "name": f"Chaos programme {tag}",
                "billing_type": "mixed",
                "currency": "USD",
                "contract_value": {"amount": "250000.00", "currency": "USD"},
                "rate_card": {
                    "id": f"rc-chaos-{tag}",
                    "version": version,
                    "name": f"Chaos rates {tag}",
                    "currency": "USD",
                    "rates": rates,
                },
                "milestones": [
                    {
                        "id": f"ms-chaos-{tag}",
                        "name": f"Wave {tag} signed off",
                        "amount": {"amount": milestone_amount, "currency": "USD"},
                        "due_date": "2026-11-30",
                    }
                ],
                "legal_entity": "Northwind Global IT Services Ltd (UK)",
                "tax_registration": "GB987654321",
                "po_number": f"PO-CHAOS-{tag}",
                "start_date": "2026-11-01",
                "end_date": "2027-06-30",
                "region": region,
                "business_unit": "Cloud Services",
            },
            "project": {
                "id": f"prj-chaos-{tag}",
                "version": 1,
                "engagement_id": f"eng-chaos-{tag}",
                "client_id": client,
                "name": f"Chaos project {tag}",
                "start_date": "2026-11-01",
                "end_date": "2027-06-30",
                "region": region,
                "business_unit": "Cloud Services",
                "billable": True,
            },
        },
    }


def _entry(
    entry_id: str, tag: str, *, role: str, region: str, work_date: date, hours: str, resource: int
) -> dict[str, Any]:
    return {
        "id": entry_id,
        "version": 1,
        "engagement_id": f"eng-chaos-{tag}",
        "project_id": f"prj-chaos-{tag}",
        "resource_id": f"res-chaos-{tag}-{resource}",
        "assignment_id": f"asg-chaos-{tag}-{resource}",
        "role": role,
        "region": region,
        "work_date": work_date.isoformat(),
        "hours": hours,
        "billable": True,
        "approved_at": "2026-11-21T09:30:00Z",
        "notes": f"chaos work {tag}",
    }


def _time_entries(rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """Every version of every entry, by entry id (the last one is the final version)."""
    entries: dict[str, list[dict[str, Any]]] = {}
    first_day = date(2026, 11, 2)
    for project in range(1, PROJECTS + 1):
        tag = _tag(project)
        for number in range(1, ENTRIES_PER_PROJECT + 1):
            resource = rng.randrange(4)
            role = ROLES[resource % len(ROLES)][0]
            entry = _entry(
                f"te-chaos-{tag}-{number:03d}",
                tag,
                role=role,
                region=rng.choice(REGIONS),
                work_date=first_day + timedelta(days=rng.randrange(19)),
                hours=rng.choice(HOURS),
                resource=resource,
            )
            entry["billable"] = rng.random() >= 0.05
            versions = [entry]
            if rng.random() < SECOND_VERSION_SHARE:
                second = {**entry, "version": 2, "approved_at": "2026-11-22T11:00:00Z"}
                if rng.random() < 0.2:
                    second["status"] = "unapproved"  # approval withdrawn
                else:
                    second["hours"] = rng.choice([h for h in HOURS if h != entry["hours"]])
                versions.append(second)
            entries[entry["id"]] = versions
    poison_region = REGIONS[3 % len(REGIONS)]
    entries[RULE_POISON] = [
        _entry(
            RULE_POISON,
            "03",
            role="Data Engineer",
            region=poison_region,
            work_date=date(2026, 11, 12),
            hours="6",
            resource=9,
        )
    ]
    entries[LATE_POISON] = [
        _entry(
            LATE_POISON,
            LATE,
            role="Cloud Engineer",
            region=REGIONS[21 % len(REGIONS)],
            work_date=date(2026, 11, 13),
            hours="5",
            resource=1,
        )
    ]
    return entries


def _deliveries(
    rng: random.Random, entries: dict[str, list[dict[str, Any]]]
) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """Shuffled (webhook id, body) pairs; 10 % of them delivered a second time (same id, later)."""
    originals = [
        (
            f"msg_chaos_{version['id']}_v{version['version']}",
            {"type": "time_entry.approved", "timestamp": version["approved_at"], "data": version},
        )
        for versions in entries.values()
        for version in versions
    ]
    rng.shuffle(originals)
    deliveries = list(originals)
    duplicates = rng.sample(range(len(originals)), round(len(originals) * DUPLICATE_SHARE))
    for index in sorted(duplicates, reverse=True):
        # Re-sent a while later, as a sender that missed the answer does.
        at = min(len(deliveries), index + rng.randrange(POST_THREADS * 4, len(originals) // 3))
        deliveries.insert(at, originals[index])
    return deliveries, len(duplicates)


def _milestone(tag: str) -> dict[str, Any]:
    amount = _deal(tag if tag == LATE else int(tag))["data"]["engagement"]["milestones"][0]["amount"]
    return {
        "type": "milestone.completed",
        "timestamp": "2026-11-23T14:00:00Z",
        "data": {
            "id": f"ms-chaos-{tag}",
            "version": 1,
            "engagement_id": f"eng-chaos-{tag}",
            "project_id": f"prj-chaos-{tag}",
            "name": f"Wave {tag} signed off",
            "amount": amount,
            "status": "completed",
            "completed_on": "2026-11-23",
        },
    }


def _fault_rules() -> list[dict[str, Any]]:
    """The first matching rule that fires wins: conditional probabilities give the overall shares."""
    left = Decimal(1)
    rules = []
    for kind, share in FAULTS.items():
        rule: dict[str, Any] = {"probability": float(share / left)}
        if kind == "commit_then_drop":
            rule["mode"] = "commit_then_drop"
        else:
            rule["status"] = int(kind)
        rules.append(rule)
        left -= share
    return rules


# -- expected: the billing rules on the final versions ---------------------------------------------


def _expected_invoice(deal: dict[str, Any], finals: list[dict[str, Any]], invoice_date: date) -> Any:
    engagement = Engagement.model_validate(deal["data"]["engagement"])
    charges = []
    for data in finals:
        decision = decide_time_entry(TimeEntry.model_validate(data), engagement, project_billable=True)
        if decision.billable:
            charges.append(
                Charge(
                    kind="time",
                    source_id=decision.source_id,
                    version=decision.version,
                    billable_from=decision.billable_from,
                    billable_hours=decision.billable_hours,
                    rate=decision.rate,
                    amount=decision.amount,
                    resource_id=decision.resource_id,
                    role=decision.role,
                    region=decision.region,
                    work_date=decision.work_date,
                    budget_id=decision.budget_id,
                )
            )
    [milestone] = engagement.milestones
    run = billing_run(
        engagement,
        invoice_id=f"{engagement.id}-{milestone.id}",
        client_id=deal["data"]["client"]["id"],
        project_id=deal["data"]["project"]["id"],
        invoice_date=invoice_date,
        charges=charges,
        milestone=MilestoneBilling(milestone.id, milestone.name, engagement.milestone_amount(milestone.id)),
        po_number=engagement.po_number,
    )
    assert run.invoice is not None and not run.waiting
    return run.invoice


# -- the run ----------------------------------------------------------------------------------------


def _post(stack: LocalStack, source: str, webhook_id: str, body: dict[str, Any]) -> tuple[int, bool]:
    """One delivery, re-sent like a sender would while the answer is a 5xx; (status, duplicate)."""
    for _attempt in range(5):
        delivery = stack.post_webhook(source, body, webhook_id)
        if delivery.status < 500:
            document = delivery.json if isinstance(delivery.json, dict) else {}
            return delivery.status, bool(document.get("duplicate"))
        time.sleep(0.2)
    return delivery.status, False


def _source(body: dict[str, Any]) -> str:
    """Each event from the system that owns it (r2r_core.ownership): deals from the CRM, work from the PSA."""
    return "crm" if str(body["type"]).startswith("opportunity.") else "psa"


def _post_all(stack: LocalStack, deliveries: list[tuple[str, dict[str, Any]]]) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    with ThreadPoolExecutor(POST_THREADS, thread_name_prefix="chaos-post") as pool:
        for status, duplicate in pool.map(lambda d: _post(stack, _source(d[1]), d[0], d[1]), deliveries):
            outcomes[f"{status}{' duplicate' if duplicate else ''}"] += 1
    return outcomes


def _dlq_depths(stack: LocalStack) -> dict[str, int]:
    return {name: depth for name, depth in stack.queue_depths(dlq_only=True).items() if depth}


def _wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the poison messages to rest in their DLQ"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("chaos")
    rng = random.Random(SEED)
    entries = _time_entries(rng)
    deliveries, duplicates = _deliveries(rng, entries)
    runner = CliRunner()
    started = time.monotonic()
    out: dict[str, Any] = {"tmp": tmp, "entries": entries}
    with LocalStack.start(ROOT, erp_db=tmp / "erp.sqlite", retry_delay_s=0) as stack:
        local_json = tmp / "local.json"
        write_json(local_json, stack.describe())
        cli = ["--local-json", str(local_json)]
        stack.erp.set_faults({"seed": SEED, "rules": _fault_rules()})

        # 20 closed-won deals first.
        setup = _post_all(stack, [(f"msg_chaos_deal_{p:02d}_v1", _deal(p)) for p in range(1, PROJECTS + 1)])
        assert setup == Counter({"202": PROJECTS}), setup
        stack.drain(timeout=DRAIN_S)
        # The consumer dies once in the middle of a batch of time entries.
        stack.inject_consumer_crash("time_posting", after_records=4)
        posted = _post_all(stack, deliveries)
        stack.drain(timeout=DRAIN_S)
        _wait_for(lambda: sum(_dlq_depths(stack).values()) >= 2, 60)
        stack.drain(timeout=DRAIN_S)
        out["posted"] = posted
        out["duplicates_sent"] = duplicates
        out["deliveries"] = len(deliveries)
        out["dlq_before"] = _dlq_depths(stack)
        out["exceptions_before"] = stack.exceptions()

        # Fix the causes: a corrected deal with the missing rate, and the deal that had not arrived.
        fixes = [
            ("msg_chaos_deal_03_v2", _deal(3, 2, with_data_engineer=True)),
            ("msg_chaos_deal_late_v1", _deal(LATE)),
        ]
        assert _post_all(stack, fixes) == Counter({"202": 2})
        stack.drain(timeout=DRAIN_S)
        out["redrives"] = {}
        for dlq in sorted(out["dlq_before"]):
            result = runner.invoke(app, ["dlq", "redrive", dlq, *cli])
            assert result.exit_code == 0, result.output
            out["redrives"][dlq] = result.output.strip()
        stack.drain(timeout=DRAIN_S)
        out["dlq_after"] = _dlq_depths(stack)

        # Every milestone completed: one invoice run per project.
        milestones = [(f"msg_chaos_ms_{p:02d}", _milestone(_tag(p))) for p in range(1, PROJECTS + 1)]
        milestones += rng.sample(milestones, 2)  # a duplicate delivery or two
        out["milestones_posted"] = _post_all(stack, milestones)
        stack.drain(timeout=DRAIN_S)
        out["report"] = stack.report()
        out["erp_stats"] = stack.erp.stats()
        out["faults"] = stack.erp.faults.snapshot()["rules"]
        out["pollers"] = stack.poller_stats()
        assert stack.local is not None
        store = StateStore(str(stack.local.table_for_env("STATE_TABLE_NAME")), stack.boto3_client("dynamodb"))
        out["charges"] = {
            tag: list(store.query_prefix(f"ENG#eng-chaos-{tag}", "CHARGE#"))
            for tag in [_tag(p) for p in range(1, PROJECTS + 1)] + [LATE]
        }
        out["invoice_date"] = datetime.now(UTC).date()
    out["wall_s"] = round(time.monotonic() - started, 1)
    out["figures"] = _figures(out)
    write_json(tmp / "chaos-figures.json", out["figures"])
    print("\nchaos figures:", json.dumps(out["figures"], indent=2))
    return out


def _figures(out: dict[str, Any]) -> dict[str, Any]:
    records = out["report"]["erp"]["records"]
    fired = {
        str(rule.get("mode") if rule.get("mode") != "error" else rule.get("status")): rule.get("fired", 0)
        for rule in out["faults"]
    }
    stats = out["erp_stats"]
    return {
        "entries": len(out["entries"]),
        "entry_versions": sum(len(v) for v in out["entries"].values()),
        "projects": PROJECTS,
        "deliveries": out["deliveries"],
        "duplicates_sent": out["duplicates_sent"],
        "delivery_outcomes": dict(out["posted"]),
        "erp_requests": stats["total"],
        "erp_faults_injected": fired,
        "erp_by_status": stats["by_status"],
        "sqs_retries": {k: v["failed"] for k, v in out["pollers"].items() if v["failed"]},
        "consumer_crashes": sum(v["crashes"] for v in out["pollers"].values()),
        "dlq_before_redrive": out["dlq_before"],
        "dlq_after_redrive": out["dlq_after"],
        "exceptions": len(out["report"]["exceptions"]),
        "erp_records": {kind: len(items) for kind, items in records.items()},
        "invoices": len(out["report"]["invoices"]),
        "invoiced_total": str(sum((Decimal(i["total"]) for i in out["report"]["invoices"]), Decimal(0))),
        "wall_s": out["wall_s"],
    }


def _finals(chaos: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry_id: versions[-1] for entry_id, versions in chaos["entries"].items()}


# -- the assertions ---------------------------------------------------------------------------------


def test_the_run_is_as_big_and_as_faulty_as_asked(chaos: dict[str, Any], record_property: Any) -> None:
    figures = chaos["figures"]
    record_property("chaos_figures", json.dumps(figures))
    assert figures["entries"] >= 1000
    assert figures["duplicates_sent"] >= figures["deliveries"] // 12
    assert chaos["posted"]["202 duplicate"] == figures["duplicates_sent"]
    assert chaos["posted"]["202"] == figures["deliveries"] - figures["duplicates_sent"]
    fired = figures["erp_faults_injected"]
    assert fired["429"] > 0 and fired["500"] > 0 and fired["commit_then_drop"] > 0
    assert figures["consumer_crashes"] == 1
    # Versions arrived out of order for some entries (v2 before v1).
    order = [body["data"]["id"] + f"@{body['data']['version']}" for _, body in _delivery_order(chaos)]
    assert any(
        order.index(f"{e}@2") < order.index(f"{e}@1") for e, v in chaos["entries"].items() if len(v) == 2
    )


def _delivery_order(chaos: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(SEED)
    entries = _time_entries(rng)
    return _deliveries(rng, entries)[0]


def test_every_entry_has_one_charge_at_its_final_version_and_one_time_bill(chaos: dict[str, Any]) -> None:
    finals = _finals(chaos)
    charges = {c["source_id"]: c for items in chaos["charges"].values() for c in items}
    counts = Counter(c["source_id"] for items in chaos["charges"].values() for c in items)
    assert set(charges) == set(finals), "lost or unknown entries"
    assert max(counts.values()) == 1
    for entry_id, final in finals.items():
        assert int(charges[entry_id]["version"]) == final["version"], entry_id
    bills = chaos["report"]["erp"]["records"].get("timeBill", [])
    by_eid = Counter(b["externalId"] for b in bills)
    assert set(by_eid) == {f"r2r-time-{entry_id}" for entry_id in finals}
    assert max(by_eid.values()) == 1
    for bill in bills:
        final = finals[bill["externalId"].removeprefix("r2r-time-")]
        assert Decimal(str(bill["hours"])) == Decimal(final["hours"]), bill["externalId"]


def test_no_erp_record_exists_twice(chaos: dict[str, Any]) -> None:
    records = chaos["report"]["erp"]["records"]
    for kind, items in records.items():
        external_ids = [r.get("externalId") for r in items]
        assert None not in external_ids, f"a {kind} written without an external id"
        assert len(set(external_ids)) == len(external_ids), f"duplicate {kind} external ids"
    assert len(records["customer"]) == PROJECTS + 1  # one per client, the late deal's too
    assert len(records["job"]) == PROJECTS + 1
    invoices = records["invoice"]
    assert sorted(i["externalId"] for i in invoices) == sorted(
        f"r2r-invoice-eng-chaos-{p:02d}-ms-chaos-{p:02d}" for p in range(1, PROJECTS + 1)
    )
    # No two invoices for one job (the business key of a milestone run here).
    assert len({json.dumps(i["job"], sort_keys=True) for i in invoices}) == len(invoices)


def test_invoices_equal_the_billing_rules_on_the_final_versions(chaos: dict[str, Any]) -> None:
    finals = _finals(chaos)
    by_project: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for data in finals.values():
        by_project[data["engagement_id"].removeprefix("eng-chaos-")].append(data)
    invoices = {i["externalId"]: i for i in chaos["report"]["invoices"]}
    grand_expected = Decimal(0)
    for project in range(1, PROJECTS + 1):
        tag = _tag(project)
        deal = _deal(project, 2, with_data_engineer=True) if tag == "03" else _deal(project)
        expected = _expected_invoice(deal, by_project[tag], chaos["invoice_date"])
        actual = invoices[f"r2r-invoice-eng-chaos-{tag}-ms-chaos-{tag}"]
        assert Decimal(actual["total"]) == expected.total.amount, tag
        assert sorted(Decimal(line["amount"]) for line in actual["lines"]) == sorted(
            line.amount for line in expected.lines
        ), tag
        grand_expected += expected.total.amount
    assert Decimal(chaos["figures"]["invoiced_total"]) == grand_expected
    # The late engagement's entry is charged (no milestone of it was completed, so it waits unbilled).
    [late] = chaos["charges"][LATE]
    assert (late["status"], late["decision"]) == ("unbilled", "invoiceable")


def test_each_poison_message_gave_exactly_one_exception_and_the_dlqs_are_empty(chaos: dict[str, Any]) -> None:
    assert sum(chaos["dlq_before"].values()) == 2
    assert [name for name in chaos["dlq_before"] if "TimePosting" in name] == list(chaos["dlq_before"])
    assert chaos["dlq_after"] == {}
    exceptions = chaos["report"]["exceptions"]
    by_record = Counter(e.get("source_record_id") for e in exceptions)
    assert by_record == Counter({RULE_POISON: 1, LATE_POISON: 1}), exceptions
    kinds = {e["source_record_id"]: e["error_type"] for e in exceptions}
    assert kinds == {RULE_POISON: "BillingRuleError", LATE_POISON: "EngagementNotReady"}
    # Both were already recorded before the redrive, once.
    assert Counter(e.get("source_record_id") for e in chaos["exceptions_before"]) == by_record
