"""Read a synthesized CloudFormation template and resolve its intrinsic functions locally.

The local stack never keeps a second copy of the wiring: every queue, table, rule, route and
function it creates comes from the template CDK synthesizes for deployment. This module knows
the template's shape; :mod:`infra.local.provision` turns it into moto resources.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local import config

LOG = logging.getLogger("r2r.local.template")


class TemplateError(Exception):
    """The template uses something the local stack cannot resolve."""


class _NoValue:
    """``AWS::NoValue``: the property is removed where it appears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    properties: Mapping[str, Any]
    metadata: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()
    condition: str | None = None


@dataclass
class Template:
    """A parsed template: resources in file order plus parameters, mappings and conditions."""

    stack_name: str
    resources: dict[str, Resource]
    parameters: dict[str, Any] = field(default_factory=dict)
    mappings: dict[str, Any] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: Path, stack_name: str | None = None) -> Template:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
        name = stack_name or Path(path).name.removesuffix(".template.json").removesuffix(".json")
        template = cls.from_dict(body, stack_name=name)
        template.path = Path(path)
        return template

    @classmethod
    def from_dict(cls, body: Mapping[str, Any], stack_name: str = "r2r-local") -> Template:
        resources: dict[str, Resource] = {}
        for logical_id, raw in (body.get("Resources") or {}).items():
            depends = raw.get("DependsOn") or ()
            if isinstance(depends, str):
                depends = (depends,)
            resources[logical_id] = Resource(
                logical_id=logical_id,
                type=raw["Type"],
                properties=raw.get("Properties") or {},
                metadata=raw.get("Metadata") or {},
                depends_on=tuple(depends),
                condition=raw.get("Condition"),
            )
        return cls(
            stack_name=stack_name,
            resources=resources,
            parameters=dict(body.get("Parameters") or {}),
            mappings=dict(body.get("Mappings") or {}),
            conditions=dict(body.get("Conditions") or {}),
        )

    def asset_file(self, object_key: str) -> Path | None:
        """The staged file of a file asset published under ``object_key`` (CDK's cdk.out layout)."""
        if self.path is None:
            return None
        directory = self.path.parent
        manifest = directory / f"{self.stack_name}.assets.json"
        if manifest.is_file():
            files = json.loads(manifest.read_text(encoding="utf-8")).get("files") or {}
            for entry in files.values():
                keys = {d.get("objectKey") for d in (entry.get("destinations") or {}).values()}
                source = (entry.get("source") or {}).get("path")
                if object_key in keys and source and (directory / source).is_file():
                    return directory / source
        staged = directory / f"asset.{object_key}"
        return staged if staged.is_file() else None

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type in types]

    def dependencies(self, logical_id: str) -> set[str]:
        """Logical ids ``logical_id`` refers to (Ref, GetAtt, ${...} in Sub, DependsOn)."""
        resource = self.resources[logical_id]
        found: set[str] = set(resource.depends_on)
        _collect_references(resource.properties, found)
        return {dep for dep in found if dep in self.resources and dep != logical_id}

    def creation_order(self) -> list[str]:
        """Logical ids ordered so that every resource comes after what it refers to."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(node: str, trail: tuple[str, ...]) -> None:
            if state.get(node) == 2:
                return
            if state.get(node) == 1:
                raise TemplateError(f"circular reference between resources: {' -> '.join((*trail, node))}")
            state[node] = 1
            for dep in sorted(self.dependencies(node)):
                visit(dep, (*trail, node))
            state[node] = 2
            order.append(node)

        for logical_id in self.resources:
            visit(logical_id, ())
        return order


_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


def _collect_references(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        if len(value) == 1:
            (key, arg), *_ = value.items()
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
                return
            if key == "Fn::GetAtt":
                target = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
                found.add(target)
                return
            if key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                for name in _SUB_VARIABLE.findall(text):
                    found.add(name.split(".", 1)[0])
                if isinstance(arg, list) and len(arg) > 1:
                    _collect_references(arg[1], found)
                return
        for item in value.values():
            _collect_references(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect_references(item, found)


# --- physical names -------------------------------------------------------------------------------

# Each service's name limit and alphabet.
NAME_LIMITS: dict[str, tuple[int, str]] = {
    "sqs": (80, r"[^A-Za-z0-9_-]"),
    "dynamodb": (255, r"[^A-Za-z0-9_.-]"),
    "events": (64, r"[^A-Za-z0-9_.-]"),
    "s3": (63, r"[^a-z0-9.-]"),
    "secretsmanager": (256, r"[^A-Za-z0-9/_+=.@-]"),
    "states": (80, r"[^A-Za-z0-9_-]"),
    "lambda": (64, r"[^A-Za-z0-9_-]"),
    "iam": (64, r"[^A-Za-z0-9+=,.@_-]"),
    "default": (64, r"[^A-Za-z0-9_-]"),
}


def physical_name(stack_name: str, logical_id: str, service: str = "default", suffix: str = "") -> str:
    """A unique, deterministic name for ``logical_id`` within the service's limits.

    ``r2r-dev-<LogicalId>``; when too long, cut and end with 8 hex digits of a hash of the
    full name so two long logical ids never collide.
    """
    limit, forbidden = NAME_LIMITS.get(service, NAME_LIMITS["default"])
    base = f"{stack_name}-{logical_id}"
    if service == "s3":
        base = base.lower()
    base = re.sub(forbidden, "-", base)
    room = limit - len(suffix)
    if len(base) > room:
        digest = hashlib.sha1(base.encode(), usedforsecurity=False).hexdigest()[:8]
        base = f"{base[: room - 9].rstrip('-.')}-{digest}"
    return base + suffix


# --- resolution -----------------------------------------------------------------------------------

_REGION = config.REGION
_ACCOUNT = config.ACCOUNT_ID

PSEUDO_PARAMETERS: dict[str, Any] = {
    "AWS::Region": _REGION,
    "AWS::AccountId": _ACCOUNT,
    "AWS::Partition": config.PARTITION,
    "AWS::URLSuffix": config.URL_SUFFIX,
    "AWS::NoValue": NO_VALUE,
    "AWS::NotificationARNs": [],
}


def default_attributes(resource_type: str, name: str, logical_id: str) -> tuple[str, dict[str, str]]:
    """(Ref value, GetAtt attributes) of a resource named ``name`` before it is created."""
    region, account = _REGION, _ACCOUNT
    if resource_type == "AWS::SQS::Queue":
        arn = f"arn:aws:sqs:{region}:{account}:{name}"
        url = f"https://sqs.{region}.amazonaws.com/{account}/{name}"
        return url, {"Arn": arn, "QueueName": name, "QueueUrl": url}
    if resource_type in ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
        arn = f"arn:aws:dynamodb:{region}:{account}:table/{name}"
        return name, {"Arn": arn, "StreamArn": f"{arn}/stream/local", "TableId": name}
    if resource_type == "AWS::Events::EventBus":
        return name, {"Arn": f"arn:aws:events:{region}:{account}:event-bus/{name}", "Name": name}
    if resource_type == "AWS::Events::Rule":
        return name, {"Arn": f"arn:aws:events:{region}:{account}:rule/{name}"}
    if resource_type == "AWS::Events::Archive":
        return name, {"Arn": f"arn:aws:events:{region}:{account}:archive/{name}", "ArchiveName": name}
    if resource_type == "AWS::S3::Bucket":
        return name, {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{region}.amazonaws.com",
        }
    if resource_type == "AWS::SecretsManager::Secret":
        arn = f"arn:aws:secretsmanager:{region}:{account}:secret:{name}"
        return arn, {"Id": arn}
    if resource_type == "AWS::SNS::Topic":
        arn = f"arn:aws:sns:{region}:{account}:{name}"
        return arn, {"TopicArn": arn, "TopicName": name}
    if resource_type == "AWS::StepFunctions::StateMachine":
        arn = f"arn:aws:states:{region}:{account}:stateMachine:{name}"
        return arn, {"Arn": arn, "Name": name}
    if resource_type == "AWS::Lambda::Function":
        return name, {"Arn": f"arn:aws:lambda:{region}:{account}:function:{name}"}
    if resource_type == "AWS::Lambda::LayerVersion":
        return f"arn:aws:lambda:{region}:{account}:layer:{name}:1", {}
    if resource_type == "AWS::IAM::Role":
        return name, {"Arn": f"arn:aws:iam::{account}:role/{name}", "RoleId": f"AROA{_hex(name, 17)}"}
    if resource_type == "AWS::IAM::ManagedPolicy":
        arn = f"arn:aws:iam::{account}:policy/{name}"
        return arn, {"PolicyArn": arn}
    if resource_type == "AWS::Logs::LogGroup":
        return name, {"Arn": f"arn:aws:logs:{region}:{account}:log-group:{name}:*"}
    if resource_type == "AWS::ApiGateway::RestApi":
        api_id = _hex(name, 10)
        return api_id, {"RootResourceId": f"root-{api_id}", "RestApiId": api_id}
    if resource_type == "AWS::ApiGateway::Resource":
        return f"res-{logical_id}", {"ResourceId": f"res-{logical_id}"}
    if resource_type == "AWS::KinesisFirehose::DeliveryStream":
        return name, {"Arn": f"arn:aws:firehose:{region}:{account}:deliverystream/{name}"}
    if resource_type == "AWS::KMS::Key":
        key_id = _hex(name, 32)
        return key_id, {"Arn": f"arn:aws:kms:{region}:{account}:key/{key_id}", "KeyId": key_id}
    service = resource_type.split("::")[1].lower() if resource_type.count("::") == 2 else "unknown"
    return name, {"Arn": f"arn:aws:{service}:{region}:{account}:{logical_id.lower()}/{name}"}


def _hex(text: str, length: int) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:length]


class Resolver:
    """Resolves intrinsic functions against the physical resources of the local stack."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.refs: dict[str, Any] = {}
        self.attributes: dict[str, dict[str, Any]] = {}

    def set_physical(self, logical_id: str, ref: Any, attributes: Mapping[str, Any] | None = None) -> None:
        self.refs[logical_id] = ref
        self.attributes.setdefault(logical_id, {}).update(attributes or {})

    # -- public ---------------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by its local value."""
        resolved = self._resolve(value)
        return None if resolved is NO_VALUE else resolved

    def resolve_str(self, value: Any) -> str:
        resolved = self.resolve(value)
        if isinstance(resolved, (dict, list)):
            return json.dumps(resolved)
        return "" if resolved is None else str(resolved)

    def ref(self, logical_id: str) -> Any:
        return self._ref(logical_id)

    def get_att(self, logical_id: str, attribute: str) -> Any:
        return self._get_att(logical_id, attribute)

    def condition(self, name: str) -> bool:
        if name not in self.template.conditions:
            raise TemplateError(f"unknown condition {name!r}")
        return bool(self._resolve(self.template.conditions[name]))

    # -- implementation -------------------------------------------------------------------------

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), *_ = value.items()
            handler = self._FUNCTIONS.get(key)
            if handler is not None:
                return handler(self, arg)
            if key.startswith("Fn::"):
                raise TemplateError(f"intrinsic function {key} is not supported by the local stack")
        out: dict[str, Any] = {}
        for key, item in value.items():
            resolved = self._resolve(item)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _ref(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise TemplateError(f"Ref expects a name, got {name!r}")
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name == "AWS::StackName":
            return self.template.stack_name
        if name == "AWS::StackId":
            return (
                f"arn:aws:cloudformation:{_REGION}:{_ACCOUNT}:stack/{self.template.stack_name}/"
                f"{_hex(self.template.stack_name, 8)}"
            )
        if name in self.refs:
            return self.refs[name]
        if name in self.template.parameters:
            parameter = self.template.parameters[name]
            if "Default" not in parameter:
                raise TemplateError(f"parameter {name!r} has no default and the local stack sets none")
            default = parameter["Default"]
            if parameter.get("Type") == "CommaDelimitedList" and isinstance(default, str):
                return default.split(",")
            return default
        if name in self.template.resources:
            raise TemplateError(f"Ref to {name!r} before the local stack created it")
        raise TemplateError(f"Ref to unknown name {name!r}")

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        if logical_id not in self.template.resources:
            raise TemplateError(f"Fn::GetAtt on unknown resource {logical_id!r}")
        attributes = self.attributes.get(logical_id)
        if attributes is None:
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute} before the local stack created it")
        if attribute not in attributes:
            resource_type = self.template.resources[logical_id].type
            raise TemplateError(
                f"Fn::GetAtt {logical_id}.{attribute}: attribute unknown locally for {resource_type}"
            )
        return attributes[attribute]

    def _fn_ref(self, arg: Any) -> Any:
        return self._ref(arg)

    def _fn_get_att(self, arg: Any) -> Any:
        if isinstance(arg, str):
            logical_id, _, attribute = arg.partition(".")
        else:
            logical_id, attribute = arg[0], self._resolve(arg[1])
        return self._get_att(logical_id, str(attribute))

    def _fn_join(self, arg: Any) -> str:
        delimiter, items = arg
        values = self._resolve(items)
        if not isinstance(values, list):
            raise TemplateError(f"Fn::Join expects a list, got {values!r}")
        return str(delimiter).join(_as_text(v) for v in values)

    def _fn_sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], self._resolve(arg[1]) if len(arg) > 1 else {}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return _as_text(variables[name])
            if "." in name and name.split(".", 1)[0] in self.template.resources:
                logical_id, attribute = name.split(".", 1)
                return _as_text(self._get_att(logical_id, attribute))
            return _as_text(self._ref(name))

        substituted = _SUB_VARIABLE.sub(replace, str(text))
        return substituted.replace("${!", "${")

    def _fn_select(self, arg: Any) -> Any:
        index, items = arg
        values = self._resolve(items)
        position = int(self._resolve(index))
        if not isinstance(values, list) or not 0 <= position < len(values):
            raise TemplateError(f"Fn::Select index {position} out of range of {values!r}")
        return values[position]

    def _fn_split(self, arg: Any) -> list[str]:
        delimiter, text = arg
        return _as_text(self._resolve(text)).split(delimiter)

    def _fn_base64(self, arg: Any) -> str:
        return base64.b64encode(_as_text(self._resolve(arg)).encode()).decode()

    def _fn_find_in_map(self, arg: Any) -> Any:
        map_name, top, second = (self._resolve(a) for a in arg[:3])
        try:
            return self.template.mappings[map_name][top][second]
        except KeyError as exc:
            raise TemplateError(f"Fn::FindInMap {map_name}/{top}/{second} not found") from exc

    def _fn_get_azs(self, _arg: Any) -> list[str]:
        return [f"{_REGION}{zone}" for zone in "abcdef"]

    def _fn_if(self, arg: Any) -> Any:
        name, when_true, when_false = arg
        return self._resolve(when_true if self.condition(name) else when_false)

    def _fn_equals(self, arg: Any) -> bool:
        left, right = (self._resolve(a) for a in arg)
        return bool(left == right)

    def _fn_not(self, arg: Any) -> bool:
        return not self._resolve(arg[0])

    def _fn_and(self, arg: Any) -> bool:
        return all(self._resolve(a) for a in arg)

    def _fn_or(self, arg: Any) -> bool:
        return any(self._resolve(a) for a in arg)

    def _fn_condition(self, arg: Any) -> bool:
        return self.condition(arg)

    def _fn_import_value(self, arg: Any) -> Any:
        raise TemplateError(f"Fn::ImportValue {arg!r}: cross-stack imports are not available locally")

    _FUNCTIONS: dict[str, Any] = {
        "Ref": _fn_ref,
        "Fn::GetAtt": _fn_get_att,
        "Fn::Join": _fn_join,
        "Fn::Sub": _fn_sub,
        "Fn::Select": _fn_select,
        "Fn::Split": _fn_split,
        "Fn::Base64": _fn_base64,
        "Fn::FindInMap": _fn_find_in_map,
        "Fn::GetAZs": _fn_get_azs,
        "Fn::If": _fn_if,
        "Fn::Equals": _fn_equals,
        "Fn::Not": _fn_not,
        "Fn::And": _fn_and,
        "Fn::Or": _fn_or,
        "Condition": _fn_condition,
        "Fn::ImportValue": _fn_import_value,
    }


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None or value is NO_VALUE else str(value)


def substitute_definition(definition: str, substitutions: Mapping[str, Any]) -> str:
    """Replace ``${Name}`` in a state machine definition (``DefinitionSubstitutions``)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise TemplateError(
                f"state machine definition uses ${{{name}}} but DefinitionSubstitutions lacks it"
            )
        return _as_text(substitutions[name])

    return re.sub(r"\$\{([A-Za-z0-9_.:-]+)\}", replace, definition)


def referenced_logical_ids(value: Any) -> set[str]:
    found: set[str] = set()
    _collect_references(value, found)
    return found


def first_reference(value: Any, candidates: Iterable[str]) -> str | None:
    """The first logical id among ``candidates`` that ``value`` refers to."""
    refs = referenced_logical_ids(value)
    return next((c for c in candidates if c in refs), None)
