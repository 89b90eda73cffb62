"""``make bench``: sections run in order, a missing one is reported, results are written as JSON and Markdown.

No timing is asserted here: the bench measures, these tests check what it reports and how.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infra.bench import coldstart, harness
from infra.bench.figures import BenchContext, Figure

REPO_ROOT = Path(__file__).resolve().parents[2]


def _ctx(tmp_path: Path) -> BenchContext:
    return BenchContext(repo_root=REPO_ROOT, out_dir=tmp_path, quick=True, repeats=1)


@pytest.fixture
def fake_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sections: one that measures, one that breaks; the real sections are not run."""

    def measured(ctx: BenchContext) -> list[Figure]:
        return [
            Figure("fake", "entries | per second", 1234.0, "entries/s", 1000.0, "higher"),
            Figure("fake", "ratio", 1.6, "x", 1.45),
            Figure("fake", "no target", 0.004, "USD"),
        ]

    def broken(ctx: BenchContext) -> list[Figure]:
        raise RuntimeError("sandbox did not start")

    for name, run in (("fake_ok", measured), ("fake_broken", broken)):
        module = types.ModuleType(f"infra.bench.{name}")
        module.run = run  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module.__name__, module)


def test_a_section_without_a_module_is_reported_not_available(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    status = harness.run_sections(ctx, ["no_such_section"])
    assert status == {"no_such_section": {"status": "not available"}}
    assert ctx.results == {}


@pytest.mark.usefixtures("fake_sections")
def test_sections_run_in_order_and_a_broken_one_does_not_stop_the_rest(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    status = harness.run_sections(ctx, ["fake_broken", "no_such_section", "fake_ok"])
    assert list(status) == ["fake_broken", "no_such_section", "fake_ok"]
    assert status["fake_broken"]["status"] == "error"
    assert "sandbox did not start" in status["fake_broken"]["error"]
    assert status["fake_ok"]["status"] == "ok"
    assert ctx.figure("fake", "ratio") == Figure("fake", "ratio", 1.6, "x", 1.45)


@pytest.mark.usefixtures("fake_sections")
def test_results_json_carries_the_run_and_every_figure_with_target_and_ok(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    status = harness.run_sections(ctx, ["fake_ok"])
    document = harness.results_document(ctx, status, datetime(2026, 11, 26, 9, 0, tzinfo=UTC), 1.5)
    json.dumps(document)  # serialisable as written
    assert document["date"] == "2026-11-26T09:00:00+00:00"
    assert document["python"]["version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}")
    assert document["machine"]["cpus"] >= 1
    assert document["git_commit"]  # the repository is a git checkout
    figures = {f["name"]: f for f in document["figures"]}
    assert figures["entries | per second"]["ok"] is True
    assert figures["ratio"]["target"] == 1.45
    assert figures["ratio"]["ok"] is False
    assert figures["no target"]["ok"] is None


@pytest.mark.usefixtures("fake_sections")
def test_markdown_table_has_one_row_per_figure_with_its_target(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    harness.run_sections(ctx, ["fake_ok"])
    table = harness.markdown_table(harness.all_figures(ctx)).splitlines()
    assert table[0] == "| section | figure | value | unit | target | ok |"
    assert table[2] == "| fake | entries \\| per second | 1,234 | entries/s | ≥ 1,000 | yes |"
    assert table[3] == "| fake | ratio | 1.60 | x | ≤ 1.45 | NO |"
    assert table[4] == "| fake | no target | 0.004 | USD |  |  |"


def test_a_value_that_is_not_a_number_is_written_as_such_not_a_crash() -> None:
    # e.g. a spike whose run made no ERP request: its ratio to the ERP floor (zero) is infinite
    assert harness.format_value(float("inf")) == "∞"
    assert harness.format_value(float("nan")) == "n/a"
    assert harness.format_value(1234.0) == "1,234"


@pytest.mark.usefixtures("fake_sections")
def test_main_writes_both_files_and_fails_only_on_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness, "SECTIONS", ("fake_ok", "no_such_section"))
    assert harness.main(["--quick", "--out-dir", str(tmp_path)]) == 0  # a missed target is a result
    document = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert document["quick"] is True
    assert document["sections"]["no_such_section"] == {"status": "not available"}
    markdown = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "| fake | ratio | 1.60 | x | ≤ 1.45 | NO |" in markdown
    assert "Section `no_such_section`: not available." in markdown

    monkeypatch.setattr(harness, "SECTIONS", ("fake_ok", "fake_broken"))
    assert harness.main(["--out-dir", str(tmp_path)]) == 1


def test_cold_start_finds_every_function_and_reports_ratios_to_the_baseline() -> None:
    found = coldstart.discover_functions(REPO_ROOT)
    assert "time_posting" in found
    assert "ingest_webhook" in found
    assert found == sorted(p.parent.name for p in (REPO_ROOT / "functions").glob("*/handler.py"))

    def samples(cpu: float, mib: float) -> list[coldstart.Sample]:
        return [coldstart.Sample(wall_ms=cpu * 2, cpu_ms=cpu, peak_mib=mib)] * 3

    figures = coldstart.figures(
        {
            coldstart.BASELINE: samples(100.0, 40.0),
            coldstart.REFERENCE: samples(190.0, 56.0),
            "time_posting": samples(140.0, 60.0),
        },
        repeats=3,
    )
    by_name = {f.name: f for f in figures}
    ratio = by_name["time_posting: import vs import boto3"]
    assert (ratio.value, ratio.target, ratio.ok) == (1.4, 1.45, True)
    memory = by_name["time_posting: peak RSS"]
    assert (memory.value, memory.target, memory.ok) == (60.0, 58.0, False)
    assert by_name[f"{coldstart.REFERENCE}: import vs import boto3"].target is None


def test_cold_start_sample_imports_a_handler_in_a_fresh_interpreter(tmp_path: Path) -> None:
    found = coldstart.targets(REPO_ROOT, tmp_path / "pycache", ["resource_sync"], environments={})
    assert [t.name for t in found] == [coldstart.BASELINE, coldstart.REFERENCE, "resource_sync"]
    # The packages' own bytecode (no cache prefix), so the test does not compile every module.
    target = replace(found[-1], env={k: v for k, v in found[-1].env.items() if k != "PYTHONPYCACHEPREFIX"})
    sample = coldstart.sample(target, REPO_ROOT)
    assert sample.cpu_ms > 0
    assert sample.peak_mib > 0
