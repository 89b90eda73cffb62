"""EventBridge rule -> SQS queue (own DLQ, redrivable) -> Lambda with partial batch failures.

Every asynchronous consumer gets one of these, so a failing message ends up in an SQS DLQ
that "Start DLQ redrive" can move back to its source queue once the cause is fixed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.constructs.encryption import DataKey
from infra.constructs.functions import FUNCTION_LOG_RETENTION, R2rFunction

SOURCE_RETENTION = Duration.days(4)
DLQ_RETENTION = Duration.days(14)  # longer than the source: a DLQ keeps the original enqueue time
MAX_RECEIVE_COUNT = 5
VISIBILITY_FACTOR = 6  # visibility timeout = 6 x function timeout
BATCH_SIZE = 10
# Bulk consumers (approved time at month-end): up to this many records per invocation, gathered for at most
# BULK_BATCHING_WINDOW. A larger batch reads an engagement's terms and charges once for many of its entries
# and pays one invocation, one ReceiveMessage and one DeleteMessageBatch per 100 records instead of per 10.
BULK_BATCH_SIZE = 100
BULK_BATCHING_WINDOW = Duration.seconds(1)
REDRIVE_PROVIDER_ID = "DlqRedriveAllowProvider"


class RedriveAllowProvider(Construct):
    """Role and log group of the stack's one AwsCustomResource provider function.

    Given explicitly so the provider carries no AWS managed policy (AWSLambdaBasicExecutionRole):
    it may write its own log group and, per custom resource, set attributes on one DLQ.
    """

    def __init__(self, scope: Construct, construct_id: str, *, log_removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=FUNCTION_LOG_RETENTION,
            removal_policy=log_removal_policy,
            encryption_key=DataKey.of(self),
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="r2r: sets each DLQ's RedriveAllowPolicy (AwsCustomResource provider)",
        )
        self.log_group.grant_write(self.role)

    @classmethod
    def of(cls, scope: Construct, *, log_removal_policy: RemovalPolicy) -> RedriveAllowProvider:
        stack = Stack.of(scope)
        existing = stack.node.try_find_child(REDRIVE_PROVIDER_ID)
        if isinstance(existing, RedriveAllowProvider):
            return existing
        return cls(stack, REDRIVE_PROVIDER_ID, log_removal_policy=log_removal_policy)


class QueueConsumer(Construct):
    """Function + queue + DLQ (with a byQueue RedriveAllowPolicy) + event source mapping + rule."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        folder: str,
        stage: str,
        timeout: Duration,
        environment: Mapping[str, str],
        layers: Sequence[lambda_.ILayerVersion],
        log_removal_policy: RemovalPolicy,
        event_pattern: events.EventPattern | None,
        event_bus: events.IEventBus | None,
        max_concurrency: int,
        description: str,
        schedule: events.Schedule | None = None,
        bulk: bool = False,
    ) -> None:
        """``event_pattern`` routes events from ``event_bus``; or, with ``schedule`` (default bus),
        the rule puts a scheduled event on the queue at each tick. ``bulk``: batches of up to
        ``BULK_BATCH_SIZE`` records gathered for up to ``BULK_BATCHING_WINDOW`` (else ``BATCH_SIZE``)."""
        if (event_pattern is None) == (schedule is None):
            raise ValueError("give exactly one of event_pattern and schedule")
        super().__init__(scope, construct_id)
        self.consumer = R2rFunction(
            self,
            "Consumer",
            folder=folder,
            stage=stage,
            timeout=timeout,
            # The last receive before the DLQ records a still-failing message as an exception.
            environment={**environment, "MAX_RECEIVE_COUNT": str(MAX_RECEIVE_COUNT)},
            layers=layers,
            log_removal_policy=log_removal_policy,
            description=description,
        )
        self.function = self.consumer.function

        # Both queues under the stack's data key: SqsEventSource's grant_consume_messages gives the function
        # kms:Decrypt on it, and the rule target lets EventBridge (this account only) encrypt what it sends.
        key = DataKey.of(self)
        self.dlq = sqs.Queue(
            self,
            "Dlq",
            retention_period=DLQ_RETENTION,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            retention_period=SOURCE_RETENTION,
            visibility_timeout=Duration.seconds(int(timeout.to_seconds()) * VISIBILITY_FACTOR),
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=MAX_RECEIVE_COUNT),
        )
        self._allow_redrive_from_source(log_removal_policy)

        self.function.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=BULK_BATCH_SIZE if bulk else BATCH_SIZE,
                max_batching_window=BULK_BATCHING_WINDOW if bulk else None,
                report_batch_item_failures=True,
                max_concurrency=max_concurrency,
            )
        )

        self.rule = events.Rule(
            self,
            "Rule",
            description=f"{description}: route matching events to its queue",
            event_bus=event_bus,
            event_pattern=event_pattern,
            schedule=schedule,
        )
        self.rule.add_target(targets.SqsQueue(self.queue))

    def _allow_redrive_from_source(self, log_removal_policy: RemovalPolicy) -> None:
        """Set the DLQ's RedriveAllowPolicy to ``byQueue`` [source queue].

        It cannot be a property of the DLQ resource: the source queue's RedrivePolicy already
        references the DLQ's ARN, and the DLQ referencing the source's ARN back would be a
        circular dependency (without hard-coded queue names). So a custom resource sets the
        attribute once both queues exist, and again whenever the source queue is replaced.
        """
        policy = Stack.of(self).to_json_string(
            {"redrivePermission": "byQueue", "sourceQueueArns": [self.queue.queue_arn]}
        )
        call = cr.AwsSdkCall(
            service="SQS",
            action="setQueueAttributes",
            parameters={"QueueUrl": self.dlq.queue_url, "Attributes": {"RedriveAllowPolicy": policy}},
            physical_resource_id=cr.PhysicalResourceId.of("redrive-allow-policy"),
        )
        provider = RedriveAllowProvider.of(self, log_removal_policy=log_removal_policy)
        self.redrive_allow_policy = cr.AwsCustomResource(
            self,
            "DlqRedriveAllowPolicy",
            on_create=call,
            on_update=call,
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(resources=[self.dlq.queue_arn]),
            role=provider.role,
            log_group=provider.log_group,
            install_latest_aws_sdk=False,
        )
