"""The integration catalog: routes, events, rules, queues, functions, mappings, owners, recovery.

Generated from the code (``EVENT_TYPES``, the connectors' ``FIELD_MAP``, ``r2r_core.ownership``) and the
synthesized template (``infra.synth.ensure_synthesized()``). ``build_catalog`` and ``render_markdown`` are
pure; the output is deterministic (sorted, no timestamps, no asset hashes, logical ids without their CDK
8-hex suffix) so ``docs/catalog.md`` / ``docs/catalog.json`` can be diffed and checked in CI.

``r2r catalog [--out-dir docs] [--check]`` writes them, or (``--check``) exits 1 naming what differs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from r2r_core.connectors import certinia, kantata, salesforce
from r2r_core.model.events import EVENT_TYPES
from r2r_core.ownership import SYSTEM_OF_RECORD

_SUFFIX = re.compile(r"[0-9A-F]{8}$")
_ROUTE_AUTH = {
    "WEBHOOK_SECRETS_ARN": "HMAC webhook (Standard Webhooks signature, WebhookSecrets)",
    "SALESFORCE_OUTBOUND_SECRETS_ARN": "Salesforce path secret (SalesforceOutboundSecrets, per org)",
}
_DEPENDENCIES = (
    ("ERP_BASE_URL", "NetSuite (ERP)"),
    ("ERP_SECRET_ARN", "NetSuite (ERP)"),
    ("SALESFORCE_BASE_URL", "Salesforce (CRM / Certinia PSA)"),
    ("SALESFORCE_SECRET_ARN", "Salesforce (CRM / Certinia PSA)"),
    ("KANTATA_BASE_URL", "Kantata OX (PSA)"),
    ("KANTATA_SECRET_ARN", "Kantata OX (PSA)"),
)
_MAPPERS = (
    ("salesforce", salesforce.FIELD_MAP),
    ("certinia", certinia.FIELD_MAP),
    ("kantata", kantata.FIELD_MAP),
)


def strip_id(logical_id: str) -> str:
    """A logical id without its 8-hex hash suffix (``TimePostingQueue5304C6A4`` → ``TimePostingQueue``)."""
    return _SUFFIX.sub("", logical_id)


def _ref(value: Any) -> str | None:
    """The logical id a ``Ref`` / ``Fn::GetAtt`` points at, else None."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return str(value["Ref"])
        att = value.get("Fn::GetAtt")
        if isinstance(att, list) and att:
            return str(att[0])
    return None


def _refs(value: Any) -> list[str]:
    """Every logical id referenced anywhere in ``value``."""
    found: list[str] = []
    direct = _ref(value)
    if direct is not None:
        return [direct]
    if isinstance(value, dict):
        for item in value.values():
            found.extend(_refs(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_refs(item))
    return found


def _normalize(value: Any) -> Any:
    """References replaced by the stripped logical id, for patterns shown in the catalog."""
    ref = _ref(value)
    if ref is not None and not ref.startswith("AWS::"):
        return strip_id(ref)
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in sorted(resources.items()) if v.get("Type") == kind}


def _api_path(resources: dict[str, Any], resource_id: str | None) -> str:
    parts: list[str] = []
    while resource_id is not None and resource_id in resources:
        props = resources[resource_id].get("Properties", {})
        parts.append(str(props.get("PathPart", "")))
        resource_id = _ref(props.get("ParentId"))
        if (
            resource_id is not None
            and resources.get(resource_id, {}).get("Type") != "AWS::ApiGateway::Resource"
        ):
            break
    return "/" + "/".join(reversed(parts))


def _days(seconds: Any) -> str:
    return f"{int(seconds) // 86400} d" if seconds is not None else "4 d (default)"


def _queue_recovery(queue: str, dlq: str, max_receive: Any, consumer: str) -> str:
    return (
        f"A message that fails {max_receive} receives by `{consumer}` moves to `{dlq}`; a permanent "
        "(business) failure, or a retryable one still failing on the last receive, is first recorded once "
        "as an exception for finance (StateTable `EXC#<id>`, kind and business context). Fix the cause, "
        "then redrive: `r2r dlq redrive`, or SQS console > "
        f"`{dlq}` > Start DLQ redrive (back to its source queue `{queue}`; the DLQ's RedriveAllowPolicy "
        "admits only that queue), or `aws sqs start-message-move-task --source-arn <DLQ arn>`. "
        "Consumers are idempotent per event type, record id and version, so a redrive never posts twice."
    )


_STATE_MACHINE_RECOVERY = (
    "Transient errors (Lambda service errors, `ErpTransientError`: ERP 429/5xx/timeouts) are retried in the "
    "state machine (2 s, 6 attempts, backoff 2). Business errors (`ContractInvalid`, `NoBillableWork`, "
    "`TaxConfigurationMissing`, `ErpPermanentError`) leave the execution FAILED; the `aws.states` rule "
    "`ExceptionRouterRule` (default bus: FAILED, TIMED_OUT, ABORTED) sends it to `ExceptionRouterQueue` → "
    "`exception_router`, which records an exception for finance (StateTable `EXC#<id>`). Fix the cause "
    "(contract terms, tax set-up, ERP data), then redrive the failed execution: Step Functions console > "
    "the execution > Redrive, or `r2r executions redrive <arn>` (`aws stepfunctions redrive-execution "
    "--execution-arn <arn>`: it resumes at the failed step; on the local stack the same input runs again as "
    "`<name>-redrive-<n>`). The execution name is `<engagement_id>-<milestone_id>` (a period-end run of "
    "`billing_period_close`: `<engagement_id>-period-<yyyy-mm-dd>`), so a duplicate `milestone.completed` "
    "or a second daily tick cannot start a second invoice run."
)


def build_catalog(template: dict[str, Any]) -> dict[str, Any]:
    """The catalog as plain JSON-able data, from a synthesized template and the code."""
    resources: dict[str, Any] = template.get("Resources", {})
    functions = {
        lid: res
        for lid, res in _of_type(resources, "AWS::Lambda::Function").items()
        if "r2r:source" in res.get("Metadata", {})
    }

    def folder(lid: str | None) -> str:
        if lid is None or lid not in functions:
            return strip_id(lid or "?")
        return Path(str(functions[lid]["Metadata"]["r2r:source"])).name

    def env(lid: str) -> dict[str, Any]:
        return dict(functions[lid].get("Properties", {}).get("Environment", {}).get("Variables", {}))

    triggers: dict[str, list[str]] = {lid: [] for lid in functions}

    # API routes
    routes = []
    for method in _of_type(resources, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        targets = [r for r in _refs(props.get("Integration", {})) if r in functions]
        fn = targets[0] if targets else None
        path = _api_path(resources, _ref(props.get("ResourceId")))
        auth = [text for key, text in _ROUTE_AUTH.items() if fn is not None and key in env(fn)]
        if fn is not None and "SALESFORCE_OUTBOUND_SECRETS_ARN" in env(fn) and not path.endswith("}"):
            auth = ["Salesforce basic auth (OrganizationId + SalesforceOutboundSecrets secret)"]
        if props.get("AuthorizationType") == "AWS_IAM":
            roles = _operator_roles_invoking(resources, str(props.get("HttpMethod")), path)
            auth.append("IAM (SigV4)" + (f": {', '.join(roles)}" if roles else ""))
        elif props.get("AuthorizationType", "NONE") != "NONE":
            auth.append(str(props["AuthorizationType"]))
        routes.append(
            {
                "method": props.get("HttpMethod"),
                "path": path,
                "function": folder(fn),
                "auth": auth or ["none"],
            }
        )
        if fn is not None:
            triggers[fn].append(f"API Gateway {props.get('HttpMethod')} {path}")
    routes.sort(key=lambda r: (r["path"], r["method"]))
    return _queues_rules_events(
        resources=resources, functions=functions, folder=folder, env=env, triggers=triggers, routes=routes
    )


def _operator_roles_invoking(resources: dict[str, Any], method: str, path: str) -> list[str]:
    """The operator roles (Metadata ``r2r:operator-role``) whose policy names this method's ARN."""
    suffix = f"/{method}" + "/".join("*" if part.startswith("{") else part for part in path.split("/"))
    found = []
    for role in _of_type(resources, "AWS::IAM::Role").values():
        label = role.get("Metadata", {}).get("r2r:operator-role")
        if not label:
            continue
        for policy in role.get("Properties", {}).get("Policies", []):
            for statement in policy.get("PolicyDocument", {}).get("Statement", []):
                listed = statement.get("Resource")
                arns = listed if isinstance(listed, list) else [listed]
                if statement.get("Effect") == "Allow" and any(_ends_with(arn, suffix) for arn in arns):
                    found.append(str(label))
    return sorted(set(found))


def _ends_with(arn: Any, suffix: str) -> bool:
    """Whether an ARN (a string, or an ``Fn::Join`` whose last part is a string) ends with ``suffix``."""
    if isinstance(arn, dict) and "Fn::Join" in arn:
        parts = arn["Fn::Join"][1]
        arn = parts[-1] if parts else ""
    return isinstance(arn, str) and arn.endswith(suffix)


def _queues_rules_events(
    *,
    resources: dict[str, Any],
    functions: dict[str, Any],
    folder: Any,
    env: Any,
    triggers: dict[str, list[str]],
    routes: list[dict[str, Any]],
) -> dict[str, Any]:

    # Queues and their consumers (event source mappings)
    consumers: dict[str, str] = {}
    for esm in _of_type(resources, "AWS::Lambda::EventSourceMapping").values():
        props = esm["Properties"]
        queue, fn = _ref(props.get("EventSourceArn")), _ref(props.get("FunctionName"))
        if queue is not None and fn is not None:
            consumers[queue] = fn
            triggers.setdefault(fn, []).append(f"SQS {strip_id(queue)}")
    queues = []
    for lid, res in _of_type(resources, "AWS::SQS::Queue").items():
        props = res.get("Properties", {})
        redrive = props.get("RedrivePolicy")
        if not redrive:
            continue
        dlq = _ref(redrive.get("deadLetterTargetArn")) or "?"
        dlq_props = resources.get(dlq, {}).get("Properties", {})
        consumer = folder(consumers.get(lid))
        queues.append(
            {
                "queue": strip_id(lid),
                "consumer": consumer,
                "visibility_timeout_s": props.get("VisibilityTimeout", 30),
                "retention": _days(props.get("MessageRetentionPeriod")),
                "dlq": strip_id(dlq),
                "max_receive_count": redrive.get("maxReceiveCount"),
                "dlq_retention": _days(dlq_props.get("MessageRetentionPeriod")),
                "recovery": _queue_recovery(
                    strip_id(lid), strip_id(dlq), redrive.get("maxReceiveCount"), consumer
                ),
            }
        )

    # EventBridge rules
    rules = []
    queue_by_rule: dict[str, str] = {}
    for lid, res in _of_type(resources, "AWS::Events::Rule").items():
        props = res["Properties"]
        bus = _ref(props.get("EventBusName")) or "default"
        # A target's Arn only: its RoleArn (e.g. the Firehose target's role) is not where events go.
        target_queues = sorted(strip_id(t) for t in _refs([t.get("Arn") for t in props.get("Targets", [])]))
        rule: dict[str, Any] = {
            "rule": strip_id(lid),
            "bus": strip_id(bus),
            "targets": target_queues,
        }
        if "ScheduleExpression" in props:
            rule["schedule"] = props["ScheduleExpression"]
        if "EventPattern" in props:
            rule["pattern"] = _normalize(props["EventPattern"])
        rules.append(rule)
        for queue in target_queues:
            queue_by_rule[queue] = strip_id(lid)
    queue_consumer = {q["queue"]: q["consumer"] for q in queues}
    for q in queues:
        q["rule"] = queue_by_rule.get(q["queue"])

    # Events: canonical types and who consumes them
    events = []
    for name, kind in sorted(EVENT_TYPES.items()):
        routed = [
            {"rule": r["rule"], "queue": queue, "consumer": queue_consumer.get(queue)}
            for r in rules
            for queue in r["targets"]
            if name in r.get("pattern", {}).get("detail-type", [])
        ]
        events.append(
            {
                "type": name,
                "schema_version": kind.schema_version,
                "schema": f"events/schemas/{name}.v{kind.schema_version}.json",
                "data_model": kind.data_model.__name__,
                "description": kind.description,
                "routes_to": routed,
            }
        )

    return _finish(
        resources=resources,
        functions=functions,
        folder=folder,
        env=env,
        triggers=triggers,
        routes=routes,
        queues=queues,
        rules=rules,
        events=events,
    )


def _finish(
    *,
    resources: dict[str, Any],
    functions: dict[str, Any],
    folder: Any,
    env: Any,
    triggers: dict[str, list[str]],
    routes: list[dict[str, Any]],
    queues: list[dict[str, Any]],
    rules: list[dict[str, Any]],
    events: list[dict[str, Any]],
) -> dict[str, Any]:
    # State machines
    state_machines = []
    for lid, res in _of_type(resources, "AWS::StepFunctions::StateMachine").items():
        props = res.get("Properties", {})
        tasks = sorted({folder(r) for r in _refs(props.get("DefinitionSubstitutions", {})) if r in functions})
        for fn in _refs(props.get("DefinitionSubstitutions", {})):
            if fn in triggers:
                triggers[fn].append(f"Step Functions task of {strip_id(lid)}")
        state_machines.append(
            {
                "state_machine": strip_id(lid),
                "definition": res.get("Metadata", {}).get("r2r:definition"),
                "task_functions": tasks,
                "started_by": sorted(folder(fn) for fn in functions if any(r == lid for r in _refs(env(fn)))),
                "recovery": _STATE_MACHINE_RECOVERY,
            }
        )

    function_rows = _functions(resources, functions, folder, env, triggers)
    return _assemble(
        routes=routes,
        events=events,
        rules=rules,
        queues=queues,
        function_rows=function_rows,
        state_machines=state_machines,
    )


def _functions(
    resources: dict[str, Any],
    functions: dict[str, Any],
    folder: Any,
    env: Any,
    triggers: dict[str, list[str]],
) -> list[dict[str, Any]]:
    # Functions: trigger, sizing, environment, grants (from the role's IAM policies), dependencies
    policies_by_role: dict[str, list[dict[str, Any]]] = {}
    for res in _of_type(resources, "AWS::IAM::Policy").values():
        for role in _refs(res["Properties"].get("Roles", [])):
            policies_by_role.setdefault(role, []).extend(
                res["Properties"]["PolicyDocument"].get("Statement", [])
            )
    function_rows = []
    for lid, res in functions.items():
        props = res["Properties"]
        variables = env(lid)
        role = _ref(props.get("Role")) or ""
        granted: dict[str, set[str]] = {"secrets": set(), "tables": set(), "buses": set(), "buckets": set()}
        kinds = {
            "AWS::SecretsManager::Secret": "secrets",
            "AWS::DynamoDB::Table": "tables",
            "AWS::Events::EventBus": "buses",
            "AWS::S3::Bucket": "buckets",
        }
        for statement in policies_by_role.get(role, []):
            if statement.get("Effect") != "Allow":
                continue
            for target in _refs(statement.get("Resource")):
                bucket = kinds.get(resources.get(target, {}).get("Type", ""))
                if bucket is not None:
                    granted[bucket].add(strip_id(target))
        dependencies = sorted({system for key, system in _DEPENDENCIES if key in variables})
        function_rows.append(
            {
                "function": folder(lid),
                "logical_id": strip_id(lid),
                "source": res["Metadata"]["r2r:source"],
                "description": props.get("Description"),
                "trigger": sorted(triggers.get(lid, [])),
                "runtime": props.get("Runtime"),
                "timeout_s": props.get("Timeout", 3),
                "memory_mb": props.get("MemorySize", 128),
                "environment": sorted(variables),
                **{key: sorted(values) for key, values in granted.items()},
                "dependencies": dependencies,
            }
        )
    function_rows.sort(key=lambda f: f["function"])
    return function_rows


def _assemble(
    *,
    routes: list[dict[str, Any]],
    events: list[dict[str, Any]],
    rules: list[dict[str, Any]],
    queues: list[dict[str, Any]],
    function_rows: list[dict[str, Any]],
    state_machines: list[dict[str, Any]],
) -> dict[str, Any]:

    mappings = [
        {
            "system": system,
            "source_object": sobject,
            "source_field": row.source,
            "event_type": row.event_type,
            "canonical_field": row.target,
            "how": row.how,
        }
        for system, field_map in _MAPPERS
        for sobject, rows in field_map.items()
        for row in rows
    ]
    mappings.sort(
        key=lambda m: (
            m["system"],
            m["source_object"],
            m["source_field"],
            m["event_type"],
            m["canonical_field"],
        )
    )

    ownership = sorted(
        (
            {"canonical_object": o.canonical_object, "data": o.data, "system": o.system, "example": o.example}
            for o in SYSTEM_OF_RECORD
        ),
        key=lambda o: (o["system"], o["canonical_object"]),
    )

    return {
        "routes": routes,
        "events": events,
        "rules": sorted(rules, key=lambda r: r["rule"]),
        "queues": sorted(queues, key=lambda q: q["queue"]),
        "functions": function_rows,
        "state_machines": sorted(state_machines, key=lambda s: s["state_machine"]),
        "mappings": mappings,
        "ownership": ownership,
    }


def _cell(value: Any) -> str:
    if isinstance(value, list):
        text = ", ".join(_cell(v) for v in value) if value else "—"
    elif isinstance(value, dict):
        text = "`" + json.dumps(value, sort_keys=True, separators=(",", ":")) + "`"
    elif value is None:
        text = "—"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(catalog: dict[str, Any]) -> str:
    """The catalog as a Markdown page (``docs/catalog.md``)."""
    out = [
        "# r2r integration catalog",
        "",
        "Generated by `r2r catalog` from the code and the synthesized CDK template — do not edit by hand;",
        "regenerate with `r2r catalog` (or `make catalog`). The same data is in `docs/catalog.json`.",
        "Logical ids are shown without their CDK hash suffix.",
        "",
        "## API routes",
        "",
        *_table(
            ["method", "path", "function", "auth"],
            [[r["method"], f"`{r['path']}`", r["function"], r["auth"]] for r in catalog["routes"]],
        ),
        "## Canonical events",
        "",
        *_table(
            ["type", "schema version", "data", "description", "routed to (rule → queue → function)"],
            [
                [
                    f"`{e['type']}`",
                    e["schema_version"],
                    e["data_model"],
                    e["description"],
                    [f"{r['rule']} → {r['queue']} → {r['consumer']}" for r in e["routes_to"]],
                ]
                for e in catalog["events"]
            ],
        ),
        "## EventBridge rules",
        "",
        *_table(
            ["rule", "bus", "pattern or schedule", "target"],
            [
                [r["rule"], r["bus"], r.get("schedule") or r.get("pattern"), r["targets"]]
                for r in catalog["rules"]
            ],
        ),
        "## Queues and dead-letter queues",
        "",
        *_table(
            [
                "queue",
                "rule",
                "consumer",
                "visibility (s)",
                "retention",
                "DLQ",
                "maxReceiveCount",
                "DLQ retention",
            ],
            [
                [
                    q["queue"],
                    q["rule"],
                    q["consumer"],
                    q["visibility_timeout_s"],
                    q["retention"],
                    q["dlq"],
                    q["max_receive_count"],
                    q["dlq_retention"],
                ]
                for q in catalog["queues"]
            ],
        ),
        "## Functions",
        "",
        *_table(
            [
                "function",
                "trigger",
                "timeout (s)",
                "memory (MB)",
                "environment",
                "secrets",
                "tables",
                "other grants",
            ],
            [
                [
                    f"`{f['source']}`",
                    f["trigger"],
                    f["timeout_s"],
                    f["memory_mb"],
                    [f"`{k}`" for k in f["environment"]],
                    f["secrets"],
                    f["tables"],
                    [f"bus {b}" for b in f["buses"]] + [f"bucket {b}" for b in f["buckets"]],
                ]
                for f in catalog["functions"]
            ],
        ),
        "## Dependencies (external systems each function calls)",
        "",
        *_table(
            ["function", "calls"],
            [[f["function"], f["dependencies"]] for f in catalog["functions"] if f["dependencies"]],
        ),
        "## State machines",
        "",
        *_table(
            ["state machine", "definition", "started by", "tasks run"],
            [
                [s["state_machine"], f"`{s['definition']}`", s["started_by"], s["task_functions"]]
                for s in catalog["state_machines"]
            ],
        ),
        "## Mappings (source field → canonical field)",
        "",
        "`how`: copy, decimal, date, flag (true/false), id (the source id inside a canonical id),",
        "lookup (through a table or what r2r remembers), derived (computed). Proved against the fixtures by",
        "`tests/unit/test_field_maps.py`.",
        "",
        *_table(
            ["system", "object", "source field", "event", "canonical field", "how"],
            [
                [
                    m["system"],
                    m["source_object"],
                    f"`{m['source_field']}`",
                    f"`{m['event_type']}`",
                    f"`{m['canonical_field']}`",
                    m["how"],
                ]
                for m in catalog["mappings"]
            ],
        ),
        "## System of record (who owns what)",
        "",
        *_table(
            ["system", "canonical object", "data", "e.g."],
            [[o["system"], o["canonical_object"], o["data"], o["example"]] for o in catalog["ownership"]],
        ),
        "## Recovery",
        "",
        "### Queues",
        "",
    ]
    for q in catalog["queues"]:
        out += [f"- **{q['queue']}** ({q['consumer']}): {q['recovery']}"]
    out += ["", "### State machines", ""]
    for s in catalog["state_machines"]:
        out += [f"- **{s['state_machine']}**: {s['recovery']}"]
    return "\n".join(out) + "\n"


def render_json(catalog: dict[str, Any]) -> str:
    return json.dumps(catalog, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def outputs(template: dict[str, Any]) -> dict[str, str]:
    """File name → content of the catalog generated from ``template``."""
    catalog = build_catalog(template)
    return {"catalog.json": render_json(catalog), "catalog.md": render_markdown(catalog)}


def stale_files(out_dir: Path, generated: dict[str, str]) -> list[str]:
    """The files under ``out_dir`` that are missing or differ from ``generated``."""
    return sorted(
        name
        for name, text in generated.items()
        if not (out_dir / name).is_file() or (out_dir / name).read_text(encoding="utf-8") != text
    )


def catalog(
    out_dir: Annotated[Path, typer.Option(help="Where catalog.md and catalog.json go.")] = Path("docs"),
    check: Annotated[bool, typer.Option(help="Write nothing; exit 1 naming the files that differ.")] = False,
) -> None:
    """Generate the integration catalog from the code and the synthesized template."""
    from infra.synth import ensure_synthesized

    template = json.loads(ensure_synthesized().read_text(encoding="utf-8"))
    generated = outputs(template)
    if check:
        stale = stale_files(out_dir, generated)
        if stale:
            typer.echo(f"stale: {', '.join(str(out_dir / n) for n in stale)}; run `r2r catalog`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out_dir}/catalog.md and catalog.json are up to date")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in generated.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out_dir / name}")
