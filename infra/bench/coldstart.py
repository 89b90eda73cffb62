"""Cold start: importing each function's handler in a fresh interpreter, beside ``import boto3`` alone.

Every sample is its own ``python -S`` process whose ``sys.path`` is what Lambda gives a function: the
function's folder (``/var/task``), the core layer (``layers/core/python``), then the third-party
packages (the deps layer; here the venv's site-packages, which also holds boto3 as the runtime does).
The environment is the function's own from the synthesized template (references replaced by
placeholder names: nothing is called at import) plus the variables Lambda sets (``LAMBDA_TASK_ROOT``
among them, so Powertools' Tracer is enabled and patches as it does in Lambda).

The import time is the CPU time the import statement takes in that process (single-threaded work; the
wall time, equal to it on an idle machine, is kept in the JSON beside it: on a shared machine it mostly
measures the neighbours). Peak memory is the process's high-water mark (``VmHWM``) after the import.
Runs are interleaved (baseline, reference, f1, f2, …, then again) so whatever the machine does falls
alike on every target; each ratio is median(function) / median(baseline) of the same run. Bytecode is
cached under ``<out_dir>/pycache`` (one warm-up import per target first), so both sides load compiled
modules. The reference (boto3, the Powertools pieces a consumer uses, pydantic) shows the floor that
third-party code alone sets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.bench.figures import BenchContext, Figure, median

SECTION = "cold_start"
TARGET_RATIO = 1.45
BASELINE = "import boto3"
# What the issue quotes as the floor of a typical consumer: boto3, the Powertools pieces it uses, pydantic.
REFERENCE = "boto3 + Powertools consumer pieces + pydantic"
# Powertools first, as r2r_core.consumer does: Powertools' batch utility imports its pydantic models of
# every event source (SQS, Kinesis, DynamoDB, Kafka) when pydantic is already loaded, which costs about
# half of ``import boto3`` again; a consumer that does not use the parser avoids it by this order.
_REFERENCE_IMPORTS = (
    "import boto3\n"
    "from aws_lambda_powertools import Logger, Metrics\n"
    "from aws_lambda_powertools.utilities.batch import BatchProcessor\n"
    "from aws_lambda_powertools.utilities.idempotency import idempotent_function\n"
    "import pydantic\n"
)
_SOURCE_METADATA_KEY = "r2r:source"

# The probe measures only the import; it imports nothing itself before the clock starts.
_PROBE = """\
import sys, time
sys.path[:] = {path!r} + sys.path
c0, t0 = time.process_time(), time.perf_counter()
exec(compile({code!r}, "<bench>", "exec"), {{"__name__": "__bench__"}})
t1, c1 = time.perf_counter(), time.process_time()
with open("/proc/self/status") as status:
    hwm = [line.split()[1] for line in status if line.startswith("VmHWM:")][0]
sys.stdout.write("%.6f %.6f %s\\n" % ((t1 - t0) * 1000.0, (c1 - c0) * 1000.0, hwm))
"""


@dataclass(frozen=True)
class Target:
    """One thing to import in a fresh interpreter."""

    name: str
    code: str
    path: tuple[str, ...]
    env: Mapping[str, str]


@dataclass(frozen=True)
class Sample:
    wall_ms: float
    cpu_ms: float
    peak_mib: float


def discover_functions(repo_root: Path) -> list[str]:
    """Every ``functions/<name>/handler.py``, by name."""
    return sorted(p.parent.name for p in (repo_root / "functions").glob("*/handler.py"))


def site_packages() -> str:
    """Where the third-party packages are (the venv this runs in)."""
    return sysconfig.get_paths()["purelib"]


def template_environments(repo_root: Path) -> dict[str, dict[str, str]]:
    """Each function folder's environment from the synthesized template (``{}`` if it cannot be had).

    Values that are CloudFormation references become placeholder names: the import must not need them.
    """
    try:
        from infra.synth import ensure_synthesized

        template_file = ensure_synthesized()
        body = json.loads(Path(template_file).read_text(encoding="utf-8"))
    except Exception as exc:  # the bench still runs without CDK; the minimal environment is used
        print(f"cold start: no synthesized template ({exc}); using a minimal environment", file=sys.stderr)
        return {}
    found: dict[str, dict[str, str]] = {}
    for resource in (body.get("Resources") or {}).values():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        source = (resource.get("Metadata") or {}).get(_SOURCE_METADATA_KEY)
        if not source:
            continue
        variables = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
        found[Path(source).name] = {
            key: value if isinstance(value, str) else f"bench-{key.lower().replace('_', '-')}"
            for key, value in variables.items()
        }
    return found


def lambda_environment(
    function: str, variables: Mapping[str, str], pycache: Path, task_root: str
) -> dict[str, str]:
    """What Lambda sets for a function, plus its own variables; the host's environment is not passed."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.14",
        "AWS_LAMBDA_FUNCTION_NAME": f"r2r-bench-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "_HANDLER": "handler.handler",
        "LAMBDA_TASK_ROOT": task_root,
        "PYTHONPYCACHEPREFIX": str(pycache),
        "STAGE": "bench",
        "POWERTOOLS_SERVICE_NAME": "r2r-" + function.replace("_", "-"),
        "POWERTOOLS_METRICS_NAMESPACE": "r2r",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    env.update(variables)
    return env


def targets(
    repo_root: Path,
    pycache: Path,
    functions: list[str] | None = None,
    environments: dict[str, dict[str, str]] | None = None,
) -> list[Target]:
    """The baseline, the reference, then one target per function (its handler module)."""
    core = str(repo_root / "layers" / "core" / "python")
    deps = site_packages()
    if environments is None:
        environments = template_environments(repo_root)
    neutral = lambda_environment("bench-baseline", {}, pycache, str(repo_root))
    found = [
        Target(BASELINE, "import boto3\n", (deps,), neutral),
        Target(REFERENCE, _REFERENCE_IMPORTS, (deps,), neutral),
    ]
    for name in functions if functions is not None else discover_functions(repo_root):
        found.append(
            Target(
                name,
                "import handler\n",
                (str(repo_root / "functions" / name), core, deps),
                lambda_environment(
                    name, environments.get(name, {}), pycache, str(repo_root / "functions" / name)
                ),
            )
        )
    return found


def sample(target: Target, cwd: Path) -> Sample:
    """One fresh interpreter importing the target."""
    code = _PROBE.format(path=list(target.path), code=target.code)
    result = subprocess.run(  # noqa: S603 — our own interpreter with our own probe
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        env=dict(target.env),
        cwd=str(cwd),
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing {target.name} failed:\n{result.stderr.strip()[-2000:]}")
    wall_ms, cpu_ms, hwm_kib = result.stdout.split()[-3:]
    return Sample(wall_ms=float(wall_ms), cpu_ms=float(cpu_ms), peak_mib=int(hwm_kib) / 1024.0)


def measure(found: list[Target], repeats: int, cwd: Path) -> dict[str, list[Sample]]:
    """A warm-up import per target (fills the bytecode cache), then ``repeats`` interleaved rounds."""
    for target in found:
        sample(target, cwd)
    samples: dict[str, list[Sample]] = {t.name: [] for t in found}
    for _ in range(repeats):
        for target in found:
            samples[target.name].append(sample(target, cwd))
    return samples


def figures(samples: dict[str, list[Sample]], repeats: int) -> list[Figure]:
    """Per target: import time (CPU ms), its ratio to the baseline, peak RSS beside 1.45 × the baseline."""
    base_ms = median(s.cpu_ms for s in samples[BASELINE])
    base_mib = median(s.peak_mib for s in samples[BASELINE])
    out = [
        Figure(
            SECTION,
            f"{BASELINE}: import",
            round(base_ms, 1),
            "ms",
            detail={"wall_ms": round(median(s.wall_ms for s in samples[BASELINE]), 1), "repeats": repeats},
        ),
        Figure(SECTION, f"{BASELINE}: peak RSS", round(base_mib, 1), "MiB"),
    ]
    for name, runs in samples.items():
        if name == BASELINE:
            continue
        ms = median(s.cpu_ms for s in runs)
        wall_ms = median(s.wall_ms for s in runs)
        mib = median(s.peak_mib for s in runs)
        checked = name != REFERENCE  # the reference is there for scale, not held to the target
        out.append(
            Figure(
                SECTION,
                f"{name}: import vs {BASELINE}",
                round(ms / base_ms, 2),
                "x",
                TARGET_RATIO if checked else None,
                detail={
                    "import_ms": round(ms, 1),
                    "baseline_ms": round(base_ms, 1),
                    "wall_ratio": round(wall_ms / median(s.wall_ms for s in samples[BASELINE]), 2),
                    "samples_ms": [round(s.cpu_ms, 1) for s in runs],
                },
            )
        )
        out.append(
            Figure(SECTION, f"{name}: import", round(ms, 1), "ms", detail={"wall_ms": round(wall_ms, 1)})
        )
        out.append(
            Figure(
                SECTION,
                f"{name}: peak RSS",
                round(mib, 1),
                "MiB",
                round(TARGET_RATIO * base_mib, 1) if checked else None,
                detail={"ratio": round(mib / base_mib, 2), "baseline_mib": round(base_mib, 1)},
            )
        )
    return out


def run(ctx: BenchContext) -> list[Figure]:
    repeats = 3 if ctx.quick else max(ctx.repeats, 5)
    pycache = ctx.out_dir / "pycache"
    pycache.mkdir(parents=True, exist_ok=True)
    found = targets(ctx.repo_root, pycache)
    return figures(measure(found, repeats, ctx.repo_root), repeats)
