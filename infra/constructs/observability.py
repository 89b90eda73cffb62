"""Business and technical observability: one CloudWatch dashboard and the alarms, to an SNS topic.

The dashboard puts the KPIs (EMF metrics in namespace ``r2r`` by ``Region`` / ``BusinessUnit``, see
``r2r_core.kpis``) beside the technical signals (Lambda errors, throttles and duration, queue depth,
DLQ depth and age, Step Functions failures, API 5xx). Every DLQ has a "not empty" alarm, every source
queue an "oldest message" alarm; execution failures, ERP 429s and the invoice exception rate alarm too.
All alarms go to one encrypted topic (customer managed key, so CloudWatch may publish to it).

It finds the functions, consumers, state machine and API in the stack it is added to, so it must be
created after them (``infra/stack.py`` adds it last): a consumer added later is covered without edits.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.constructs import nag
from infra.constructs.api import WebhookApi
from infra.constructs.functions import R2rFunction
from infra.constructs.queue_consumer import QueueConsumer
from infra.constructs.workflow import MilestoneToInvoice
from r2r_core import kpis

NAMESPACE = kpis.NAMESPACE
KPI_PERIOD = Duration.hours(1)
TECH_PERIOD = Duration.minutes(5)
OLDEST_MESSAGE_ALARM_S = 1800  # a source queue whose oldest message waits 30 min is stuck
ERP_THROTTLED_PER_5_MIN = 20
EXCEPTION_RATE_PERCENT = 10
# The functions that record exceptions for finance (StateStore.put_exception via r2r_core.flows.exceptions,
# connector_exceptions, reconciliation); tests/infra/test_exceptions_topic.py checks it against the handlers.
EXCEPTION_RECORDERS = frozenset(
    {
        "project_setup",
        "time_posting",
        "expense_posting",
        "milestone_trigger",
        "invoice_status_writeback",
        "exception_router",
        "reconciliation",
        "ingest_salesforce_outbound",
        "salesforce_events",
        "file_intake",
        "resource_sync",
        "psa_provisioning",
        "resource_allocation",
        "kantata_poller",
    }
)


def kpi_search(metric: str, statistic: str, period: Duration = KPI_PERIOD) -> cw.MathExpression:
    """Every series of a KPI (one per region and business unit, and per function that emits it)."""
    return cw.MathExpression(
        expression=f"SEARCH('{{{NAMESPACE},BusinessUnit,Region,service}} MetricName=\"{metric}\"', "
        f"'{statistic}', {int(period.to_seconds())})",
        using_metrics={},
        label="",
        period=period,
    )


def kpi_search_with(metric: str, extra: str, statistic: str) -> cw.MathExpression:
    return cw.MathExpression(
        expression=f"SEARCH('{{{NAMESPACE},BusinessUnit,Region,{extra},service}} MetricName=\"{metric}\"', "
        f"'{statistic}', {int(KPI_PERIOD.to_seconds())})",
        using_metrics={},
        label="",
        period=KPI_PERIOD,
    )


class Observability(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        found = stack.node.find_all()
        self.functions = [c for c in found if isinstance(c, R2rFunction)]
        self.consumers = [c for c in found if isinstance(c, QueueConsumer)]
        workflows = [c for c in found if isinstance(c, MilestoneToInvoice)]
        apis = [c for c in found if isinstance(c, WebhookApi)]

        self.key = kms.Key(
            self,
            "AlarmTopicKey",
            description="r2r alarm topic encryption (CloudWatch alarms may use it to publish)",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*"
        )
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="r2r alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        action = cw_actions.SnsAction(self.topic)
        # Exceptions for finance: a short notice per new exception (r2r_core.notify), on a topic of its own so
        # finance subscribes to exceptions and on-call to alarms. Every function that records exceptions gets
        # the topic in EXCEPTIONS_TOPIC_ARN and publish rights on it (and the key), nothing more.
        self.exceptions_topic = sns.Topic(
            self,
            "ExceptionsTopic",
            display_name="r2r exceptions for finance",
            master_key=self.key,
            enforce_ssl=True,
        )
        for function in self.functions:
            if function.folder in EXCEPTION_RECORDERS:
                function.function.add_environment("EXCEPTIONS_TOPIC_ARN", self.exceptions_topic.topic_arn)
                self.exceptions_topic.grant_publish(function.function)
                policy = function.role.node.try_find_child("DefaultPolicy")
                if policy is not None:
                    nag.acknowledge(
                        policy,
                        "IAM5",
                        "publishing to the KMS-encrypted exceptions topic needs kms:GenerateDataKey* (CDK's "
                        "grant_publish); the statement is limited to the one topic key.",
                        findings=["Action::kms:GenerateDataKey*"],
                    )
        self.alarms: list[cw.Alarm] = []

        def alarm(construct_id: str, metric: cw.IMetric, *, threshold: float, description: str) -> cw.Alarm:
            created = cw.Alarm(
                self,
                construct_id,
                metric=metric,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            created.add_alarm_action(action)
            self.alarms.append(created)
            return created

        for consumer in self.consumers:
            name = consumer.node.id
            alarm(
                f"{name}DlqNotEmpty",
                consumer.dlq.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic="Maximum"
                ),
                threshold=1,
                description=f"{consumer.consumer.folder}: messages in the DLQ. Find the exception for "
                "finance, fix the cause, then 'Start DLQ redrive' in the SQS console.",
            )
            alarm(
                f"{name}OldestMessage",
                consumer.queue.metric_approximate_age_of_oldest_message(
                    period=TECH_PERIOD, statistic="Maximum"
                ),
                threshold=OLDEST_MESSAGE_ALARM_S,
                description=f"{consumer.consumer.folder}: a message waits over "
                f"{OLDEST_MESSAGE_ALARM_S // 60} min (consumer failing or throttled by the ERP share).",
            )
        for workflow in workflows:
            machine = workflow.state_machine
            alarm(
                f"{workflow.node.id}ExecutionsFailed",
                cw.MathExpression(
                    expression="failed + timedout + aborted",
                    using_metrics={
                        "failed": machine.metric_failed(period=TECH_PERIOD, statistic="Sum"),
                        "timedout": machine.metric_timed_out(period=TECH_PERIOD, statistic="Sum"),
                        "aborted": machine.metric_aborted(period=TECH_PERIOD, statistic="Sum"),
                    },
                    label="executions failed, timed out or aborted",
                    period=TECH_PERIOD,
                ),
                threshold=1,
                description="milestone-to-invoice: an execution failed; the exception for finance names "
                "the cause; redrive the execution from the console once fixed.",
            )
        alarm(
            "ErpThrottled",
            cw.Metric(
                namespace=NAMESPACE, metric_name=kpis.ERP_THROTTLED, statistic="Sum", period=TECH_PERIOD
            ),
            threshold=ERP_THROTTLED_PER_5_MIN,
            description=f"NetSuite answered 429 at least {ERP_THROTTLED_PER_5_MIN} times in 5 min: r2r's "
            "share (erpConcurrencyShare) plus other integrations exceed the account's concurrency limit.",
        )
        alarm(
            "InvoiceExceptionRate",
            cw.Metric(
                namespace=NAMESPACE,
                metric_name=kpis.INVOICE_EXCEPTION_RATE,
                statistic="Average",
                period=Duration.hours(6),
            ),
            threshold=EXCEPTION_RATE_PERCENT,
            description=f"Over {EXCEPTION_RATE_PERCENT} % of invoice runs failed in 6 h (see exceptions).",
        )

        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.days(7))
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown="# r2r: resource to revenue\nKPIs by region and business unit (namespace `r2r`), "
                "then the technical signals. Runbook: README, *Observability*.",
                width=24,
                height=2,
            )
        )
        kpi_widgets: list[cw.IWidget] = [
            self._graph(
                "Time to bill after approval (days, oldest entry)", kpi_search(kpis.TIME_TO_BILL, "Maximum")
            ),
            self._graph(
                "Approved-time aging at invoice (days)", kpi_search(kpis.APPROVED_TIME_AGING, "Average")
            ),
            self._graph(
                "Billing trigger latency (s, milestone to invoice)",
                kpi_search(kpis.BILLING_TRIGGER_LATENCY, "Average"),
            ),
            self._graph("Invoice exception rate (%)", kpi_search(kpis.INVOICE_EXCEPTION_RATE, "Average")),
            self._graph(
                "Sync success by source system", kpi_search_with(kpis.SYNC_SUCCESS, "SourceSystem", "Sum")
            ),
            self._graph(
                "Sync failure by source system", kpi_search_with(kpis.SYNC_FAILURE, "SourceSystem", "Sum")
            ),
            self._graph("Utilization (%)", kpi_search(kpis.UTILIZATION, "Average")),
            self._graph(
                "Backlog (contract value not billed)", kpi_search_with(kpis.BACKLOG, "Currency", "Minimum")
            ),
            self._graph("Billed revenue", kpi_search_with(kpis.BILLED_REVENUE, "Currency", "Sum")),
            self._graph("Margin (%)", kpi_search(kpis.MARGIN_PERCENT, "Average")),
            self._graph("Write-off (%)", kpi_search(kpis.WRITE_OFF_PERCENT, "Average")),
            self._graph("Project-setup accuracy (%)", kpi_search(kpis.PROJECT_SETUP_ACCURACY, "Average")),
            self._graph("Days to collect (invoice to paid)", kpi_search(kpis.DAYS_TO_COLLECT, "Average")),
            self._graph(
                "Revenue leakage: approved, unbilled (by age)",
                kpi_search_with(kpis.UNBILLED_APPROVED_AMOUNT, "AgeBucket", "Maximum"),
            ),
        ]
        self.dashboard.add_widgets(*kpi_widgets)

        dlqs = [
            c.dlq.metric_approximate_number_of_messages_visible(statistic="Maximum") for c in self.consumers
        ]
        queues = [
            c.queue.metric_approximate_number_of_messages_visible(statistic="Maximum") for c in self.consumers
        ]
        ages = [c.dlq.metric_approximate_age_of_oldest_message(statistic="Maximum") for c in self.consumers]
        technical: list[cw.IWidget] = [
            self._graph(
                "Lambda errors", *[f.function.metric_errors(statistic="Sum") for f in self.functions]
            ),
            self._graph(
                "Lambda throttles", *[f.function.metric_throttles(statistic="Sum") for f in self.functions]
            ),
            self._graph(
                "Lambda duration p95", *[f.function.metric_duration(statistic="p95") for f in self.functions]
            ),
            self._graph("Queue depth", *queues),
            self._graph("DLQ depth", *dlqs),
            self._graph("DLQ oldest message age (s)", *ages),
            self._graph(
                "ERP 429s",
                cw.Metric(
                    namespace=NAMESPACE, metric_name=kpis.ERP_THROTTLED, statistic="Sum", period=TECH_PERIOD
                ),
            ),
        ]
        for workflow in workflows:
            machine = workflow.state_machine
            technical.append(
                self._graph(
                    "Invoice runs: failed / timed out / succeeded",
                    machine.metric_failed(statistic="Sum"),
                    machine.metric_timed_out(statistic="Sum"),
                    machine.metric_succeeded(statistic="Sum"),
                )
            )
        for api in apis:
            technical.append(
                self._graph(
                    "Webhook API 4xx / 5xx",
                    api.api.metric_client_error(statistic="Sum"),
                    api.api.metric_server_error(statistic="Sum"),
                )
            )
        technical.append(cw.AlarmStatusWidget(alarms=list(self.alarms), title="Alarms", width=24))
        self.dashboard.add_widgets(*technical)

    @staticmethod
    def _graph(title: str, *metrics: cw.IMetric) -> cw.GraphWidget:
        return cw.GraphWidget(title=title, left=list(metrics), width=8, height=6)
