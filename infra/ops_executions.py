"""``r2r executions list | show <execution> | redrive <execution>``: milestone-to-invoice runs.

The state machines are the deployment's (``.r2r/local.json`` locally; on AWS the
``AWS::StepFunctions::StateMachine`` resources of the CloudFormation stack ``--stack``).
``<execution>`` is an execution ARN, or its name (or a unique part of it) among the listed executions.

Redrive: on AWS ``RedriveExecution`` (the failed execution resumes at its failed state with the same
input and keeps its ARN; within 14 days). Moto (the local stack) has no redrive and cannot start an
execution at a given state, so locally the execution is **run again from the start with the same
input**, as a new execution named ``<name>-redrive-<n>``. That is equivalent because every step of
``milestone-to-invoice`` is idempotent: the contract check and the tax check only read, the billing
run is frozen once per milestone (or period) as a draft that a second run reuses, the invoice is
upserted by external id, charges are marked invoiced once, and ``invoice.created`` has a
deterministic event id. A run that already succeeded is never redriven (exit code 1).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import typer

from infra.ops_target import Target, with_target

app = typer.Typer(
    help="Step Functions executions (milestone-to-invoice): list, inspect, redrive.", no_args_is_help=True
)

REDRIVABLE = ("FAILED", "TIMED_OUT", "ABORTED")
_STATUSES = ("RUNNING", "SUCCEEDED", *REDRIVABLE)
_NAME_LIMIT = 80
_REDRIVE_SUFFIX = re.compile(r"-redrive-(\d+)$")


def state_machine_arns(target: Target) -> list[str]:
    """The deployment's state machines."""
    if target.described.get("state_machines"):
        return sorted(str(arn) for arn in target.described["state_machines"].values())
    arns: list[str] = []
    paginator = target.client("cloudformation").get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=target.stack):
        for resource in page["StackResourceSummaries"]:
            if resource["ResourceType"] == "AWS::StepFunctions::StateMachine":
                arns.append(resource["PhysicalResourceId"])
    return sorted(arns)


def list_executions(sfn: Any, machines: list[str], status: str | None = None) -> list[dict[str, Any]]:
    """Every execution of ``machines`` (newest first), optionally of one status."""
    rows: list[dict[str, Any]] = []
    for machine in machines:
        kwargs: dict[str, Any] = {"stateMachineArn": machine}
        if status:
            kwargs["statusFilter"] = status
        while True:
            page = sfn.list_executions(**kwargs)
            rows.extend(page.get("executions", []))
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    return sorted(rows, key=lambda row: _iso(row.get("startDate")) or "", reverse=True)


def find_execution(sfn: Any, machines: list[str], key: str) -> str:
    """The ARN of the execution ``key`` names (an ARN, a name, or a unique part of a name)."""
    if key.startswith("arn:"):
        return key
    executions = list_executions(sfn, machines)
    exact = [e for e in executions if e["name"] == key]
    matches = exact or [e for e in executions if key in e["name"]]
    if len(matches) != 1:
        names = ", ".join(e["name"] for e in matches[:10]) or "none"
        raise typer.BadParameter(
            f"{key!r} names {len(matches)} executions ({names}); give the ARN or the name"
        )
    return str(matches[0]["executionArn"])


def failed_state(sfn: Any, arn: str) -> str | None:
    """The state the execution failed in: the last state it entered (from its history)."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    try:
        while True:
            page = sfn.get_execution_history(**kwargs)
            events.extend(page.get("events", []))
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    except Exception:
        return None
    entered = [e for e in events if str(e.get("type", "")).endswith("StateEntered")]
    if not entered:
        return None
    last = max(entered, key=lambda e: int(e.get("id", 0)))
    return str(last.get("stateEnteredEventDetails", {}).get("name") or "") or None


def describe(sfn: Any, arn: str) -> dict[str, Any]:
    """The execution: status, dates, input, output, error and cause, the state it failed in."""
    raw = sfn.describe_execution(executionArn=arn)
    document: dict[str, Any] = {
        "execution_arn": raw["executionArn"],
        "name": raw.get("name"),
        "state_machine_arn": raw.get("stateMachineArn"),
        "status": raw.get("status"),
        "start_date": _iso(raw.get("startDate")),
        "stop_date": _iso(raw.get("stopDate")),
        "input": _json(raw.get("input")),
        "output": _json(raw.get("output")),
        "error": raw.get("error"),
        "cause": _cause(raw.get("cause")),
        "redrive_count": raw.get("redriveCount"),
        "redrive_status": raw.get("redriveStatus"),
    }
    if document["status"] in REDRIVABLE:
        document["failed_state"] = failed_state(sfn, arn)
    return document


def redrive_name(name: str, taken: set[str]) -> str:
    """``<name>-redrive-<n>`` with the next free ``n`` (the original name without an earlier suffix)."""
    base = _REDRIVE_SUFFIX.sub("", name)
    number = 1
    while True:
        suffix = f"-redrive-{number}"
        candidate = base[: _NAME_LIMIT - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        number += 1


class RedriveRefused(Exception):
    """The execution cannot be redriven (it is not failed, or its redrive succeeded or is running)."""


def redrive_local(sfn: Any, arn: str) -> dict[str, Any]:
    """The local equivalent of RedriveExecution: the same input, run again as a new execution."""
    execution = sfn.describe_execution(executionArn=arn)
    machine = execution["stateMachineArn"]
    executions = list_executions(sfn, [machine])
    base = _REDRIVE_SUFFIX.sub("", execution["name"])
    # Like AWS, where a redriven execution that succeeded (or runs) is no longer FAILED.
    for other in executions:
        if _REDRIVE_SUFFIX.sub("", other["name"]) == base and other["status"] in ("RUNNING", "SUCCEEDED"):
            raise RedriveRefused(f"{arn} was already redriven as {other['executionArn']} ({other['status']})")
    name = redrive_name(execution["name"], {e["name"] for e in executions})
    started = sfn.start_execution(stateMachineArn=machine, name=name, input=execution.get("input") or "{}")
    return {"redriven": arn, "execution_arn": started["executionArn"], "name": name, "mode": "rerun"}


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (str(value) if value else None)


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _cause(cause: str | None) -> Any:
    parsed = _json(cause)
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return parsed["errorMessage"]
    return parsed


@app.command("list")
@with_target
def list_(
    *,
    status: str | None = typer.Option(None, help=f"Only this status: {', '.join(_STATUSES)}."),
    limit: int = typer.Option(50, help="At most this many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    target: Target,
) -> None:
    """The executions of the deployment's state machines: name, status, start and stop."""
    if status is not None and status.upper() not in _STATUSES:
        raise typer.BadParameter(f"status must be one of {', '.join(_STATUSES)}", param_hint="--status")
    sfn = target.client("stepfunctions")
    rows = [
        {
            "name": e["name"],
            "status": e["status"],
            "start_date": _iso(e.get("startDate")),
            "stop_date": _iso(e.get("stopDate")),
            "execution_arn": e["executionArn"],
        }
        for e in list_executions(sfn, state_machine_arns(target), status.upper() if status else None)[:limit]
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'execution':<60} {'status':<10} started")
    for row in rows:
        typer.echo(f"{row['name']:<60} {row['status']:<10} {row['start_date'] or '-'}")


@app.command()
@with_target
def show(
    execution: str = typer.Argument(..., help="Execution ARN or name (or a unique part of the name)."),
    *,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    target: Target,
) -> None:
    """One execution: status, input, output, error and cause, and the state it failed in."""
    sfn = target.client("stepfunctions")
    document = describe(sfn, find_execution(sfn, state_machine_arns(target), execution))
    if as_json:
        typer.echo(json.dumps(document, indent=2, default=str))
        return
    typer.echo(f"{document['name']}: {document['status']} (started {document['start_date']})")
    typer.echo(f"  arn    {document['execution_arn']}")
    typer.echo(f"  input  {json.dumps(document['input'])}")
    if document["status"] in REDRIVABLE:
        typer.echo(
            f"  failed in {document.get('failed_state') or '?'}: {document['error']}: {document['cause']}"
        )
    elif document["output"] is not None:
        typer.echo(f"  output {json.dumps(document['output'])}")


@app.command()
@with_target
def redrive(
    execution: str = typer.Argument(..., help="Execution ARN or name (or a unique part of the name)."),
    *,
    target: Target,
) -> None:
    """Redrive a failed execution once its cause is fixed (AWS: RedriveExecution; locally: a re-run)."""
    sfn = target.client("stepfunctions")
    arn = find_execution(sfn, state_machine_arns(target), execution)
    status = sfn.describe_execution(executionArn=arn)["status"]
    if status not in REDRIVABLE:
        typer.echo(
            f"{arn} is {status}: only a FAILED, TIMED_OUT or ABORTED execution can be redriven", err=True
        )
        raise typer.Exit(1)
    if target.local:
        try:
            result = redrive_local(sfn, arn)
        except RedriveRefused as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        typer.echo(f"redriven {arn} locally: the same input runs again as {result['execution_arn']}")
        return
    redriven = sfn.redrive_execution(executionArn=arn)
    typer.echo(
        f"redriven {arn}: resumes at its failed state (redrive date {_iso(redriven.get('redriveDate'))})"
    )
