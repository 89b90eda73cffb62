"""The custom EventBridge bus for canonical events, archived for replay."""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_events as events
from constructs import Construct

CANONICAL_SOURCE = "r2r.canonical"
ARCHIVE_RETENTION = Duration.days(90)


class CanonicalEventBus(Construct):
    """Custom bus (``Source="r2r.canonical"`` events) with an Archive of everything put on it."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(
            self,
            "Bus",
            description="r2r canonical events (source r2r.canonical)",
        )
        self.archive = events.Archive(
            self,
            "Archive",
            source_event_bus=self.bus,
            description="r2r canonical events, kept for replay",
            # Every event put on this bus is in this account: archive them all.
            event_pattern=events.EventPattern(account=[Aws.ACCOUNT_ID]),
            retention=ARCHIVE_RETENTION,
        )
