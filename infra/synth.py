"""Synthesize the r2r app from Python, and re-synthesize only when its inputs changed.

``ensure_synthesized()`` is what the embedded local stack calls before reading
``cdk.out/r2r-<stage>.template.json``: it keeps a hash of the app's inputs beside the
template and synthesizes (without bundling, so no pip run) only when that hash changed.
A lock file serializes concurrent callers (parallel test workers, two CLI commands).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# jsii (the bridge to CDK's Node.js core) prints a banner on Node 20, which is past its end of life but
# works; the Makefile silences it, and so do the r2r commands that synthesize.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk
from aws_cdk import cx_api

from infra.app import build_app
from infra.constructs.paths import REPO_ROOT
from infra.constructs.settings import DEFAULT_STAGE, validate_stage
from infra.stack import R2rStack

DEFAULT_OUTDIR = REPO_ROOT / "cdk.out"
_STAMP_VERSION = 1
_LOCK_NAME = ".r2r-synth.lock"


@dataclass(frozen=True)
class SynthResult:
    app: cdk.App
    stack: R2rStack
    assembly: cx_api.CloudAssembly
    template_path: Path


def input_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files a template depends on: the app's code, the ASL, cdk.json, the deps layer pins.

    Only the CDK app itself counts (not the local stack, the sandboxes or the CLIs beside it in
    ``infra/``), so editing those does not force a re-synth.
    """
    infra = root / "infra"
    candidates = [
        *(infra / name for name in ("__init__.py", "app.py", "stack.py", "synth.py")),
        *(infra / "constructs").rglob("*.py"),
        *(p for p in (infra / "statemachines").glob("*") if p.is_file()),
        root / "cdk.json",
        root / "layers" / "deps" / "requirements.txt",
    ]
    return sorted(
        {p for p in candidates if p.is_file() and "__pycache__" not in p.parts},
        key=lambda p: p.relative_to(root).as_posix(),
    )


def inputs_hash(stage: str, root: Path = REPO_ROOT) -> str:
    digest = hashlib.sha256(f"r2r-synth-v{_STAMP_VERSION}\0{stage}\0".encode())
    for path in input_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def template_path(stage: str, outdir: Path) -> Path:
    return Path(outdir) / f"r2r-{stage}.template.json"


def stamp_path(stage: str, outdir: Path) -> Path:
    return Path(outdir) / f"r2r-{stage}.inputs.json"


def _read_stamp(stage: str, outdir: Path) -> str | None:
    try:
        data = json.loads(stamp_path(stage, outdir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("inputs_sha256") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _write_stamp(stage: str, outdir: Path, *, bundled: bool, inputs_sha256: str) -> None:
    stamp = {"inputs_sha256": inputs_sha256, "stage": stage, "bundled": bundled}
    target = stamp_path(stage, outdir)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)


@contextmanager
def _locked(outdir: Path) -> Iterator[None]:
    outdir.mkdir(parents=True, exist_ok=True)
    with (outdir / _LOCK_NAME).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _resolve_outdir(outdir: Path | str | None) -> Path:
    if outdir is not None:
        return Path(outdir)
    return Path(os.environ["CDK_OUTDIR"]) if "CDK_OUTDIR" in os.environ else DEFAULT_OUTDIR


def _synthesize_unlocked(
    stage: str | None, outdir: Path, bundle: bool, context: Mapping[str, Any] | None
) -> SynthResult:
    # The inputs as they are when the synth starts: a file edited while it runs makes the next call
    # synthesize again, instead of stamping an older template with the newer inputs.
    expected = stage or DEFAULT_STAGE
    before = inputs_hash(expected)
    app, stack = build_app(stage=stage, outdir=outdir, bundle=bundle, context=context)
    assembly = app.synth()
    template = Path(assembly.directory) / stack.template_file
    built = stack.settings.stage
    digest = before if built == expected else inputs_hash(built)
    _write_stamp(built, Path(assembly.directory), bundled=bundle, inputs_sha256=digest)
    return SynthResult(app=app, stack=stack, assembly=assembly, template_path=template)


def synthesize_app(
    stage: str | None = None,
    outdir: Path | str | None = None,
    bundle: bool = True,
    context: Mapping[str, Any] | None = None,
) -> SynthResult:
    """Synthesize and keep the app and stack (tests read annotations and cdk-nag findings).

    ``stage=None`` takes the stage from context (default dev); ``outdir=None`` takes
    ``CDK_OUTDIR`` (cdk CLI) or ``<repo>/cdk.out``.
    """
    directory = _resolve_outdir(outdir)
    with _locked(directory):
        return _synthesize_unlocked(stage, directory, bundle, context)


def synthesize(stage: str = DEFAULT_STAGE, outdir: Path = DEFAULT_OUTDIR, bundle: bool = False) -> Path:
    """Synthesize ``r2r-<stage>`` into ``outdir`` and return the template's path.

    With ``bundle=False`` the context ``aws:cdk:bundling-stacks`` is ``[]``: the deps layer
    is not built (no pip run) and its asset is a placeholder; the template is otherwise the same.
    """
    return synthesize_app(stage=validate_stage(stage), outdir=outdir, bundle=bundle).template_path


def ensure_synthesized(stage: str = DEFAULT_STAGE, outdir: Path = DEFAULT_OUTDIR) -> Path:
    """The template for ``stage``, re-synthesized (without bundling) only if an input changed."""
    validate_stage(stage)
    directory = Path(outdir)
    with _locked(directory):
        template = template_path(stage, directory)
        if template.is_file() and _read_stamp(stage, directory) == inputs_hash(stage):
            return template
        return _synthesize_unlocked(stage, directory, False, None).template_path
