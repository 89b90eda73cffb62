"""Where the app's inputs live, independent of the current working directory."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO_ROOT / "functions"
CORE_LAYER_DIR = REPO_ROOT / "layers" / "core"
DEPS_LAYER_DIR = REPO_ROOT / "layers" / "deps"
STATEMACHINES_DIR = REPO_ROOT / "infra" / "statemachines"


def repo_relative(path: Path) -> str:
    """``path`` relative to the repository root, with forward slashes (template metadata)."""
    return path.resolve().relative_to(REPO_ROOT).as_posix()
