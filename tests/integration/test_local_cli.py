"""``r2r local up`` and ``r2r local run`` on the real synthesized template."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from infra.cli import app

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "events" / "scenarios" / "sold-to-billed"

pytestmark = [pytest.mark.xdist_group("local"), pytest.mark.timeout(180)]


def _r2r() -> list[str]:
    script = Path(sys.executable).with_name("r2r")
    return [str(script)] if script.exists() else [sys.executable, "-m", "infra.cli"]


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"r2r local up exited early ({process.returncode}):\n{out}\n{err}")
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass  # being written
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"{path} did not appear within {timeout} s")


def _up(state_dir: Path, *options: str) -> subprocess.Popen[str]:
    """``r2r local up`` on any free ports, in the background."""
    return subprocess.Popen(
        [*_r2r(), "local", "up", "--port-base", "0", "--state-dir", str(state_dir), *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C, as a user stops it; what it printed."""
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"r2r local up did not stop on SIGINT:\n{out}\n{err}")


def test_up_serves_every_template_queue_and_stops_on_sigint(tmp_path: Path):
    state_dir = tmp_path / "state"
    process = _up(state_dir)
    try:
        described = _wait_for(state_dir / "local.json", process, timeout=120)
        template = json.loads((ROOT / "cdk.out" / "r2r-dev.template.json").read_text())
        sqs = boto3.client(
            "sqs",
            endpoint_url=described["aws_endpoint_url"],
            region_name=described["region"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

        listed = {url.rsplit("/", 1)[1] for url in sqs.list_queues()["QueueUrls"]}

        template_queues = {k for k, r in template["Resources"].items() if r["Type"] == "AWS::SQS::Queue"}
        assert set(described["queues"]) == template_queues
        # Besides the template's queues, one tap queue per Firehose delivery stream a rule targets (moto
        # delivers no EventBridge -> Firehose; the local forwarder reads the tap: infra/local/firehose.py).
        taps = {
            d["tap_queue"].rsplit("/", 1)[1] for d in described["delivery_streams"].values() if d["tap_queue"]
        }
        assert listed == {q["name"] for q in described["queues"].values()} | taps
        urls = [described["api_url"], described["aws_endpoint_url"], described["erp_url"]]
        if "SALESFORCE_BASE_URL" in json.dumps(template):  # a function writes back to Salesforce
            urls.append(described["salesforce_url"])
        for url in urls:
            assert url.startswith("http://127.0.0.1:")
        assert described["api_url"].endswith("/dev/")
        assert described["state_machine_arn"].startswith(
            "arn:aws:states:us-east-1:123456789012:stateMachine:"
        )
        assert set(described["webhook_secrets"]) == {"crm", "psa", "hris", "generic"}
        for name in described["schedules"]:
            ticked = subprocess.run(
                [*_r2r(), "local", "tick", name, "--state-dir", str(state_dir)],
                check=False,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert ticked.returncode == 0, ticked.stderr
            assert f"ticked {name}" in ticked.stdout
    finally:
        out, err = _stop(process)
    assert process.returncode == 0, err
    assert "stopped." in out
    assert not (state_dir / "local.json").exists()


def test_up_runs_a_scenario_then_serves_what_it_left_to_the_billing_cli(tmp_path: Path):
    state_dir = tmp_path / "state"
    process = _up(state_dir, "--no-schedules", "--scenario", str(SCENARIO))
    try:
        # local.json appears once the scenario ran: its decisions are there to explain
        _wait_for(state_dir / "local.json", process, timeout=150)
        explained = subprocess.run(
            [
                *_r2r(),
                "billing",
                "explain",
                "te-maria-lopez-2026-11-16",
                "--local-json",
                str(state_dir / "local.json"),
                "--json",
            ],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert explained.returncode == 0, explained.stderr
        decision = json.loads(explained.stdout)
        assert decision["decision"] == "invoiceable" and decision["status"] == "invoiced"
        assert decision["source_id"] == "te-maria-lopez-2026-11-16"
    finally:
        out, err = _stop(process)
    assert process.returncode == 0, err
    # the scenario's summary was printed before the stack's description
    assert out.index(f"running {SCENARIO}") < out.index("stopped.")
    assert "r2r-invoice-eng-acme-cloud-2026-ms-discovery-signoff" in out and "43969.38" in out
    assert (state_dir / "metrics.jsonl").stat().st_size > 0  # the handlers' EMF lines, not on the console


def test_run_posts_a_scenario_reports_and_fails_on_an_unexpected_status(tmp_path: Path):
    scenario = tmp_path / "scenario"
    scenario.mkdir()
    shutil.copy(SCENARIO / "01-opportunity-closed-won.json", scenario / "01-opportunity-closed-won.json")
    body = {"type": "opportunity.closed_won", "timestamp": "2026-11-20T10:00:00Z", "data": {}}
    (scenario / "02-unsigned.json").write_text(
        json.dumps({"source": "crm", "body": body, "sign": False, "expect_status": 401})
    )
    (scenario / "03-wrong-expectation.json").write_text(
        json.dumps({"source": "crm", "body": body, "sign": False, "expect_status": 202})
    )
    report_file = tmp_path / "report.json"

    result = CliRunner().invoke(app, ["local", "run", str(scenario), "--report", str(report_file)])

    assert result.exit_code == 1, result.output
    report = json.loads(report_file.read_text())
    assert [(d["status"], d["ok"]) for d in report["deliveries"]] == [(202, True), (401, True), (401, False)]
    assert report["ok"] is False
    assert len(report["erp"]["records"]["customer"]) == 1
    assert len(report["erp"]["records"]["job"]) == 1
    assert report["exceptions"] == []
    assert set(report["dlq_depths"].values()) == {0}
    assert "Deliveries" in result.output and "ERP records" in result.output
