"""The two Lambda layers every function mounts: r2r_core and the third-party dependencies.

The deps layer is bundled without Docker: a local bundler runs pip for the Lambda
platform (manylinux2014 aarch64, CPython 3.14, wheels only) into ``<output>/python``.
With the context key ``aws:cdk:bundling-stacks`` set to ``[]`` CDK skips bundling and
pip never runs (tests, the local stack).

The layer carries bytecode: ``/opt`` is read-only in Lambda, so a layer without ``.pyc`` is compiled
from source on every cold start (boto3, botocore, pydantic and Powertools: about five times the
import itself). The bytecode is compiled by an interpreter of the runtime's own version (``.pyc`` are
version-specific: a 3.11 build host's would be ignored by 3.14) with ``unchecked-hash`` invalidation,
which does not depend on file times (an asset zip does not keep them) and is right for files that
never change after deployment. Without such an interpreter on the build host the layer is bundled
from source and a warning says what it costs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.paths import CORE_LAYER_DIR, DEPS_LAYER_DIR

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
PIP_PLATFORM = "manylinux2014_aarch64"
PIP_PYTHON_VERSION = "3.14"
_ASSET_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.mypy_cache", "**/.pytest_cache"]


def compile_command(target: Path, interpreter: str = "python") -> list[str]:
    """Bytecode for every module under ``target``, for the interpreter that runs it (see above)."""
    return [
        interpreter,
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        str(target),
    ]


def runtime_interpreter() -> str | None:
    """An interpreter of the Lambda runtime's version on the build host, if any."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == PIP_PYTHON_VERSION:
        return sys.executable
    return shutil.which(f"python{PIP_PYTHON_VERSION}")


def pip_install_command(requirements: Path, target: Path) -> list[str]:
    """The pip invocation that fills a layer's ``python/`` directory for the Lambda platform."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--requirement",
        str(requirements),
        "--target",
        str(target),
        "--platform",
        PIP_PLATFORM,
        "--only-binary=:all:",
        "--python-version",
        PIP_PYTHON_VERSION,
        "--implementation",
        "cp",
        "--no-compile",
        "--disable-pip-version-check",
        "--quiet",
    ]


@jsii.implements(ILocalBundling)
class PipLayerBundling:
    """Local bundler for a requirements.txt layer: pip on the host, no Docker."""

    def __init__(self, requirements: Path) -> None:
        self._requirements = requirements

    def try_bundle(self, output_dir: str, *, image: Any = None, **_: Any) -> bool:
        target = Path(output_dir) / "python"
        command = pip_install_command(self._requirements, target)
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            # Returning False would make CDK fall back to Docker; fail loudly instead.
            raise RuntimeError(
                f"pip could not bundle {self._requirements} for {PIP_PLATFORM} / cp{PIP_PYTHON_VERSION}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        # Console scripts are useless in a layer (and point at the build host's interpreter).
        shutil.rmtree(target / "bin", ignore_errors=True)
        compile_bundle(target)
        return True


def compile_bundle(target: Path) -> bool:
    """Add the bytecode of the runtime's version to a bundle; False (and a warning) if it cannot be made."""
    interpreter = runtime_interpreter()
    if interpreter is None:
        warnings.warn(
            f"no python{PIP_PYTHON_VERSION} on this host: the layers and functions ship without bytecode, "
            "so each cold start compiles boto3, pydantic, Powertools and r2r from source (install "
            f"python{PIP_PYTHON_VERSION}, or bundle with Docker, to ship them compiled)",
            stacklevel=2,
        )
        return False
    compiled = subprocess.run(  # noqa: S603
        compile_command(target, interpreter), capture_output=True, text=True, check=False
    )
    if compiled.returncode != 0:
        raise RuntimeError(f"compiling {target} failed:\n{compiled.stdout}\n{compiled.stderr}")
    return True


@jsii.implements(ILocalBundling)
class CompiledSourceBundling:
    """Local bundler for our own code (the core layer, a function folder): the sources and their bytecode."""

    def __init__(self, source: Path) -> None:
        self._source = source

    def try_bundle(self, output_dir: str, *, image: Any = None, **_: Any) -> bool:
        shutil.copytree(
            self._source,
            output_dir,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache"),
            dirs_exist_ok=True,
        )
        compile_bundle(Path(output_dir))
        return True


def compiled_source(source: Path) -> lambda_.Code:
    """Lambda code from a folder of our own sources, shipped with bytecode when bundling runs.

    The asset hash follows the sources (and the bundling options), so the template is the same whether
    or not bundling ran (tests and the local stack skip it and import the sources themselves).
    """
    return lambda_.Code.from_asset(
        str(source),
        exclude=_ASSET_EXCLUDES,
        asset_hash_type=AssetHashType.SOURCE,
        bundling=BundlingOptions(
            image=DockerImage.from_registry(f"public.ecr.aws/sam/build-python{PIP_PYTHON_VERSION}"),
            command=[
                "bash",
                "-c",
                "cp -r /asset-input/. /asset-output/ && " + " ".join(compile_command(Path("/asset-output"))),
            ],
            local=CompiledSourceBundling(source),
        ),
    )


class LambdaLayers(Construct):
    """``core`` (layers/core, pure Python r2r_core) and ``deps`` (layers/deps/requirements.txt)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.core = lambda_.LayerVersion(
            self,
            "Core",
            description="r2r_core: canonical model, mappings, billing rules, ERP and SaaS clients",
            code=compiled_source(CORE_LAYER_DIR),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )
        requirements = DEPS_LAYER_DIR / "requirements.txt"
        self.deps = lambda_.LayerVersion(
            self,
            "Deps",
            description="third-party runtime dependencies (layers/deps/requirements.txt)",
            code=lambda_.Code.from_asset(
                str(DEPS_LAYER_DIR),
                # The hash follows requirements.txt (and the bundling options), not pip's
                # output, so the template is the same whether or not bundling ran.
                asset_hash_type=AssetHashType.SOURCE,
                bundling=BundlingOptions(
                    image=DockerImage.from_registry(f"public.ecr.aws/sam/build-python{PIP_PYTHON_VERSION}"),
                    command=[
                        "bash",
                        "-c",
                        "pip install --requirement requirements.txt --target /asset-output/python && "
                        + " ".join(compile_command(Path("/asset-output/python"))),
                    ],
                    local=PipLayerBundling(requirements),
                ),
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )
