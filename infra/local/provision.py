"""Create the template's resources in moto and describe what the local runtime must run.

Walks the template in dependency order, creates each resource that has a local meaning
(queues, tables, buses, rules and targets, buckets, secrets, functions, the state machine)
and records its physical name and attributes so later references resolve to the local
resource. Resources without local meaning (IAM, log groups, API Gateway deployments,
permissions, layers, archives...) are skipped and listed in the debug log.
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore import xform_name

from infra.local import config
from infra.local.firehose import FirehoseSpec
from infra.local.iam_auth import OperatorRole
from infra.local.schedules import ScheduleSpec, ScheduleTarget
from infra.local.template import (
    Resolver,
    Resource,
    Template,
    TemplateError,
    default_attributes,
    first_reference,
    physical_name,
    substitute_definition,
)

LOG = logging.getLogger("r2r.local.provision")

SOURCE_METADATA_KEY = "r2r:source"
OPERATOR_ROLE_METADATA_KEY = "r2r:operator-role"
LOCAL_ROLE_NAME = "r2r-local-lambda-role"

# Which service's naming rules apply to a resource type, and which property names it explicitly.
_NAMING: dict[str, tuple[str, str | None]] = {
    "AWS::SQS::Queue": ("sqs", "QueueName"),
    "AWS::DynamoDB::Table": ("dynamodb", "TableName"),
    "AWS::DynamoDB::GlobalTable": ("dynamodb", "TableName"),
    "AWS::Events::EventBus": ("events", "Name"),
    "AWS::Events::Rule": ("events", "Name"),
    "AWS::Events::Archive": ("events", "ArchiveName"),
    "AWS::S3::Bucket": ("s3", "BucketName"),
    "AWS::SecretsManager::Secret": ("secretsmanager", "Name"),
    "AWS::StepFunctions::StateMachine": ("states", "StateMachineName"),
    "AWS::Lambda::Function": ("lambda", "FunctionName"),
    "AWS::IAM::Role": ("iam", "RoleName"),
    "AWS::Logs::LogGroup": ("default", "LogGroupName"),
    "AWS::KMS::Key": ("default", None),
    "AWS::KinesisFirehose::DeliveryStream": ("default", "DeliveryStreamName"),
}

# Environment variables that tell which secret holds what.
_SECRET_ROLES = {
    "WEBHOOK_SECRETS_ARN": "webhook",
    "ERP_SECRET_ARN": "erp",
    "SALESFORCE_SECRET_ARN": "salesforce",
    "SALESFORCE_OUTBOUND_SECRETS_ARN": "salesforce_outbound",
    "KANTATA_SECRET_ARN": "kantata",
}


@dataclass
class QueueInfo:
    logical_id: str
    name: str
    url: str
    arn: str
    dlq_arn: str | None = None
    max_receive_count: int | None = None
    visibility_timeout: int = 30
    attributes: dict[str, str] = field(default_factory=dict)  # as given to CreateQueue


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    source_dir: Path
    handler: str
    timeout_s: int
    memory_mb: int
    runtime: str
    environment: dict[str, str]


@dataclass
class MappingSpec:
    logical_id: str
    function_name: str
    queue: QueueInfo
    batch_size: int
    batching_window_s: int
    report_batch_item_failures: bool
    max_concurrency: int | None
    enabled: bool
    filters: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RouteSpec:
    api_logical_id: str
    http_method: str  # GET, POST... or ANY
    path: str  # /v1/webhooks/{source}
    function_name: str | None  # None for a MOCK integration
    integration_type: str
    authorization: str = "NONE"  # AuthorizationType: NONE, AWS_IAM, CUSTOM, COGNITO_USER_POOLS


@dataclass
class ApiSpec:
    logical_id: str
    name: str
    stage: str
    routes: list[RouteSpec]
    binary_media_types: list[str]
    api_id: str = ""  # the RestApi's Ref: the id in method ARNs (execute-api:Invoke)


@dataclass
class StateMachineInfo:
    logical_id: str
    name: str
    arn: str


@dataclass
class LocalResources:
    """What the local stack made of the template."""

    stack_name: str
    physical: dict[str, str] = field(default_factory=dict)  # logical id -> Ref value
    queues: dict[str, QueueInfo] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    buses: dict[str, str] = field(default_factory=dict)
    partner_buses: dict[str, str] = field(default_factory=dict)  # logical id -> partner event source
    rules: dict[str, str] = field(default_factory=dict)
    buckets: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # logical id -> ARN
    keys: dict[str, str] = field(default_factory=dict)  # logical id -> KMS key ARN
    operator_roles: dict[str, OperatorRole] = field(default_factory=dict)  # label -> role with its policies
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    state_machines: dict[str, StateMachineInfo] = field(default_factory=dict)
    mappings: list[MappingSpec] = field(default_factory=list)
    apis: list[ApiSpec] = field(default_factory=list)
    schedules: list[ScheduleSpec] = field(default_factory=list)
    delivery_streams: dict[str, FirehoseSpec] = field(default_factory=dict)  # logical id -> spec
    glue_tables: dict[str, tuple[str, str]] = field(default_factory=dict)  # logical id -> (database, table)
    skipped: dict[str, str] = field(default_factory=dict)  # logical id -> type

    def queue_by_arn(self, arn: str) -> QueueInfo | None:
        return next((q for q in self.queues.values() if q.arn == arn), None)

    def function_by_name(self, name_or_arn: str) -> FunctionSpec | None:
        name = function_name_of(name_or_arn)
        return next((f for f in self.functions.values() if f.name == name), None)

    def dlq_arns(self) -> set[str]:
        return {q.dlq_arn for q in self.queues.values() if q.dlq_arn}

    def bucket_for_env(self, variable: str) -> str | None:
        """The bucket a function's environment ``variable`` names, else the first bucket."""
        for function in self.functions.values():
            value = function.environment.get(variable)
            if value and value in self.buckets.values():
                return value
        return next(iter(self.buckets.values()), None)

    def uses_env(self, variable: str) -> bool:
        """Whether some function's template environment sets ``variable``."""
        return any(variable in f.environment for f in self.functions.values())

    def function(self, name: str) -> FunctionSpec:
        """A function by logical id, physical name or ARN, or its source folder (``time_posting``)."""
        for spec in self.functions.values():
            if name in (spec.logical_id, spec.name, spec.arn, spec.source_dir.name):
                return spec
        found = self.function_by_name(name)
        if found is None:
            known = ", ".join(sorted(f.source_dir.name for f in self.functions.values()))
            raise LookupError(f"no function {name!r} in the template (functions: {known})")
        return found

    def table_for_env(self, variable: str) -> str | None:
        """The table a function's environment ``variable`` (e.g. STATE_TABLE_NAME) names."""
        for function in self.functions.values():
            value = function.environment.get(variable)
            if value and value in self.tables.values():
                return value
        return None


_FUNCTION_ARN = re.compile(r"^arn:[^:]+:lambda:[^:]*:[^:]*:function:([^:]+)(?::.*)?$")


def function_name_of(name_or_arn: str) -> str:
    """``my-fn`` from ``my-fn``, ``my-fn:alias`` or a (qualified) function ARN."""
    match = _FUNCTION_ARN.match(name_or_arn)
    if match:
        return match.group(1)
    return name_or_arn.split(":", 1)[0]


def local_partner_bus_name(event_source_name: str) -> str:
    """The local (moto) name of the partner bus of ``event_source_name``: ``/`` → ``_``."""
    return event_source_name.replace("/", "_")


def _bus_name(value: str) -> str:
    """A bus name from a name or an ARN (partner bus names hold slashes: keep all after ``event-bus/``)."""
    return value.split(":event-bus/", 1)[-1] if value.startswith("arn:") else value


@dataclass
class _ApiParts:
    """API Gateway resources as read, before routes are put together."""

    apis: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    methods: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, str] = field(default_factory=dict)


class Provisioner:
    """Creates the template's resources in moto (reached through ``client``)."""

    def __init__(
        self,
        template: Template,
        client: Callable[[str], Any],
        repo_root: Path,
        secret_values: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.resolver = Resolver(template)
        self.client = client
        self.repo_root = repo_root
        self.out = LocalResources(stack_name=template.stack_name)
        self._role_arn: str | None = None
        self._secret_values = dict(secret_values or {})
        self._roles: dict[str, str] = {}
        self._api_parts = _ApiParts()

    # -- entry point ----------------------------------------------------------------------------

    def provision(self) -> LocalResources:
        # A creator returns False when the resource has no local meaning after all (it lists it as skipped).
        creators: dict[str, Callable[[Resource, str], bool | None]] = {
            "AWS::SQS::Queue": self._queue,
            "AWS::DynamoDB::Table": self._table,
            "AWS::DynamoDB::GlobalTable": self._table,
            "AWS::Events::EventBus": self._bus,
            "AWS::Events::Rule": self._rule,
            "AWS::S3::Bucket": self._bucket,
            "AWS::SecretsManager::Secret": self._secret,
            "AWS::StepFunctions::StateMachine": self._state_machine,
            "AWS::Lambda::Function": self._function,
            "AWS::Lambda::EventSourceMapping": self._event_source_mapping,
            "AWS::ApiGateway::RestApi": self._rest_api,
            "AWS::ApiGateway::Resource": self._api_resource,
            "AWS::ApiGateway::Method": self._api_method,
            "AWS::ApiGateway::Stage": self._api_stage,
            "AWS::ApiGateway::Deployment": self._api_deployment,
            "AWS::SNS::Topic": self._topic,
            "AWS::KMS::Key": self._kms_key,
            "AWS::IAM::Role": self._iam_role,
            "AWS::IAM::Policy": self._iam_policy,
            "AWS::KinesisFirehose::DeliveryStream": self._delivery_stream,
            "AWS::Glue::Database": self._glue_database,
            "AWS::Glue::Table": self._glue_table,
            "Custom::AWS": self._aws_sdk_call,
            "Custom::S3BucketNotifications": self._bucket_notifications,
        }
        self._roles = self._secret_roles()
        for logical_id in self.template.creation_order():
            resource = self.template.resources[logical_id]
            if resource.condition and not self.resolver.condition(resource.condition):
                LOG.debug("condition false, not created: %s (%s)", logical_id, resource.type)
                continue
            name = self._name(resource)
            ref, attributes = default_attributes(resource.type, name, logical_id)
            self.resolver.set_physical(logical_id, ref, attributes)
            creator = creators.get(resource.type)
            if creator is None:
                self.out.skipped[logical_id] = resource.type
                continue
            if creator(resource, name) is False:
                continue  # the creator found nothing local to make of it (and listed it as skipped)
            self.out.physical[logical_id] = str(self.resolver.refs[logical_id])
        self._build_apis()
        if self.out.skipped:
            LOG.debug(
                "resources without local meaning, skipped: %s",
                ", ".join(f"{k} ({v})" for k, v in self.out.skipped.items()),
            )
        return self.out

    # -- naming ---------------------------------------------------------------------------------

    def _name(self, resource: Resource) -> str:
        service, name_property = _NAMING.get(resource.type, ("default", None))
        if name_property and name_property in resource.properties:
            try:
                return self.resolver.resolve_str(resource.properties[name_property])
            except TemplateError:
                LOG.debug("explicit name of %s not resolvable yet", resource.logical_id)
        suffix = ""
        if resource.type == "AWS::SQS::Queue" and _truthy(resource.properties.get("FifoQueue")):
            suffix = ".fifo"
        return physical_name(self.template.stack_name, resource.logical_id, service, suffix)

    def _role(self) -> str:
        if self._role_arn is None:
            iam = self.client("iam")
            try:
                role = iam.create_role(
                    RoleName=LOCAL_ROLE_NAME,
                    AssumeRolePolicyDocument=json.dumps(
                        {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Principal": {"Service": "lambda.amazonaws.com"},
                                    "Action": "sts:AssumeRole",
                                }
                            ],
                        }
                    ),
                )["Role"]
            except iam.exceptions.EntityAlreadyExistsException:
                role = iam.get_role(RoleName=LOCAL_ROLE_NAME)["Role"]
            self._role_arn = str(role["Arn"])
        return self._role_arn

    # -- SQS ------------------------------------------------------------------------------------

    def _queue(self, resource: Resource, name: str) -> None:
        props = self.resolver.resolve(dict(resource.properties))
        attributes: dict[str, str] = {}
        for key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "MaximumMessageSize",
            "ReceiveMessageWaitTimeSeconds",
            "FifoQueue",
            "ContentBasedDeduplication",
            "DeduplicationScope",
            "FifoThroughputLimit",
            "SqsManagedSseEnabled",
            "KmsMasterKeyId",
            "KmsDataKeyReusePeriodSeconds",
        ):
            if key in props:
                value = props[key]
                attributes[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if "FifoQueue" in attributes and attributes["FifoQueue"].lower() != "true":
            del attributes["FifoQueue"]  # SQS refuses FifoQueue=false on create
        redrive = props.get("RedrivePolicy")
        dlq_arn = None
        max_receive = None
        if redrive:
            redrive = json.loads(redrive) if isinstance(redrive, str) else redrive
            dlq_arn = redrive.get("deadLetterTargetArn")
            max_receive = int(redrive.get("maxReceiveCount", 10))
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive}
            )
        allow = props.get("RedriveAllowPolicy")
        if allow:
            attributes["RedriveAllowPolicy"] = allow if isinstance(allow, str) else json.dumps(allow)
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        _ref, defaults = default_attributes(resource.type, name, resource.logical_id)
        self.resolver.set_physical(resource.logical_id, url, {**defaults, "QueueUrl": url})
        self.out.queues[resource.logical_id] = QueueInfo(
            logical_id=resource.logical_id,
            name=name,
            url=url,
            arn=defaults["Arn"],
            dlq_arn=dlq_arn,
            max_receive_count=max_receive,
            visibility_timeout=int(props.get("VisibilityTimeout", 30)),
            attributes=attributes,
        )

    # -- DynamoDB -------------------------------------------------------------------------------

    def _table(self, resource: Resource, name: str) -> None:
        props = self.resolver.resolve(dict(resource.properties))
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            # Capacity means nothing locally; on-demand avoids carrying throughput settings over.
            "BillingMode": "PAY_PER_REQUEST",
        }
        for index_key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(index_key):
                kwargs[index_key] = [
                    {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}
                    for index in props[index_key]
                ]
        sse = props.get("SSESpecification")
        if sse and _truthy(sse.get("SSEEnabled")):
            kwargs["SSESpecification"] = {
                "Enabled": True,
                **{k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if sse.get(k)},
            }
        stream = props.get("StreamSpecification")
        if stream and stream.get("StreamViewType"):
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": stream["StreamViewType"],
            }
        dynamodb = self.client("dynamodb")
        description = dynamodb.create_table(**kwargs)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and _truthy(ttl.get("Enabled", True)) and ttl.get("AttributeName"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        attributes = {"Arn": description["TableArn"]}
        if description.get("LatestStreamArn"):
            attributes["StreamArn"] = description["LatestStreamArn"]
        self.resolver.set_physical(resource.logical_id, name, attributes)
        self.out.tables[resource.logical_id] = name

    # -- S3 -------------------------------------------------------------------------------------

    def _bucket(self, resource: Resource, name: str) -> None:
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name)
        versioning = (resource.properties.get("VersioningConfiguration") or {}).get("Status")
        if versioning == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        encryption = self.resolver.resolve(resource.properties.get("BucketEncryption") or {})
        rules = encryption.get("ServerSideEncryptionConfiguration") if encryption else None
        if rules:
            s3.put_bucket_encryption(
                Bucket=name, ServerSideEncryptionConfiguration={"Rules": [_encryption_rule(r) for r in rules]}
            )
        self.out.buckets[resource.logical_id] = name

    def _bucket_notifications(self, resource: Resource, _name: str) -> None:
        """CDK's ``Custom::S3BucketNotifications`` (e.g. ``event_bridge_enabled``): applied as is."""
        props = self.resolver.resolve(dict(resource.properties))
        configuration = props.get("NotificationConfiguration") or {}
        self.client("s3").put_bucket_notification_configuration(
            Bucket=str(props["BucketName"]), NotificationConfiguration=configuration
        )

    # -- SNS ------------------------------------------------------------------------------------

    def _topic(self, _resource: Resource, name: str) -> None:
        """A topic (e.g. exceptions for finance): created so publishing works; nothing subscribes locally."""
        self.client("sns").create_topic(Name=name)

    # -- IAM: the operator roles, whose policies the local API evaluates ------------------------

    def _iam_role(self, resource: Resource, name: str) -> bool:
        """An operator role (Metadata ``r2r:operator-role``): its inline policies, resolved. Other roles have
        no local meaning (moto runs no IAM checks; the local functions run with local credentials)."""
        label = resource.metadata.get(OPERATOR_ROLE_METADATA_KEY)
        if not label:
            self.out.skipped[resource.logical_id] = resource.type
            return False
        role = OperatorRole(
            label=str(label),
            logical_id=resource.logical_id,
            name=name,
            arn=str(self.resolver.get_att(resource.logical_id, "Arn")),
        )
        for policy in resource.properties.get("Policies") or []:
            role.statements += self._statements(policy.get("PolicyDocument"))
        self.out.operator_roles[role.label] = role
        return True

    def _iam_policy(self, resource: Resource, _name: str) -> bool:
        """A policy attached to an operator role adds its statements to that role."""
        props = resource.properties
        attached = [first_reference(r, self.template.resources) for r in props.get("Roles") or []]
        roles = [r for r in self.out.operator_roles.values() if r.logical_id in attached]
        for role in roles:
            role.statements += self._statements(props.get("PolicyDocument"))
        if not roles:
            self.out.skipped[resource.logical_id] = resource.type
        return bool(roles)

    def _statements(self, document: Any) -> list[dict[str, Any]]:
        resolved = self.resolver.resolve(document or {})
        statements = resolved.get("Statement") or []
        return [dict(s) for s in (statements if isinstance(statements, list) else [statements])]

    # -- KMS --------------------------------------------------------------------------------------

    def _kms_key(self, resource: Resource, _name: str) -> None:
        """A customer-managed key, created in moto so the queues, tables, bucket, bus and secrets that name it
        are created with it as in AWS (moto records the key on each; it does not encrypt)."""
        props = resource.properties
        kwargs: dict[str, Any] = {
            "KeyUsage": str(props.get("KeyUsage", "ENCRYPT_DECRYPT")),
            "KeySpec": str(props.get("KeySpec", "SYMMETRIC_DEFAULT")),
        }
        if props.get("Description"):
            kwargs["Description"] = self.resolver.resolve_str(props["Description"])
        try:
            kwargs["Policy"] = json.dumps(self.resolver.resolve(props["KeyPolicy"]))
        except (KeyError, TemplateError) as exc:
            LOG.debug(
                "key %s: key policy not resolvable locally (%s), created without", resource.logical_id, exc
            )
        kms = self.client("kms")
        metadata = kms.create_key(**kwargs)["KeyMetadata"]
        if _truthy(props.get("EnableKeyRotation", False)):
            kms.enable_key_rotation(KeyId=metadata["KeyId"])
        self.resolver.set_physical(
            resource.logical_id, metadata["KeyId"], {"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]}
        )
        self.out.keys[resource.logical_id] = str(metadata["Arn"])

    # -- Secrets Manager ------------------------------------------------------------------------

    def _secret_roles(self) -> dict[str, str]:
        """logical id of a secret -> "webhook" / "erp", from the functions' environment."""
        secrets = {r.logical_id for r in self.template.of_type("AWS::SecretsManager::Secret")}
        roles: dict[str, str] = {}
        for function in self.template.of_type("AWS::Lambda::Function"):
            variables = (function.properties.get("Environment") or {}).get("Variables") or {}
            for variable, role in _SECRET_ROLES.items():
                if variable in variables:
                    target = first_reference(variables[variable], sorted(secrets))
                    if target:
                        roles[target] = role
        for logical_id in secrets - roles.keys():
            lowered = logical_id.lower()
            if "webhook" in lowered:
                roles[logical_id] = "webhook"
            elif "erp" in lowered or "netsuite" in lowered:
                roles[logical_id] = "erp"
            elif "salesforce" in lowered and "outbound" in lowered:
                roles[logical_id] = "salesforce_outbound"
            elif "salesforce" in lowered:
                roles[logical_id] = "salesforce"
        return roles

    def _secret(self, resource: Resource, name: str) -> None:
        role = self._roles.get(resource.logical_id)
        if resource.logical_id in self._secret_values:
            value = self._secret_values[resource.logical_id]
        elif role == "webhook":
            value = config.webhook_secrets_json()
        elif role == "erp":
            value = config.erp_credentials_json()
        elif role == "salesforce":
            value = json.dumps(config.SALESFORCE_CREDENTIALS)
        elif role == "salesforce_outbound":
            value = json.dumps(config.SALESFORCE_OUTBOUND_SECRETS)
        elif role == "kantata":
            value = json.dumps(config.KANTATA_CREDENTIALS)
        elif "SecretString" in resource.properties:
            value = self.resolver.resolve_str(resource.properties["SecretString"])
        else:
            value = self._generated_secret(resource)
        secretsmanager = self.client("secretsmanager")
        kwargs: dict[str, Any] = {"Name": name, "SecretString": value}
        if resource.properties.get("KmsKeyId"):
            kwargs["KmsKeyId"] = self.resolver.resolve_str(resource.properties["KmsKeyId"])
        arn = secretsmanager.create_secret(**kwargs)["ARN"]
        self.resolver.set_physical(resource.logical_id, arn, {"Id": arn})
        self.out.secrets[resource.logical_id] = arn

    def _generated_secret(self, resource: Resource) -> str:
        spec = self.resolver.resolve(resource.properties.get("GenerateSecretString") or {})
        generated = f"local-{resource.logical_id}-0001"
        if spec.get("SecretStringTemplate") and spec.get("GenerateStringKey"):
            body = json.loads(spec["SecretStringTemplate"])
            body[spec["GenerateStringKey"]] = generated
            return json.dumps(body)
        return generated

    # -- EventBridge ----------------------------------------------------------------------------

    def _bus(self, resource: Resource, name: str) -> None:
        events = self.client("events")
        source = resource.properties.get("EventSourceName")
        if source:
            # A partner event bus (e.g. a Salesforce Event Relay's) is named after its partner event source,
            # which holds slashes. moto 5 reads every bus name after the last "/" (rules, PutEvents), so the
            # bus is created locally under the source name with "/" turned into "_", and every reference to
            # it resolves to that name; r2r plays the partner (LocalStack.put_partner_event).
            source = self.resolver.resolve_str(source)
            name = local_partner_bus_name(source)
            _ref, attributes = default_attributes(resource.type, name, resource.logical_id)
            self.resolver.set_physical(resource.logical_id, name, attributes)
            self.out.partner_buses[resource.logical_id] = source
        kwargs: dict[str, Any] = {"Name": name}
        if resource.properties.get("KmsKeyIdentifier"):
            kwargs["KmsKeyIdentifier"] = self.resolver.resolve_str(resource.properties["KmsKeyIdentifier"])
        events.create_event_bus(**kwargs)
        self.out.buses[resource.logical_id] = name

    def _rule(self, resource: Resource, name: str) -> None:
        props = self.resolver.resolve(dict(resource.properties))
        bus = _bus_name(str(props.get("EventBusName") or "default"))
        kwargs: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": props.get("State", "ENABLED")}
        pattern = props.get("EventPattern")
        if pattern is not None:
            kwargs["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        if props.get("ScheduleExpression"):
            kwargs["ScheduleExpression"] = props["ScheduleExpression"]
        if props.get("Description"):
            kwargs["Description"] = props["Description"]
        events = self.client("events")
        arn = events.put_rule(**kwargs)["RuleArn"]
        targets = []
        scheduled = bool(props.get("ScheduleExpression"))
        for declared in props.get("Targets") or []:
            target = declared
            stream = self._stream_by_arn(str(declared["Arn"]))
            if stream is not None and not scheduled:
                # moto cannot deliver to Firehose: its tap queue stands in, read by the local forwarder.
                target = {"Id": declared["Id"], "Arn": self._tap_queue(stream, name)}
            target_arn = str(target["Arn"])
            if ":sqs:" not in target_arn and not scheduled:
                LOG.warning(
                    "rule %s: target %s is not an SQS queue; moto only delivers to SQS targets",
                    resource.logical_id,
                    target_arn,
                )
            entry = {
                k: target[k]
                for k in ("Id", "Arn", "Input", "InputPath", "InputTransformer", "SqsParameters")
                if k in target
            }
            targets.append(entry)
        # A scheduled rule's targets stay out of moto: moto treats a rule without an event pattern as
        # matching every event on its bus, so each aws.states event would fire the schedule.
        # infra.local.schedules delivers its ticks instead.
        if targets and not scheduled:
            events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        self.resolver.set_physical(resource.logical_id, name, {"Arn": arn})
        self.out.rules[resource.logical_id] = name
        if scheduled:
            self._schedule(resource.logical_id, name, arn, props)

    def _schedule(self, logical_id: str, name: str, arn: str, props: Mapping[str, Any]) -> None:
        """A scheduled rule: moto never fires it, infra.local.schedules does."""
        targets = []
        for target in props.get("Targets") or []:
            target_arn = str(target["Arn"])
            queue = self.out.queue_by_arn(target_arn)
            function = self.out.function_by_name(target_arn) if ":lambda:" in target_arn else None
            if queue is None and function is None:
                LOG.warning(
                    "scheduled rule %s: target %s is neither a local queue nor function",
                    logical_id,
                    target_arn,
                )
                continue
            if "InputTransformer" in target:
                LOG.warning("scheduled rule %s: InputTransformer is not applied locally", logical_id)
            targets.append(
                ScheduleTarget(
                    arn=target_arn,
                    queue_url=queue.url if queue else None,
                    function_name=function.name if function else None,
                    input=target.get("Input"),
                    input_path=target.get("InputPath"),
                )
            )
        self.out.schedules.append(
            ScheduleSpec(
                logical_id=logical_id,
                name=name,
                arn=arn,
                expression=str(props["ScheduleExpression"]),
                enabled=str(props.get("State", "ENABLED")) == "ENABLED",
                targets=targets,
            )
        )

    # -- Firehose and Glue ----------------------------------------------------------------------

    def _delivery_stream(self, resource: Resource, name: str) -> None:
        """Created in moto (for describe) and recorded for the local forwarder, which does the delivery."""
        props = self.resolver.resolve(dict(resource.properties))
        arn = str(self.resolver.attributes[resource.logical_id]["Arn"])
        spec = FirehoseSpec.from_properties(resource.logical_id, name, arn, props)
        destination = props.get("ExtendedS3DestinationConfiguration") or {}
        self.client("firehose").create_delivery_stream(
            DeliveryStreamName=name,
            DeliveryStreamType=str(props.get("DeliveryStreamType") or "DirectPut"),
            ExtendedS3DestinationConfiguration={
                key: destination[key]
                for key in ("RoleARN", "BucketARN", "Prefix", "ErrorOutputPrefix", "CompressionFormat")
                if key in destination
            },
        )
        self.out.delivery_streams[resource.logical_id] = spec

    def _stream_by_arn(self, arn: str) -> FirehoseSpec | None:
        return next((s for s in self.out.delivery_streams.values() if s.arn == arn), None)

    def _tap_queue(self, stream: FirehoseSpec, rule_name: str) -> str:
        """The SQS queue a rule's Firehose target delivers to locally (one per stream); returns its ARN."""
        if stream.tap_queue_url is None:
            name = physical_name(self.template.stack_name, f"{stream.logical_id}Tap", "sqs")
            sqs = self.client("sqs")
            stream.tap_queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
            stream.tap_queue_name = name
        stream.rules.append(rule_name)
        return f"arn:aws:sqs:{config.REGION}:{config.ACCOUNT_ID}:{stream.tap_queue_name}"

    def _glue_database(self, resource: Resource, name: str) -> None:
        props = self.resolver.resolve(dict(resource.properties))
        database = dict(props.get("DatabaseInput") or {})
        database.setdefault("Name", name)
        self.client("glue").create_database(DatabaseInput=database)
        self.resolver.set_physical(resource.logical_id, database["Name"], {})

    def _glue_table(self, resource: Resource, name: str) -> None:
        props = self.resolver.resolve(dict(resource.properties))
        table = dict(props.get("TableInput") or {})
        table.setdefault("Name", name)
        database = str(props["DatabaseName"])
        self.client("glue").create_table(DatabaseName=database, TableInput=table)
        self.resolver.set_physical(resource.logical_id, table["Name"], {})
        self.out.glue_tables[resource.logical_id] = (database, str(table["Name"]))

    # -- Lambda ---------------------------------------------------------------------------------

    def _function(self, resource: Resource, name: str) -> None:
        source = resource.metadata.get(SOURCE_METADATA_KEY)
        if not source:
            LOG.debug(
                "function %s has no %s metadata: not run locally", resource.logical_id, SOURCE_METADATA_KEY
            )
            self.out.skipped[resource.logical_id] = resource.type
            return
        props = resource.properties
        variables = (props.get("Environment") or {}).get("Variables") or {}
        environment = {key: self.resolver.resolve_str(value) for key, value in variables.items()}
        source_dir = Path(source)
        if not source_dir.is_absolute():
            source_dir = self.repo_root / source_dir
        handler = str(props.get("Handler") or "handler.handler")
        runtime = str(props.get("Runtime") or "python3.12")
        timeout = int(self.resolver.resolve(props.get("Timeout", config.DEFAULT_TIMEOUT_S)))
        memory = int(self.resolver.resolve(props.get("MemorySize", config.DEFAULT_MEMORY_MB)))
        arn = self.client("lambda").create_function(
            FunctionName=name,
            Runtime=runtime,
            Role=self._role(),
            Handler=handler,
            Code={"ZipFile": _placeholder_zip()},
            Timeout=timeout,
            MemorySize=memory,
        )["FunctionArn"]
        self.resolver.set_physical(resource.logical_id, name, {"Arn": arn})
        self.out.functions[resource.logical_id] = FunctionSpec(
            logical_id=resource.logical_id,
            name=name,
            arn=arn,
            source_dir=source_dir,
            handler=handler,
            timeout_s=timeout,
            memory_mb=memory,
            runtime=runtime,
            environment=environment,
        )

    def _event_source_mapping(self, resource: Resource, _name: str) -> None:
        # Never created in moto: its own SQS->Lambda mapping would steal the messages and ignores
        # ReportBatchItemFailures. The local pollers (infra.local.pollers) run these.
        props = self.resolver.resolve(dict(resource.properties))
        source_arn = str(props.get("EventSourceArn") or "")
        queue = self.out.queue_by_arn(source_arn)
        if queue is None:
            LOG.warning(
                "event source mapping %s: source %s is not a local queue", resource.logical_id, source_arn
            )
            self.out.skipped[resource.logical_id] = resource.type
            return
        function_name = function_name_of(str(props["FunctionName"]))
        if self.out.function_by_name(function_name) is None:
            LOG.warning(
                "event source mapping %s: function %s is not run locally", resource.logical_id, function_name
            )
            self.out.skipped[resource.logical_id] = resource.type
            return
        scaling = props.get("ScalingConfig") or {}
        filters = (props.get("FilterCriteria") or {}).get("Filters") or []
        self.out.mappings.append(
            MappingSpec(
                logical_id=resource.logical_id,
                function_name=function_name,
                queue=queue,
                batch_size=int(props.get("BatchSize", 10)),
                batching_window_s=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                report_batch_item_failures="ReportBatchItemFailures"
                in (props.get("FunctionResponseTypes") or []),
                max_concurrency=int(scaling["MaximumConcurrency"])
                if "MaximumConcurrency" in scaling
                else None,
                enabled=_truthy(props.get("Enabled", True)),
                filters=[
                    json.loads(f["Pattern"]) if isinstance(f.get("Pattern"), str) else f.get("Pattern")
                    for f in filters
                ],
            )
        )

    # -- Step Functions -------------------------------------------------------------------------

    def _state_machine(self, resource: Resource, name: str) -> None:
        props = resource.properties
        if "DefinitionString" in props:
            definition = self.resolver.resolve_str(props["DefinitionString"])
        elif "Definition" in props:
            definition = json.dumps(self.resolver.resolve(props["Definition"]))
        elif "DefinitionS3Location" in props:
            definition = self._definition_file(resource).read_text(encoding="utf-8")
        else:
            raise TemplateError(f"state machine {resource.logical_id} has no definition")
        substitutions = self.resolver.resolve(props.get("DefinitionSubstitutions") or {})
        definition = substitute_definition(definition, substitutions)
        kwargs: dict[str, Any] = {"name": name, "definition": definition, "roleArn": self._role()}
        if props.get("StateMachineType"):
            kwargs["type"] = props["StateMachineType"]
        arn = self.client("stepfunctions").create_state_machine(**kwargs)["stateMachineArn"]
        self.resolver.set_physical(resource.logical_id, arn, {"Arn": arn, "Name": name})
        self.out.state_machines[resource.logical_id] = StateMachineInfo(resource.logical_id, name, arn)

    def _definition_file(self, resource: Resource) -> Path:
        """``DefinitionS3Location``: the asset CDK staged in cdk.out, else the repo file in Metadata."""
        key = self.resolver.resolve_str((resource.properties["DefinitionS3Location"] or {}).get("Key"))
        staged = self.template.asset_file(key)
        if staged is not None:
            return staged
        source = resource.metadata.get("r2r:definition")
        if source and (self.repo_root / source).is_file():
            return self.repo_root / source
        raise TemplateError(
            f"state machine {resource.logical_id}: definition asset {key} not found beside the template"
        )

    # -- CDK AwsCustomResource: one SDK call, made against moto -----------------------------------

    def _aws_sdk_call(self, resource: Resource, _name: str) -> None:
        """Run the ``Create`` call of a CDK ``AwsCustomResource`` (e.g. a DLQ's RedriveAllowPolicy)."""
        raw = resource.properties.get("Create")
        if raw is None:
            self.out.skipped[resource.logical_id] = resource.type
            return
        resolved = self.resolver.resolve(raw)
        call = json.loads(resolved) if isinstance(resolved, str) else resolved
        service = _boto3_service(str(call.get("service", "")))
        action = str(call.get("action", "")).removesuffix("Command")
        method = xform_name(action)
        try:
            getattr(self.client(service), method)(**(call.get("parameters") or {}))
        except Exception as exc:
            LOG.warning(
                "custom resource %s: %s.%s failed locally: %s", resource.logical_id, service, method, exc
            )
            return
        LOG.debug("custom resource %s: called %s.%s", resource.logical_id, service, method)

    # -- API Gateway (served by infra.local.api, nothing created in moto) -----------------------

    def _rest_api(self, resource: Resource, name: str) -> None:
        props = self.resolver.resolve(dict(resource.properties))
        self._api_parts.apis[resource.logical_id] = {
            "name": props.get("Name", name),
            "binary": list(props.get("BinaryMediaTypes") or []),
        }

    def _api_resource(self, resource: Resource, _name: str) -> None:
        props = resource.properties
        self._api_parts.resources[self.resolver.refs[resource.logical_id]] = {
            "parent": self.resolver.resolve_str(props["ParentId"]),
            "part": self.resolver.resolve_str(props["PathPart"]),
            "api": first_reference(props.get("RestApiId"), self._api_parts.apis),
        }

    def _api_method(self, resource: Resource, _name: str) -> None:
        props = resource.properties
        integration = props.get("Integration") or {}
        self._api_parts.methods.append(
            {
                "api": first_reference(props.get("RestApiId"), self._api_parts.apis),
                "resource": self.resolver.resolve_str(props["ResourceId"]),
                "method": str(props.get("HttpMethod", "ANY")).upper(),
                "type": str(integration.get("Type", "MOCK")).upper(),
                "authorization": str(props.get("AuthorizationType", "NONE")).upper(),
                "uri": self.resolver.resolve_str(integration.get("Uri")) if integration.get("Uri") else "",
            }
        )

    def _api_stage(self, resource: Resource, _name: str) -> None:
        props = resource.properties
        api = first_reference(props.get("RestApiId"), self._api_parts.apis)
        if api and props.get("StageName"):
            stage = self.resolver.resolve_str(props["StageName"])
            self._api_parts.stages[api] = stage
            # A stage's Ref is its name (method ARNs of execute-api:Invoke policies use it).
            self.resolver.set_physical(resource.logical_id, stage)
        self.out.skipped[resource.logical_id] = resource.type

    def _api_deployment(self, resource: Resource, _name: str) -> None:
        props = resource.properties
        api = first_reference(props.get("RestApiId"), self._api_parts.apis)
        if api and props.get("StageName"):
            self._api_parts.stages.setdefault(api, self.resolver.resolve_str(props["StageName"]))
        self.out.skipped[resource.logical_id] = resource.type

    def _build_apis(self) -> None:
        resources = self._api_parts.resources

        def path_of(resource_id: str) -> str:
            parts: list[str] = []
            seen: set[str] = set()
            while resource_id in resources and resource_id not in seen:
                seen.add(resource_id)
                parts.append(resources[resource_id]["part"])
                resource_id = resources[resource_id]["parent"]
            return "/" + "/".join(reversed(parts))

        for api_logical_id, api in self._api_parts.apis.items():
            routes = []
            for method in self._api_parts.methods:
                if method["api"] not in (api_logical_id, None):
                    continue
                function_name = None
                if method["type"] in ("AWS_PROXY", "AWS"):
                    match = re.search(r"/functions/(.+?)/invocations", method["uri"])
                    if match is None:
                        LOG.warning("API method with integration %s: no function found", method["uri"])
                        continue
                    function_name = function_name_of(match.group(1))
                routes.append(
                    RouteSpec(
                        api_logical_id=api_logical_id,
                        http_method=method["method"],
                        path=path_of(method["resource"]),
                        function_name=function_name,
                        integration_type=method["type"],
                        authorization=method["authorization"],
                    )
                )
            stage = self._api_parts.stages.get(api_logical_id, "prod")
            self.out.apis.append(
                ApiSpec(
                    logical_id=api_logical_id,
                    name=api["name"],
                    stage=stage,
                    routes=routes,
                    binary_media_types=api["binary"],
                    api_id=str(self.resolver.refs.get(api_logical_id, api_logical_id)),
                )
            )


_SDK_SERVICES = {
    "eventbridge": "events",
    "cloudwatchevents": "events",
    "sfn": "stepfunctions",
    "cloudwatchlogs": "logs",
    "cloudwatch": "cloudwatch",
}


def _boto3_service(name: str) -> str:
    """boto3's name of an AwsCustomResource service (``SQS``, ``@aws-sdk/client-sqs``...)."""
    lowered = name.lower().removeprefix("@aws-sdk/client-").replace("-", "")
    return _SDK_SERVICES.get(lowered, lowered)


def _encryption_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation ``ServerSideEncryptionRule`` as ``PutBucketEncryption`` takes it."""
    default = rule.get("ServerSideEncryptionByDefault") or {}
    converted: dict[str, Any] = {
        "ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": default.get("SSEAlgorithm", "AES256"),
            **({"KMSMasterKeyID": default["KMSMasterKeyID"]} if default.get("KMSMasterKeyID") else {}),
        }
    }
    if "BucketKeyEnabled" in rule:
        converted["BucketKeyEnabled"] = _truthy(rule["BucketKeyEnabled"])
    return converted


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _placeholder_zip() -> bytes:
    """Moto's Lambda wants code; the real code runs in-process (infra.local.functions)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()
