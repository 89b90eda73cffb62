"""Deps layer pins, the pip command, the app entry points and ensure_synthesized's cache."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from infra import synth as synth_module
from infra.constructs.layers import PipLayerBundling, pip_install_command
from infra.constructs.paths import REPO_ROOT
from infra.synth import SynthResult
from tests.infra.helpers import STAGE

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_deps_layer_requirements_equal_pyproject_runtime_dependencies() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dependencies = pyproject["project"]["dependencies"]
    assert _requirement_lines(REPO_ROOT / "layers" / "deps" / "requirements.txt") == dependencies
    assert all("==" in dep for dep in dependencies)  # pinned


def test_pip_command_targets_the_lambda_platform(tmp_path: Path) -> None:
    command = pip_install_command(Path("requirements.txt"), tmp_path / "python")
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    joined = " ".join(command)
    for part in (
        f"--target {tmp_path / 'python'}",
        "--platform manylinux2014_aarch64",
        "--only-binary=:all:",
        "--python-version 3.14",
        "--implementation cp",
    ):
        assert part in joined


def test_local_bundling_runs_pip_into_python_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    class Done:
        returncode = 0
        stdout = stderr = ""

    def fake_run(command: list[str], **_: Any) -> Done:
        calls.append(command)
        (tmp_path / "python" / "bin").mkdir(parents=True)
        return Done()

    monkeypatch.setattr("infra.constructs.layers.subprocess.run", fake_run)
    monkeypatch.setattr("infra.constructs.layers.runtime_interpreter", lambda: None)
    with pytest.warns(UserWarning, match="without bytecode"):
        assert PipLayerBundling(Path("requirements.txt")).try_bundle(str(tmp_path)) is True
    assert calls and calls[0][calls[0].index("--target") + 1] == str(tmp_path / "python")
    assert not (tmp_path / "python" / "bin").exists()


def test_local_bundling_ships_bytecode_of_the_runtime_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/opt`` is read-only in Lambda: without ``.pyc`` in the layer every cold start compiles."""
    calls: list[list[str]] = []

    class Done:
        returncode = 0
        stdout = stderr = ""

    def fake_run(command: list[str], **_: Any) -> Done:
        calls.append(command)
        return Done()

    monkeypatch.setattr("infra.constructs.layers.subprocess.run", fake_run)
    monkeypatch.setattr("infra.constructs.layers.runtime_interpreter", lambda: "/usr/bin/python3.14")
    assert PipLayerBundling(Path("requirements.txt")).try_bundle(str(tmp_path)) is True
    assert len(calls) == 2 and "pip" in calls[0]
    compile_call = calls[1]
    assert compile_call[:3] == ["/usr/bin/python3.14", "-m", "compileall"]
    assert "unchecked-hash" in compile_call and compile_call[-1] == str(tmp_path / "python")


def test_the_runtime_interpreter_is_of_the_lambda_runtime_version() -> None:
    from infra.constructs.layers import PIP_PYTHON_VERSION, RUNTIME, runtime_interpreter

    assert RUNTIME.name == f"python{PIP_PYTHON_VERSION}"
    found = runtime_interpreter()
    assert found is None or found.endswith(PIP_PYTHON_VERSION) or sys.version.startswith(PIP_PYTHON_VERSION)


def test_local_bundling_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Failed:
        returncode = 1
        stdout = ""
        stderr = "No matching distribution found for somepkg"

    monkeypatch.setattr("infra.constructs.layers.subprocess.run", lambda *a, **k: Failed())
    with pytest.raises(RuntimeError, match="somepkg"):
        PipLayerBundling(Path("requirements.txt")).try_bundle(str(tmp_path))


def test_template_written_with_stamp(synth: SynthResult) -> None:
    assert synth.template_path.name == f"r2r-{STAGE}.template.json"
    assert synth.stack.stack_name == f"r2r-{STAGE}"
    stamp = json.loads((synth.template_path.parent / f"r2r-{STAGE}.inputs.json").read_text())
    assert stamp["inputs_sha256"] == synth_module.inputs_hash(STAGE)
    assert stamp["bundled"] is False


def test_ensure_synthesized_reuses_a_fresh_template(
    synth: SynthResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_synth(*_: Any, **__: Any) -> None:
        raise AssertionError("re-synthesized although nothing changed")

    monkeypatch.setattr(synth_module, "_synthesize_unlocked", must_not_synth)
    outdir = synth.template_path.parent
    assert synth_module.ensure_synthesized(stage=STAGE, outdir=outdir) == synth.template_path


def test_ensure_synthesized_resynthesizes_when_inputs_change(
    synth: SynthResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()
    template = outdir / f"r2r-{STAGE}.template.json"
    template.write_text(synth.template_path.read_text())
    (outdir / f"r2r-{STAGE}.inputs.json").write_text(json.dumps({"inputs_sha256": "stale"}))
    calls: list[tuple[Any, ...]] = []

    class Result:
        template_path = template

    def fake_synth(*args: Any) -> Result:
        calls.append(args)
        return Result()

    monkeypatch.setattr(synth_module, "_synthesize_unlocked", fake_synth)
    assert synth_module.ensure_synthesized(stage=STAGE, outdir=outdir) == template
    assert calls == [(STAGE, outdir, False, None)]


def test_inputs_hash_covers_the_app_inputs() -> None:
    names = {p.relative_to(REPO_ROOT).as_posix() for p in synth_module.input_files()}
    assert {
        "cdk.json",
        "layers/deps/requirements.txt",
        "infra/stack.py",
        "infra/app.py",
        "infra/constructs/queue_consumer.py",
        "infra/statemachines/milestone_to_invoice.asl.json",
    } <= names
    # The local stack, the sandboxes and the CLIs live beside the app but do not shape the template.
    assert not any(name.startswith(("infra/local/", "infra/erp_sandbox/")) for name in names)
    assert "infra/cli.py" not in names
    assert synth_module.inputs_hash("dev") != synth_module.inputs_hash("prod")


def test_cdk_json_runs_the_app_module() -> None:
    cdk_json = json.loads((REPO_ROOT / "cdk.json").read_text())
    assert cdk_json["app"] == ".venv/bin/python -m infra.app"
    # Feature flags: the API Gateway account role is not managed by this stack.
    assert cdk_json["context"]["@aws-cdk/aws-apigateway:disableCloudWatchRole"] is True


def test_settings_parse_cli_strings() -> None:
    from aws_cdk import App

    from infra.constructs.settings import StageSettings

    app = App(
        context={
            "stage": "qa",
            "erpConcurrencyShare": "7",
            "erpMasterDataShare": "3",
            "removeDataOnDestroy": "true",
        }
    )
    settings = StageSettings.from_node(app.node)
    assert settings.stack_name == "r2r-qa"
    assert settings.erp_concurrency_share == 7
    assert settings.erp_master_data_share == 3
    assert settings.remove_data_on_destroy is True
    with pytest.raises(ValueError, match="erpConcurrencyShare"):
        StageSettings.from_node(App(context={"erpConcurrencyShare": "1"}).node)
    with pytest.raises(ValueError, match="stage"):
        StageSettings.from_node(App(context={"stage": "Prod_1"}).node)


def test_our_code_is_bundled_with_hash_checked_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core layer and each function folder ship their sources plus bytecode that needs no file times."""
    from infra.constructs.layers import CompiledSourceBundling

    source = tmp_path / "src"
    (source / "__pycache__").mkdir(parents=True)
    (source / "handler.py").write_text("def handler(event, context):\n    return 1\n", encoding="utf-8")
    (source / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"stale")
    out = tmp_path / "out"
    # The host's interpreter stands in for the runtime's (the real bundle uses python3.14 or Docker).
    monkeypatch.setattr("infra.constructs.layers.runtime_interpreter", lambda: sys.executable)
    assert CompiledSourceBundling(source).try_bundle(str(out)) is True
    assert (out / "handler.py").read_text(encoding="utf-8").startswith("def handler")
    compiled = list((out / "__pycache__").glob("handler.*.pyc"))
    assert len(compiled) == 1 and not (out / "__pycache__" / "stale.cpython-311.pyc").exists()
    flags = int.from_bytes(compiled[0].read_bytes()[4:8], "little")
    assert flags == 0b01  # hash-based, source not checked: valid whatever the zip does to file times


def test_without_the_runtime_interpreter_our_code_ships_as_source_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.constructs.layers import CompiledSourceBundling

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "handler.py").write_text("x = 1\n", encoding="utf-8")
    monkeypatch.setattr("infra.constructs.layers.runtime_interpreter", lambda: None)
    with pytest.warns(UserWarning, match="without bytecode"):
        assert CompiledSourceBundling(tmp_path / "src").try_bundle(str(tmp_path / "out")) is True
    assert (tmp_path / "out" / "handler.py").is_file() and not (tmp_path / "out" / "__pycache__").exists()
