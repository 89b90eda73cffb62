"""r2r CDK constructs, one module per concern."""

from infra.constructs.api import WebhookApi
from infra.constructs.eventbus import CANONICAL_SOURCE, CanonicalEventBus
from infra.constructs.functions import R2rFunction
from infra.constructs.layers import LambdaLayers
from infra.constructs.queue_consumer import QueueConsumer
from infra.constructs.secrets import IntegrationSecrets
from infra.constructs.settings import StageSettings
from infra.constructs.storage import RawArchive
from infra.constructs.tables import DataTables
from infra.constructs.workflow import MilestoneToInvoice

__all__ = [
    "CANONICAL_SOURCE",
    "CanonicalEventBus",
    "DataTables",
    "IntegrationSecrets",
    "LambdaLayers",
    "MilestoneToInvoice",
    "QueueConsumer",
    "R2rFunction",
    "RawArchive",
    "StageSettings",
    "WebhookApi",
]
