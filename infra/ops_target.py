"""Which environment an operator command talks to: the running local stack, or an AWS account.

``--local`` (the default when ``.r2r/local.json`` exists and neither ``--profile`` nor ``--region`` is
given) reads the endpoint and resource names from the file ``r2r local up`` wrote; ``--endpoint-url``
aims at any AWS-compatible endpoint. Otherwise the command uses the AWS credentials of ``--profile``
in ``--region`` and finds tables through the CloudFormation stack ``--stack`` (``r2r-<stage>``).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import boto3
import typer

from infra.local import config
from r2r_core.state import AuditLog, StateStore

LOCAL_JSON = Path(".r2r/local.json")

LocalFlag = Annotated[
    bool | None,
    typer.Option(
        "--local/--aws",
        help="The local stack (default when .r2r/local.json exists) or an AWS account.",
        show_default=False,
    ),
]
Profile = Annotated[str | None, typer.Option(help="AWS profile (implies --aws).")]
Region = Annotated[str | None, typer.Option(help="AWS region (implies --aws).")]
EndpointUrl = Annotated[str | None, typer.Option(help="An AWS-compatible endpoint (e.g. the local moto).")]
LocalJsonOpt = Annotated[Path, typer.Option(help="The file `r2r local up` wrote.")]
StackOpt = Annotated[str, typer.Option(help="CloudFormation stack of the deployment (AWS).")]


@dataclass
class Target:
    """The environment a command works on: its clients and its resource names."""

    local: bool
    session: Any
    endpoint_url: str | None = None
    described: dict[str, Any] = field(default_factory=dict)
    stack: str = "r2r-dev"
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoint_url)
        return self._clients[service]

    @property
    def queue_prefix(self) -> str:
        return str(self.described.get("stack") or self.stack)

    def table(self, word: str) -> str:
        """The physical name of the one table whose logical id contains ``word`` (``State``, ``Audit``)."""
        if self.described.get("tables"):
            tables: dict[str, str] = self.described["tables"]
        else:
            tables = {}
            paginator = self.client("cloudformation").get_paginator("list_stack_resources")
            for page in paginator.paginate(StackName=self.stack):
                for resource in page["StackResourceSummaries"]:
                    if resource["ResourceType"] == "AWS::DynamoDB::Table":
                        tables[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
        found = [name for logical_id, name in tables.items() if word in logical_id]
        if len(found) != 1:
            raise typer.BadParameter(f"no single {word} table in {sorted(tables)}")
        return str(found[0])

    def stores(self) -> tuple[StateStore, AuditLog]:
        dynamodb = self.client("dynamodb")
        return StateStore(self.table("State"), dynamodb), AuditLog(self.table("Audit"), dynamodb)


def resolve(
    *,
    local: bool | None,
    profile: str | None,
    region: str | None,
    endpoint_url: str | None,
    local_json: Path,
    stack: str,
) -> Target:
    """Pick the environment from the options (see the module docstring)."""
    use_local = local if local is not None else (profile is None and region is None and local_json.is_file())
    if use_local or endpoint_url:
        described: dict[str, Any] = {}
        if local_json.is_file():
            described = json.loads(local_json.read_text())
        elif endpoint_url is None:
            raise typer.BadParameter(
                f"{local_json} not found: start the local stack with `r2r local up`, or use --aws",
                param_hint="--local-json",
            )
        session = boto3.session.Session(
            aws_access_key_id=config.ACCESS_KEY_ID,
            aws_secret_access_key=config.SECRET_ACCESS_KEY,
            region_name=region or described.get("region", config.REGION),
        )
        return Target(
            local=True,
            session=session,
            endpoint_url=endpoint_url or described["aws_endpoint_url"],
            described=described,
            stack=stack,
        )
    return Target(
        local=False, session=boto3.session.Session(profile_name=profile, region_name=region), stack=stack
    )


# The options every operator command takes to choose its environment (see the module docstring).
_TARGET_OPTIONS = (
    inspect.Parameter("local", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=LocalFlag),
    inspect.Parameter("profile", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Profile),
    inspect.Parameter("region", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Region),
    inspect.Parameter("endpoint_url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=EndpointUrl),
    inspect.Parameter(
        "local_json", inspect.Parameter.KEYWORD_ONLY, default=LOCAL_JSON, annotation=LocalJsonOpt
    ),
    inspect.Parameter("stack", inspect.Parameter.KEYWORD_ONLY, default="r2r-dev", annotation=StackOpt),
)


def with_target(command: Callable[..., Any]) -> Callable[..., Any]:
    """An operator command that takes ``target: Target`` gets the six environment options instead
    (``--local/--aws``, ``--profile``, ``--region``, ``--endpoint-url``, ``--local-json``, ``--stack``) and is
    called with the :class:`Target` they resolve to. Put it below ``@app.command()``."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "target"]

    @functools.wraps(command)
    def with_options(*args: Any, **kwargs: Any) -> Any:
        options = {p.name: kwargs.pop(p.name, p.default) for p in _TARGET_OPTIONS}
        return command(*args, target=resolve(**options), **kwargs)

    with_options.__signature__ = signature.replace(parameters=[*own, *_TARGET_OPTIONS])  # type: ignore[attr-defined]
    return with_options
