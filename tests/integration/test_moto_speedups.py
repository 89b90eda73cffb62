"""The local stack's faster moto SQS (``infra.local.moto_speedups``) answers exactly as moto's own.

The same script of SQS calls runs in two fresh interpreters, one with the speedups applied; both must
produce the same answers, and those answers must be SQS's (checked below). A fresh interpreter keeps the
patches out of this test process, where other tests use moto unpatched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = Path(__file__).with_name("moto_calls_script.py")


def _run(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fast_sqs_answers_like_motos_own() -> None:
    plain, fast = _run("plain"), _run("fast")
    assert fast == plain
    # EventBridge rules deliver what moto delivers, with the default input and with a transformer.
    assert len(fast["rule_plain"]) == len(fast["rule_shaped"]) == 9
    assert {b["detail"]["data"]["id"] for b in fast["rule_plain"]} == {f"te-{i}" for i in range(12) if i % 4}
    assert {"entry": "te-1", "hours": "1.5", "what": "approved"} in fast["rule_shaped"]
    assert fast["initial"] == [30, 0, 1]  # the delayed message is neither visible nor received
    assert fast["first"] == [f"m{i}" for i in range(10)]
    assert fast["after_receive"] == [20, 10, 1]
    assert fast["batch_deleted"] == 5
    assert fast["after_delete"] == [20, 5, 1]
    assert fast["invalid"] == "ReceiptHandleIsInvalid"
    assert fast["old_handle_deleted"] == "m10"
    assert fast["after_old_handle"] == [19, 5, 1]
    # Every remaining visible message went to the DLQ after its second receive, or was received.
    assert "m29" in fast["drained"]
    assert "later" not in fast["drained"]
    assert fast["dlq"] > 0
    # DynamoDB queries: one partition, in key order, paged, reversed, filtered; an index and a scan as before.
    assert [sk for _pk, sk, _ in fast["query_all"][0]] == [
        f"{'CHARGE' if i % 3 else 'OTHER'}#{i:02d}"
        for i in sorted(range(12), key=lambda i: ("CHARGE" if i % 3 else "OTHER", i))
    ]
    assert {pk for page in fast["query_all"] for pk, _sk, _ in page} == {"ENG#3"}
    assert [len(page) for page in fast["query_prefix_paged"]] == [3, 3, 2]
    assert all(attrs == ["n", "pk", "sk"] for page in fast["query_prefix_paged"] for _pk, _sk, attrs in page)
    assert [sk for _pk, sk, _ in fast["query_reverse_filtered"][0]] == [
        "OTHER#09",
        "OTHER#06",
        "CHARGE#11",
        "CHARGE#10",
        "CHARGE#08",
        "CHARGE#07",
    ]
    assert fast["query_missing"] == [[]]
    assert sum(fast["query_index"]) == 30
    assert fast["scan"] == 60
    # Paged scans read every item once, in moto's key order, whatever the page size and filter.
    every = [(f"ENG#{p}", sk) for p in range(5) for _pk, sk, _ in fast["query_all"][0]]
    assert [tuple(item) for page in fast["scan_paged"] for item in page] == every
    assert [len(page) for page in fast["scan_paged"]] == [7] * 8 + [4]
    assert [tuple(item) for page in fast["scan_paged_filtered"] for item in page] == [
        (pk, sk) for pk, sk in every if sk.startswith("CHARGE#") and int(sk[-2:]) > 6
    ]
    segments = [[tuple(item) for page in pages for item in page] for pages in fast["scan_segments"]]
    assert sorted(item for segment in segments for item in segment) == sorted(every)  # each item once
    assert all(segment for segment in segments)
    assert [tuple(item) for item in fast["scan_from_gap"]] == [
        ("ENG#2", "CHARGE#07"),
        ("ENG#2", "CHARGE#08"),
        ("ENG#2", "CHARGE#10"),
        ("ENG#2", "CHARGE#11"),
    ]
    assert [pk for page in fast["scan_hash_only"] for pk, _ in page] == [f"k{i:02d}" for i in range(11)]
    before, after = fast["scan_changed_between_pages"]
    assert before == ["k00", "k01", "k02", "k03"]
    assert [pk for page in after for pk, _ in page] == ["k04", *(f"k{i:02d}" for i in range(6, 11)), "k99"]
