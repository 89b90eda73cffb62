"""A handler's cold start loads only what its first invocation uses.

Each handler is imported in a fresh interpreter laid out as Lambda lays it out (function folder, core
layer, dependencies) with the variables Lambda sets, and must not have loaded what only some invocations
need (the OAuth libraries sign only on an ERP request; Powertools' parser models are never used by r2r;
X-Ray patches only botocore and httplib, so sqlite3 and requests stay unloaded).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.bench import coldstart

REPO_ROOT = Path(__file__).resolve().parents[2]
NOT_AT_IMPORT = (
    "jwt",
    "cryptography",
    "oauthlib",
    "aws_lambda_powertools.utilities.parser.models",
    "requests",
    "sqlite3",
    "r2r_core.erp.client",
)


@pytest.mark.parametrize("function", coldstart.discover_functions(REPO_ROOT))
def test_handler_import_leaves_first_use_libraries_unloaded(function: str, tmp_path: Path) -> None:
    task_root = REPO_ROOT / "functions" / function
    path = [str(task_root), str(REPO_ROOT / "layers" / "core" / "python"), coldstart.site_packages()]
    probe = (
        f"import sys, json\nsys.path[:0] = {path!r}\nimport handler\n"
        f"print(json.dumps([m for m in {list(NOT_AT_IMPORT)!r} if m in sys.modules]))\n"
    )
    env = coldstart.lambda_environment(function, {}, tmp_path, str(task_root))
    del env["PYTHONPYCACHEPREFIX"]  # the installed packages' own bytecode: no compiling in the test
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [], f"{function} loads these at import"


# Which of r2r's pydantic models have their validator built once the handler is imported: none should
# (``defer_build``: a model is built by the first invocation that uses it, not by every cold start).
_BUILT_MODELS_PROBE = """
import json, sys
from pydantic import BaseModel
built = []
for name, module in list(sys.modules.items()):
    if not name.startswith("r2r_core") or module is None:
        continue
    for value in list(vars(module).values()):
        if (
            isinstance(value, type)
            and issubclass(value, BaseModel)
            and value.__module__ == name
            and value.__pydantic_complete__
        ):
            built.append(name + "." + value.__qualname__)
print(json.dumps(sorted(set(built))))
"""


@pytest.mark.parametrize("function", coldstart.discover_functions(REPO_ROOT))
def test_handler_import_builds_no_model(function: str, tmp_path: Path) -> None:
    task_root = REPO_ROOT / "functions" / function
    path = [str(task_root), str(REPO_ROOT / "layers" / "core" / "python"), coldstart.site_packages()]
    probe = f"import sys\nsys.path[:0] = {path!r}\nimport handler\n" + _BUILT_MODELS_PROBE
    env = coldstart.lambda_environment(function, {}, tmp_path, str(task_root))
    del env["PYTHONPYCACHEPREFIX"]
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [], f"{function} builds these models at import"
