"""The r2r stack (``r2r-<stage>``): webhook intake, canonical bus, consumers, invoice workflow.

Wiring only: each concern is a construct in ``infra.constructs``; permissions are granted
here with ``grant_*`` and nothing has a hard-coded physical name. The environment each
function gets is the contract of docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_cdk import CfnElement, CfnOutput, Duration, RemovalPolicy, Stack, Tags
from aws_cdk import aws_events as events
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.constructs import nag
from infra.constructs.analytics import AnalyticsFeed
from infra.constructs.api import WebhookApi
from infra.constructs.connectors import SalesforceEventRelayIntake, SalesforceOutboundListener
from infra.constructs.encryption import DATA_KEY_ID, DataKey, acknowledge_key_grants
from infra.constructs.eventbus import CANONICAL_SOURCE, CanonicalEventBus
from infra.constructs.functions import R2rFunction
from infra.constructs.layers import LambdaLayers
from infra.constructs.observability import Observability
from infra.constructs.operator_api import FINANCE_OPS, INTEGRATION_ADMIN, READ_ONLY, OperatorApi
from infra.constructs.queue_consumer import QueueConsumer
from infra.constructs.secrets import IntegrationSecrets
from infra.constructs.settings import StageSettings
from infra.constructs.storage import RawArchive
from infra.constructs.tables import DataTables
from infra.constructs.workflow import MilestoneToInvoice
from r2r_core.model.events import EVENT_TYPES

INGEST_TIMEOUT = Duration.seconds(10)
CONSUMER_TIMEOUT = Duration.seconds(30)
# The period close posts a month's time summaries (summary posting mode): e.g. 1,000 records at 300 ms,
# two at a time, fit one invocation; more are picked up by the tick's retry.
PERIOD_CLOSE_TIMEOUT = Duration.minutes(5)
WORKFLOW_TIMEOUT = Duration.seconds(60)
DEFAULT_CONSUMER_CONCURRENCY = 5
# The poller reads the ERP (SuiteQL) and serialises itself on a watermark: the smallest share.
POLLER_CONCURRENCY = 2
# The Kantata poller pages through a backlog and rides out 429s (backoff, Retry-After): a longer budget;
# it stops paging 20 s before it (the watermark holds the pages done) and the next tick goes on.
KANTATA_POLLER_TIMEOUT = Duration.minutes(2)
FAILED_EXECUTION_STATUSES = ["FAILED", "TIMED_OUT", "ABORTED"]
# Raw-archive prefixes whose new objects are file drops (r2r_core.connectors.files.PARSERS).
FILE_DROP_PREFIXES = ("inbound/workday/", "inbound/timesheets/", "inbound/expenses/")

# Output names the local stack and operators rely on.
OUTPUT_API_URL = "ApiUrl"
OUTPUT_EVENT_BUS_NAME = "EventBusName"
OUTPUT_STATE_MACHINE_ARN = "StateMachineArn"
OUTPUT_RAW_BUCKET_NAME = "RawBucketName"
OUTPUT_DATA_KEY_ARN = "DataKeyArn"
OUTPUT_OPERATOR_API_URL = "OperatorApiUrl"
OUTPUT_FINANCE_OPS_ROLE_ARN = "FinanceOpsRoleArn"
OUTPUT_INTEGRATION_ADMIN_ROLE_ARN = "IntegrationAdminRoleArn"
OUTPUT_READ_ONLY_ROLE_ARN = "ReadOnlyRoleArn"
OUTPUT_ANALYTICS_BUCKET_NAME = "AnalyticsBucketName"
OUTPUT_ANALYTICS_DATABASE = "AnalyticsDatabase"


def _canonical_pattern(detail_type: str) -> events.EventPattern:
    return events.EventPattern(source=[CANONICAL_SOURCE], detail_type=[detail_type])


class R2rStack(Stack):
    # The wiring reads top to bottom in one place; each concern is already its own construct.
    def __init__(self, scope: Construct, construct_id: str, *, settings: StageSettings) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"r2r ({settings.stage}): SaaS webhooks to NetSuite, serverless",
        )
        self.settings = settings
        Tags.of(self).add("r2r:stage", settings.stage)

        # Data (tables, archive, secrets, logs) outlives the stack unless the stage says otherwise.
        retain = RemovalPolicy.DESTROY if settings.remove_data_on_destroy else RemovalPolicy.RETAIN
        logs_removal = retain

        # The customer-managed key of everything at rest; constructs find it with DataKey.of(scope).
        data_key = DataKey(self, DATA_KEY_ID, removal_policy=retain)
        layers = LambdaLayers(self, "Layers")
        shared_layers = [layers.core, layers.deps]
        tables = DataTables(self, "Tables", removal_policy=retain)
        secrets = IntegrationSecrets(self, "Secrets", removal_policy=retain)
        archive = RawArchive(self, "RawArchive", removal_policy=retain)
        canonical = CanonicalEventBus(self, "CanonicalEvents")
        bus = canonical.bus

        # --- webhook intake -------------------------------------------------------------
        ingest = R2rFunction(
            self,
            "IngestWebhook",
            folder="ingest_webhook",
            stage=settings.stage,
            timeout=INGEST_TIMEOUT,
            description="r2r ingest_webhook: verify, archive, validate, dedupe, publish",
            layers=shared_layers,
            log_removal_policy=logs_removal,
            environment={
                "RAW_BUCKET_NAME": archive.bucket.bucket_name,
                "EVENT_BUS_NAME": bus.event_bus_name,
                "IDEMPOTENCY_TABLE_NAME": tables.idempotency.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "WEBHOOK_SECRETS_ARN": secrets.webhook_secrets.secret_arn,
            },
        )
        archive.bucket.grant_put(ingest.function)
        bus.grant_put_events_to(ingest.function)
        tables.idempotency.grant_read_write_data(ingest.function)
        tables.audit.grant_read_write_data(ingest.function)
        secrets.webhook_secrets.grant_read(ingest.function)
        self._acknowledge_bucket_put(ingest, archive)

        api = WebhookApi(
            self,
            "Webhooks",
            handler=ingest.function,
            stage_name=settings.stage,
            rate_limit=settings.api_rate_limit,
            burst_limit=settings.api_burst_limit,
            log_removal_policy=logs_removal,
        )

        # Lineage, exceptions and KPIs for operators, behind IAM authorization (three roles).
        operator_api = OperatorApi(
            self,
            "OperatorApi",
            api=api,
            tables=tables,
            layers=shared_layers,
            stage=settings.stage,
            log_removal_policy=logs_removal,
            trusted_principal_arn=settings.operator_principal_arn,
        )

        # --- invoice workflow -----------------------------------------------------------
        invoice = R2rFunction(
            self,
            "InvoiceWorkflow",
            folder="invoice_workflow",
            stage=settings.stage,
            timeout=WORKFLOW_TIMEOUT,
            description="r2r invoice_workflow: the milestone-to-invoice steps",
            layers=shared_layers,
            log_removal_policy=logs_removal,
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "EVENT_BUS_NAME": bus.event_bus_name,
                "ERP_SECRET_ARN": secrets.erp_credentials.secret_arn,
                "ERP_BASE_URL": settings.erp_base_url,
            },
        )
        tables.grant_state_and_audit(invoice.function)
        bus.grant_put_events_to(invoice.function)
        secrets.erp_credentials.grant_read(invoice.function)

        workflow = MilestoneToInvoice(
            self, "MilestoneToInvoice", invoice_workflow=invoice.function, log_removal_policy=logs_removal
        )
        state_machine = workflow.state_machine

        # --- queue consumers ------------------------------------------------------------
        def consumer(
            construct_id: str,
            folder: str,
            *,
            environment: dict[str, str],
            event_pattern: events.EventPattern | None,
            event_bus: events.IEventBus | None,
            max_concurrency: int,
            description: str,
            schedule: events.Schedule | None = None,
            timeout: Duration = CONSUMER_TIMEOUT,
            bulk: bool = False,
        ) -> QueueConsumer:
            return QueueConsumer(
                self,
                construct_id,
                folder=folder,
                stage=settings.stage,
                timeout=timeout,
                environment=environment,
                layers=shared_layers,
                log_removal_policy=logs_removal,
                event_pattern=event_pattern,
                event_bus=event_bus,
                max_concurrency=max_concurrency,
                description=description,
                schedule=schedule,
                bulk=bulk,
            )

        erp_writer_environment = {
            "STATE_TABLE_NAME": tables.state.table_name,
            "AUDIT_TABLE_NAME": tables.audit.table_name,
            "IDEMPOTENCY_TABLE_NAME": tables.idempotency.table_name,
            "EVENT_BUS_NAME": bus.event_bus_name,
            "ERP_SECRET_ARN": secrets.erp_credentials.secret_arn,
            "ERP_BASE_URL": settings.erp_base_url,
        }
        project_setup = consumer(
            "ProjectSetup",
            "project_setup",
            environment=dict(erp_writer_environment),
            event_pattern=_canonical_pattern("opportunity.closed_won"),
            event_bus=bus,
            max_concurrency=settings.erp_concurrency_share,
            description="r2r project_setup: ERP customer + job from a closed-won opportunity",
        )
        # time_posting and expense_posting are idempotent by source record version (the charge item's
        # conditional, versioned write): no idempotency record, so no idempotency table (least privilege).
        versioned_environment = {
            k: v for k, v in erp_writer_environment.items() if k != "IDEMPOTENCY_TABLE_NAME"
        }
        time_posting = consumer(
            "TimePosting",
            "time_posting",
            environment=dict(versioned_environment),
            event_pattern=_canonical_pattern("time_entry.approved"),
            event_bus=bus,
            max_concurrency=settings.erp_concurrency_share,
            description="r2r time_posting: billing decision and ERP timeBill per approved entry",
            bulk=True,  # month-end: thousands of entries at once
        )
        expense_posting = consumer(
            "ExpensePosting",
            "expense_posting",
            environment=dict(versioned_environment),
            event_pattern=_canonical_pattern("expense.approved"),
            event_bus=bus,
            max_concurrency=settings.erp_concurrency_share,
            description="r2r expense_posting: billing decision and ERP expenseReport per approved expense",
        )
        for erp_writer in (project_setup, time_posting, expense_posting):
            tables.grant_state_and_audit(erp_writer.function, idempotency=erp_writer is project_setup)
            bus.grant_put_events_to(erp_writer.function)
            secrets.erp_credentials.grant_read(erp_writer.function)

        milestone_trigger = consumer(
            "MilestoneTrigger",
            "milestone_trigger",
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "IDEMPOTENCY_TABLE_NAME": tables.idempotency.table_name,
                "STATE_MACHINE_ARN": state_machine.state_machine_arn,
                # A milestone accepted after its invoice: the acceptance revenue is published from here.
                "EVENT_BUS_NAME": bus.event_bus_name,
            },
            event_pattern=_canonical_pattern("milestone.completed"),
            event_bus=bus,
            max_concurrency=DEFAULT_CONSUMER_CONCURRENCY,
            description="r2r milestone_trigger: start milestone-to-invoice per completed milestone",
        )
        tables.grant_state_and_audit(milestone_trigger.function, idempotency=True)
        state_machine.grant_start_execution(milestone_trigger.function)
        bus.grant_put_events_to(milestone_trigger.function)

        # Period-end billing: a daily tick starts one milestone-to-invoice run (input ``period_end``) per
        # contract billed monthly whose ended period has unbilled charges, and posts the ended periods'
        # pending time summaries (accounts in summary posting mode) to the ERP.
        billing_period_close = consumer(
            "BillingPeriodClose",
            "billing_period_close",
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "STATE_MACHINE_ARN": state_machine.state_machine_arn,
                "ERP_SECRET_ARN": secrets.erp_credentials.secret_arn,
                "ERP_BASE_URL": settings.erp_base_url,
                # The period-end flush posts a month's time summaries at once: as many at a time as an
                # ERP-writing consumer may have in flight.
                "ERP_CONCURRENCY_SHARE": str(settings.erp_concurrency_share),
                # Summary posting publishes the revenue of each summary record it posts.
                "EVENT_BUS_NAME": bus.event_bus_name,
            },
            event_pattern=None,
            schedule=events.Schedule.rate(Duration.days(1)),
            event_bus=None,
            max_concurrency=min(POLLER_CONCURRENCY, settings.erp_concurrency_share),
            description="r2r billing_period_close: period-end invoice runs and time summary postings",
            timeout=PERIOD_CLOSE_TIMEOUT,
        )
        for grant in (
            tables.grant_state_and_audit,
            state_machine.grant_start_execution,
            secrets.erp_credentials.grant_read,
            bus.grant_put_events_to,
        ):
            grant(billing_period_close.function)

        exception_router = consumer(
            "ExceptionRouter",
            "exception_router",
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
            },
            # The default bus: that is where Step Functions emits execution status changes.
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": FAILED_EXECUTION_STATUSES,
                    "stateMachineArn": [state_machine.state_machine_arn],
                },
            ),
            event_bus=None,
            max_concurrency=DEFAULT_CONSUMER_CONCURRENCY,
            description="r2r exception_router: exception record for failed invoice runs",
        )
        tables.grant_state_and_audit(exception_router.function)

        self._invoice_status_sync(consumer, settings=settings, tables=tables, secrets=secrets, bus=bus)

        # --- connectors in the source systems' wire formats -----------------------------
        self._salesforce_connectors(
            settings=settings,
            api=api,
            tables=tables,
            archive=archive,
            bus=bus,
            secrets=secrets,
            layers=shared_layers,
            removal_policy=logs_removal,
        )

        self._reconciliation_and_observability(
            consumer,
            settings=settings,
            tables=tables,
            secrets=secrets,
            removal_policy=retain,
            file_drops=lambda: self._file_and_polled_connectors(
                consumer, settings=settings, tables=tables, secrets=secrets, archive=archive, bus=bus
            ),
            # Outbound provisioning (PSA project, ERP allocations) and the analytics feed.
            outbound=lambda: self._provisioning(
                consumer,
                settings=settings,
                tables=tables,
                secrets=secrets,
                bus=bus,
                erp_writer_environment=erp_writer_environment,
                analytics_feed=lambda: self._analytics_feed(
                    bus=bus, archive=archive, settings=settings, removal_policy=retain
                ),
            ),
        )

        # Every grant is made: acknowledge the KMS action wildcards of grant_* where a policy holds them.
        acknowledge_key_grants(self)

        # --- outputs --------------------------------------------------------------------
        self._outputs(
            api=api,
            bus=bus,
            state_machine=state_machine,
            archive=archive,
            data_key=data_key,
            operator_api=operator_api,
        )

    def _outputs(
        self,
        *,
        api: WebhookApi,
        bus: events.IEventBus,
        state_machine: sfn.IStateMachine,
        archive: RawArchive,
        data_key: DataKey,
        operator_api: OperatorApi,
    ) -> None:
        CfnOutput(self, OUTPUT_API_URL, value=api.webhook_base_url, description="POST <ApiUrl>/<source>")
        CfnOutput(self, OUTPUT_EVENT_BUS_NAME, value=bus.event_bus_name, description="canonical bus")
        CfnOutput(
            self,
            OUTPUT_STATE_MACHINE_ARN,
            value=state_machine.state_machine_arn,
            description="milestone-to-invoice",
        )
        CfnOutput(self, OUTPUT_RAW_BUCKET_NAME, value=archive.bucket.bucket_name, description="raw archive")
        CfnOutput(
            self,
            OUTPUT_DATA_KEY_ARN,
            value=data_key.key.key_arn,
            description="KMS key of queues, tables, raw archive, event bus, secrets and log groups",
        )
        self._operator_outputs(operator_api)

    def _operator_outputs(self, operator_api: OperatorApi) -> None:
        CfnOutput(
            self, OUTPUT_OPERATOR_API_URL, value=operator_api.url, description="<OperatorApiUrl>/kpis (SigV4)"
        )
        for label, output in (
            (FINANCE_OPS, OUTPUT_FINANCE_OPS_ROLE_ARN),
            (INTEGRATION_ADMIN, OUTPUT_INTEGRATION_ADMIN_ROLE_ARN),
            (READ_ONLY, OUTPUT_READ_ONLY_ROLE_ARN),
        ):
            CfnOutput(
                self,
                output,
                value=operator_api.roles[label].role_arn,
                description=f"operator API role {label}: assume it, then sign requests (SigV4, execute-api)",
            )

    def _salesforce_connectors(
        self,
        *,
        settings: StageSettings,
        api: WebhookApi,
        tables: DataTables,
        archive: RawArchive,
        bus: events.IEventBus,
        secrets: IntegrationSecrets,
        layers: list[Any],
        removal_policy: RemovalPolicy,
    ) -> None:
        """Salesforce (CRM and Certinia PSA) in its own wire formats: Outbound Messages (SOAP webhook on the
        API) and Change Data Capture through Event Relay (partner bus → queue → re-read and map)."""
        SalesforceOutboundListener(
            self,
            "SalesforceOutbound",
            api=api,
            tables=tables,
            archive=archive,
            bus=bus,
            layers=layers,
            stage=settings.stage,
            removal_policy=removal_policy,
            integration_user_ids=settings.salesforce_integration_user_ids,
        )
        SalesforceEventRelayIntake(
            self,
            "SalesforceEventRelay",
            event_source_name=settings.salesforce_event_source_name,
            tables=tables,
            archive=archive,
            bus=bus,
            salesforce_credentials=secrets.salesforce_credentials,
            salesforce_base_url=settings.salesforce_base_url,
            layers=layers,
            stage=settings.stage,
            removal_policy=removal_policy,
            max_concurrency=DEFAULT_CONSUMER_CONCURRENCY,
        )

    def _invoice_status_sync(
        self,
        consumer: Callable[..., QueueConsumer],
        *,
        settings: StageSettings,
        tables: DataTables,
        secrets: IntegrationSecrets,
        bus: events.IEventBus,
    ) -> None:
        """ERP -> CRM and PSA: a schedule rule ticks the poller's queue (own DLQ); the poller reads
        invoice status with SuiteQL and publishes ``invoice.status_changed``; the write-back consumer
        updates Salesforce (CRM opportunity, Certinia billing event). Neither writes to the ERP."""
        status_poller = consumer(
            "InvoiceStatusPoller",
            "invoice_status_poller",
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "EVENT_BUS_NAME": bus.event_bus_name,
                "ERP_SECRET_ARN": secrets.erp_credentials.secret_arn,
                "ERP_BASE_URL": settings.erp_base_url,
            },
            event_pattern=None,
            schedule=events.Schedule.rate(Duration.minutes(settings.invoice_status_poll_minutes)),
            event_bus=None,
            max_concurrency=min(POLLER_CONCURRENCY, settings.erp_concurrency_share),
            description="r2r invoice_status_poller: SuiteQL poll of invoice status changes (ERP read only)",
        )
        tables.grant_state_and_audit(status_poller.function)
        bus.grant_put_events_to(status_poller.function)
        secrets.erp_credentials.grant_read(status_poller.function)

        status_writeback = consumer(
            "InvoiceStatusWriteback",
            "invoice_status_writeback",
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "IDEMPOTENCY_TABLE_NAME": tables.idempotency.table_name,
                "SALESFORCE_SECRET_ARN": secrets.salesforce_credentials.secret_arn,
                "SALESFORCE_BASE_URL": settings.salesforce_base_url,
            },
            event_pattern=_canonical_pattern("invoice.status_changed"),
            event_bus=bus,
            max_concurrency=DEFAULT_CONSUMER_CONCURRENCY,
            description="r2r invoice_status_writeback: invoice status to CRM opportunity, PSA billing event",
        )
        tables.grant_state_and_audit(status_writeback.function, idempotency=True)
        secrets.salesforce_credentials.grant_read(status_writeback.function)

    def _analytics_feed(
        self,
        *,
        bus: events.IEventBus,
        archive: RawArchive,
        settings: StageSettings,
        removal_policy: RemovalPolicy,
    ) -> None:
        """Every canonical event to S3 for analytics (rule -> Firehose -> bucket, Glue table for Athena)."""
        analytics = AnalyticsFeed(
            self,
            "AnalyticsFeed",
            bus=bus,
            stage=settings.stage,
            event_types=sorted(EVENT_TYPES),
            access_logs=archive.access_logs,
            removal_policy=removal_policy,
        )
        CfnOutput(
            self,
            OUTPUT_ANALYTICS_BUCKET_NAME,
            value=analytics.bucket.bucket_name,
            description="analytics feed: events/type=<type>/dt=<yyyy-mm-dd>/",
        )
        CfnOutput(
            self,
            OUTPUT_ANALYTICS_DATABASE,
            value=analytics.database_name,
            description="Glue database of the analytics feed (table canonical_events, for Athena)",
        )

    def _provisioning(
        self,
        consumer: Callable[..., QueueConsumer],
        *,
        settings: StageSettings,
        tables: DataTables,
        secrets: IntegrationSecrets,
        bus: events.IEventBus,
        erp_writer_environment: dict[str, str],
        analytics_feed: Callable[[], None],
    ) -> None:
        """Outbound provisioning: a closed-won deal's project in the PSA (its own consumer of
        ``opportunity.closed_won``, so a Salesforce outage never holds up the ERP set-up and each retries
        alone), and assignments as ERP resource allocations with the project's cost forecast."""
        psa_provisioning = consumer(
            "PsaProvisioning",
            "psa_provisioning",
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "IDEMPOTENCY_TABLE_NAME": tables.idempotency.table_name,
                "SALESFORCE_SECRET_ARN": secrets.salesforce_credentials.secret_arn,
                "SALESFORCE_BASE_URL": settings.salesforce_base_url,
            },
            event_pattern=_canonical_pattern("opportunity.closed_won"),
            event_bus=bus,
            max_concurrency=DEFAULT_CONSUMER_CONCURRENCY,
            description="r2r psa_provisioning: Certinia pse__Proj__c from a closed-won opportunity",
        )
        tables.grant_state_and_audit(psa_provisioning.function, idempotency=True)
        secrets.salesforce_credentials.grant_read(psa_provisioning.function)

        resource_allocation = consumer(
            "ResourceAllocation",
            "resource_allocation",
            environment={k: v for k, v in erp_writer_environment.items() if k != "EVENT_BUS_NAME"},
            event_pattern=_canonical_pattern("assignment.upserted"),
            event_bus=bus,
            max_concurrency=settings.erp_master_data_share,
            description="r2r resource_allocation: ERP resourceAllocation and project cost forecast",
        )
        tables.grant_state_and_audit(resource_allocation.function, idempotency=True)
        secrets.erp_credentials.grant_read(resource_allocation.function)
        analytics_feed()

    def _file_and_polled_connectors(
        self,
        consumer: Callable[..., QueueConsumer],
        *,
        settings: StageSettings,
        tables: DataTables,
        secrets: IntegrationSecrets,
        archive: RawArchive,
        bus: events.IEventBus,
    ) -> None:
        self._file_drops(
            consumer, tables=tables, secrets=secrets, settings=settings, archive=archive, bus=bus
        )
        self._kantata_poller(
            consumer, settings=settings, tables=tables, secrets=secrets, archive=archive, bus=bus
        )

    def _kantata_poller(
        self,
        consumer: Callable[..., QueueConsumer],
        *,
        settings: StageSettings,
        tables: DataTables,
        secrets: IntegrationSecrets,
        archive: RawArchive,
        bus: events.IEventBus,
    ) -> None:
        """Kantata OX has no webhooks: a schedule rule (every ``kantataPollMinutes``, default 5) ticks
        the poller's queue (own DLQ); the poller reads workspaces, time entries and expenses changed
        since its watermarks (StateTable ``SYNC#kantata#<resource>``), archives each raw page under
        ``raw/kantata/`` and publishes canonical events on the canonical bus, where time_posting and
        expense_posting bill them like any other source. It never writes to Kantata or the ERP."""
        poller = consumer(
            "KantataPoller",
            "kantata_poller",
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "EVENT_BUS_NAME": bus.event_bus_name,
                "RAW_BUCKET_NAME": archive.bucket.bucket_name,
                "KANTATA_SECRET_ARN": secrets.kantata_credentials.secret_arn,
                "KANTATA_BASE_URL": settings.kantata_base_url,
                "KANTATA_PAGE_SIZE": str(settings.kantata_page_size),
            },
            event_pattern=None,
            schedule=events.Schedule.rate(Duration.minutes(settings.kantata_poll_minutes)),
            event_bus=None,
            # One poll at a time is enough (the watermark serialises them); 2 is Lambda's minimum.
            max_concurrency=POLLER_CONCURRENCY,
            description="r2r kantata_poller: Kantata OX time, expenses, workspaces to canonical events",
            timeout=KANTATA_POLLER_TIMEOUT,
        )
        tables.grant_state_and_audit(poller.function)
        bus.grant_put_events_to(poller.function)
        secrets.kantata_credentials.grant_read(poller.function)
        archive.bucket.grant_put(poller.function, "raw/kantata/*")
        cfn_bucket = archive.bucket.node.default_child
        assert isinstance(cfn_bucket, CfnElement)
        bucket_id = self.get_logical_id(cfn_bucket)
        nag.acknowledge(
            poller.consumer.role.node.find_child("DefaultPolicy"),
            "IAM5",
            "grant_put on the raw archive's raw/kantata/ prefix only: each polled page is archived under a "
            "key only known at run time (raw/kantata/<date>/<resource>-<poll>-p<n>); s3:Abort* lets the "
            "SDK abort its own failed multipart uploads.",
            findings=[f"Resource::<{bucket_id}.Arn>/raw/kantata/*", "Action::s3:Abort*"],
        )

    def _file_drops(
        self,
        consumer: Callable[..., QueueConsumer],
        *,
        tables: DataTables,
        secrets: IntegrationSecrets,
        settings: StageSettings,
        archive: RawArchive,
        bus: events.IEventBus,
    ) -> None:
        """File drops in the raw archive (Workday worker extracts, managed time and expense CSVs): S3 tells
        the default bus, a rule per watched prefix set feeds the intake's queue (own DLQ); the intake reads
        the object, parses it row by row and publishes canonical events. ``resource_sync`` keeps the HRIS
        status of each worker (``RES#<id>``), which time posting checks."""
        file_intake = consumer(
            "FileIntake",
            "file_intake",
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "EVENT_BUS_NAME": bus.event_bus_name,
            },
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [archive.bucket.bucket_name]},
                    "object": {"key": [{"prefix": prefix} for prefix in FILE_DROP_PREFIXES]},
                },
            ),
            event_bus=None,
            max_concurrency=DEFAULT_CONSUMER_CONCURRENCY,
            description="r2r file_intake: dropped Workday / time / expense files to canonical events",
        )
        tables.grant_state_and_audit(file_intake.function)
        bus.grant_put_events_to(file_intake.function)
        for prefix in FILE_DROP_PREFIXES:
            archive.bucket.grant_read(file_intake.function, f"{prefix}*")
        cfn_bucket = archive.bucket.node.default_child
        assert isinstance(cfn_bucket, CfnElement)
        bucket_id = self.get_logical_id(cfn_bucket)
        nag.acknowledge(
            file_intake.consumer.role.node.find_child("DefaultPolicy"),
            "IAM5",
            "grant_read on the watched prefixes of the raw archive only: file names are chosen by the "
            "sender, so each prefix is '<bucket arn>/<prefix>*'; s3:GetObject*/GetBucket*/List* are the "
            "read actions CDK's grant_read names.",
            findings=[
                *(f"Resource::<{bucket_id}.Arn>/{prefix}*" for prefix in FILE_DROP_PREFIXES),
                "Action::s3:GetObject*",
                "Action::s3:GetBucket*",
                "Action::s3:List*",
            ],
        )

        # event_bridge_enabled makes CDK add its one bucket-notifications handler (a provider of
        # Custom::S3BucketNotifications); its role always gets the basic execution managed policy.
        for child in self.node.children:
            if child.node.id.startswith("BucketNotificationsHandler"):
                nag.acknowledge(
                    child,
                    "IAM4",
                    "CDK's BucketNotificationsHandler (turns on the raw archive's EventBridge notifications "
                    "on deploy) always attaches AWSLambdaBasicExecutionRole to its role, even to a role "
                    "passed in; the policy only allows writing CloudWatch logs.",
                    findings=[
                        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
                    ],
                )

        resource_sync = consumer(
            "ResourceSync",
            "resource_sync",
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "IDEMPOTENCY_TABLE_NAME": tables.idempotency.table_name,
                "ERP_SECRET_ARN": secrets.erp_credentials.secret_arn,
                "ERP_BASE_URL": settings.erp_base_url,
            },
            event_pattern=events.EventPattern(
                source=[CANONICAL_SOURCE], detail_type=["resource.upserted", "resource.terminated"]
            ),
            event_bus=bus,
            max_concurrency=settings.erp_master_data_share,
            description="r2r resource_sync: HRIS status and cost rate of each worker, its ERP employee",
        )
        tables.grant_state_and_audit(resource_sync.function, idempotency=True)
        secrets.erp_credentials.grant_read(resource_sync.function)

    def _reconciliation_and_observability(
        self,
        consumer: Callable[..., QueueConsumer],
        *,
        settings: StageSettings,
        tables: DataTables,
        secrets: IntegrationSecrets,
        removal_policy: RemovalPolicy,
        file_drops: Callable[[], None],
        outbound: Callable[[], None],
    ) -> None:
        """The file-drop and Kantata (polled) connectors, outbound provisioning and the analytics feed,
        daily reconciliation (schedule rule -> queue with DLQ -> function, ERP read only), then the
        dashboard and alarms, which find every function, consumer and DLQ created before them."""
        file_drops()
        outbound()
        reconciliation = consumer(
            "Reconciliation",
            "reconciliation",
            environment={
                "STATE_TABLE_NAME": tables.state.table_name,
                "AUDIT_TABLE_NAME": tables.audit.table_name,
                "ERP_SECRET_ARN": secrets.erp_credentials.secret_arn,
                "ERP_BASE_URL": settings.erp_base_url,
            },
            event_pattern=None,
            schedule=events.Schedule.rate(Duration.days(1)),
            event_bus=None,
            max_concurrency=min(POLLER_CONCURRENCY, settings.erp_concurrency_share),
            description="r2r reconciliation: approved work in r2r against ERP charges and invoices (daily)",
        )
        tables.grant_state_and_audit(reconciliation.function)
        secrets.erp_credentials.grant_read(reconciliation.function)
        Observability(self, "Observability", removal_policy=removal_policy)

    def _acknowledge_bucket_put(self, function: R2rFunction, archive: RawArchive) -> None:
        policy = function.role.node.find_child("DefaultPolicy")
        cfn_bucket = archive.bucket.node.default_child
        assert isinstance(cfn_bucket, CfnElement)
        bucket_id = self.get_logical_id(cfn_bucket)
        nag.acknowledge(
            policy,
            "IAM5",
            "grant_put on the raw archive: objects are written under keys only known at run time "
            "(raw/<source>/<date>/<webhook-id>), so the resource is '<bucket arn>/*' and "
            "s3:Abort* lets the SDK abort its own failed multipart uploads.",
            findings=[f"Resource::<{bucket_id}.Arn>/*", "Action::s3:Abort*"],
        )
