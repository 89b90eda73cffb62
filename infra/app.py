"""The r2r CDK app.

Run it directly (``python -m infra.app [--stage dev] [--outdir cdk.out] [--no-bundle]``,
what ``make synth`` does) or through the cdk CLI (``cdk.json``: the CLI passes the output
directory in ``CDK_OUTDIR`` and the context in ``CDK_CONTEXT_JSON``, which ``cdk.App``
reads itself). Run directly, the app reads ``cdk.json``'s context (the feature flags) the
way the CLI would, so both paths synthesize the same template.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.constructs.paths import REPO_ROOT
from infra.constructs.settings import CTX_STAGE, StageSettings
from infra.stack import R2rStack

CDK_JSON = REPO_ROOT / "cdk.json"
DEFAULT_OUTDIR = REPO_ROOT / "cdk.out"
BUNDLING_STACKS_CONTEXT = "aws:cdk:bundling-stacks"


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """The ``context`` block of cdk.json (feature flags and r2r defaults)."""
    if not path.is_file():
        return {}
    context = json.loads(path.read_text(encoding="utf-8")).get("context", {})
    return dict(context) if isinstance(context, dict) else {}


def running_under_cdk_cli() -> bool:
    return "CDK_OUTDIR" in os.environ or "CDK_CONTEXT_JSON" in os.environ


def build_app(
    *,
    stage: str | None = None,
    outdir: Path | str | None = None,
    bundle: bool = True,
    context: Mapping[str, Any] | None = None,
) -> tuple[cdk.App, R2rStack]:
    """Create the app with its one stack ``r2r-<stage>`` and cdk-nag's AwsSolutions checks.

    ``stage`` and ``bundle=False`` override any context; ``context`` adds defaults (below what
    the CLI passes). Without the CLI, ``outdir`` defaults to ``<repo>/cdk.out``.
    """
    under_cli = running_under_cdk_cli()
    defaults: dict[str, Any] = {} if under_cli else cdk_json_context()
    defaults.update(context or {})
    overrides: dict[str, Any] = {}
    if stage is not None:
        overrides[CTX_STAGE] = stage
    if not bundle:
        overrides[BUNDLING_STACKS_CONTEXT] = []
    if outdir is None and not under_cli:
        outdir = DEFAULT_OUTDIR
    app = cdk.App(
        outdir=str(outdir) if outdir is not None else None,
        context=defaults,
        post_cli_context=overrides or None,
    )
    settings = StageSettings.from_node(app.node)
    stack = R2rStack(app, settings.stack_name, settings=settings)
    # cdk-nag 3 is a policy-validation plugin: unacknowledged findings fail the synth.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.app", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", help="deployment stage (stack r2r-<stage>); default: context or dev")
    parser.add_argument("--outdir", type=Path, help="cloud assembly directory (default cdk.out)")
    parser.add_argument("--no-bundle", action="store_true", help="skip bundling the deps layer (no pip run)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    from infra.synth import synthesize_app  # the stamp writer lives with ensure_synthesized

    result = synthesize_app(stage=args.stage, outdir=args.outdir, bundle=not args.no_bundle)
    print(f"synthesized {result.stack.stack_name}: {result.template_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
