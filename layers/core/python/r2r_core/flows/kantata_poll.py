"""Kantata OX → canonical events, by polling (Kantata has no webhooks).

One poll, per resource type in order (``workspaces`` first, so links and currencies are current, then
``time_entries`` and ``expenses``):

1. the watermark (StateTable ``SYNC#kantata#<resource>`` / ``WATERMARK``: ``since``, the newest
   ``updated_at`` read) gives the filter ``updated_after`` (a few seconds earlier: records read twice
   are recognised by their version and publish nothing), ordered ``updated_at:asc``;
2. page by page (``page`` / ``per_page``, until ``page × per_page ≥ count``): the raw page is archived
   (``raw/kantata/<yyyy>/<mm>/<dd>/<resource>-<poll>-p<n>``), each record is mapped
   (:mod:`r2r_core.connectors.kantata`), its events published, what it taught remembered; a bad record
   is one ``connector_rejected`` exception naming the record and field (the good ones proceed), a record
   of a workspace with no r2r engagement one ``connector_waiting`` exception per workspace;
3. only then the watermark moves to the page's newest ``updated_at`` (never backwards).

Records that change while a poll pages through (they move to the end of the ordered result) can shift
an unread record onto a page already read. A poll that read fewer distinct records than ``count``
promised therefore puts the watermark back where it started (if no other poll moved it meanwhile), and
the next poll reads that span again: the versions make the second reading publish nothing twice.

Event ids are derived from (resource, Kantata id, ``updated_at``), so a tick redriven after a crash
publishes the same events again and the consumers deduplicate them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.connectors.base import MappingError, version_of
from r2r_core.connectors.directory import Directory, Remember, StateDirectory
from r2r_core.connectors.kantata import (
    INCLUDES,
    RESOURCES,
    SOURCE_SYSTEM,
    WORKSPACE_LINK,
    WorkspaceNotLinked,
    link_value,
    map_record,
    parse_page,
)
from r2r_core.flows.connector_exceptions import REJECTED, WAITING, record_connector_exception
from r2r_core.flows.project_setup import load_terms
from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, StateStore, now_iso

logger = Logger(child=True)

CONNECTOR = "kantata"
PER_PAGE = 100
MAX_PAGES_PER_POLL = 500  # 50,000 records per resource and poll; the next tick goes on
OVERLAP = timedelta(seconds=5)
WATERMARK_SK = "WATERMARK"


class Kantata(Protocol):
    def list_page(
        self, resource: str, *, page: int, per_page: int, params: Mapping[str, str] | None = None
    ) -> Any: ...


class Publisher(Protocol):
    def publish(self, envelope: EventEnvelope) -> None: ...


class Archive(Protocol):
    def put(
        self, *, source: str, delivery_id: str, body: bytes, content_type: str, received_at: datetime
    ) -> str: ...


def watermark_key(resource: str) -> tuple[str, str]:
    return f"SYNC#kantata#{resource}", WATERMARK_SK


@dataclass
class ResourceCounts:
    pages: int = 0
    read: int = 0
    published: int = 0
    unchanged: int = 0
    rejected: int = 0
    unlinked: int = 0
    since: str | None = None
    watermark: str | None = None
    complete: bool = True
    rewound: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "notes"}


def poll_kantata(
    *,
    kantata: Kantata,
    store: StateStore,
    audit: AuditLog,
    publisher: Publisher,
    archive: Archive,
    directory: Directory | None = None,
    per_page: int = PER_PAGE,
    resources: Iterable[str] = RESOURCES,
    time_left: Callable[[], bool] = lambda: True,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Any]:
    """One poll of every resource type; returns counts per resource. ``time_left()`` false stops
    between pages (the watermark then holds the pages done; the next tick goes on)."""
    directory = directory or StateDirectory(store)
    poll_id = uuid.uuid4().hex[:12]
    results: dict[str, Any] = {}
    for resource in resources:
        counts = _poll_resource(
            resource,
            kantata=kantata,
            store=store,
            audit=audit,
            publisher=publisher,
            archive=archive,
            directory=directory,
            per_page=per_page,
            poll_id=poll_id,
            time_left=time_left,
            now=now,
        )
        results[resource] = counts.as_dict()
    logger.info("kantata polled", extra={"poll": poll_id, **results})
    return results


def _poll_resource(
    resource: str,
    *,
    kantata: Kantata,
    store: StateStore,
    audit: AuditLog,
    publisher: Publisher,
    archive: Archive,
    directory: Directory,
    per_page: int,
    poll_id: str,
    time_left: Callable[[], bool],
    now: Callable[[], datetime],
) -> ResourceCounts:
    mark = store.get(*watermark_key(resource))
    since = str(mark["since"]) if mark else None
    since_ms = int(mark["since_ms"]) if mark else 0
    counts = ResourceCounts(since=since, watermark=since)
    params = {"order": "updated_at:asc"}
    if INCLUDES.get(resource):
        params["include"] = INCLUDES[resource]
    if since:
        params["updated_after"] = _iso(_parse(since) - OVERLAP)
    seen: set[str] = set()
    expected = 0
    page_number = 1
    while True:
        if page_number > 1 and not time_left():
            counts.complete = False
            break
        document = kantata.list_page(resource, page=page_number, per_page=per_page, params=params)
        received = now()
        archived = archive.put(
            source=SOURCE_SYSTEM,
            delivery_id=f"{resource}-{received:%H%M%S}-{poll_id}-p{page_number}",
            body=json.dumps(document, separators=(",", ":"), default=str).encode(),
            content_type="application/json",
            received_at=received,
        )
        try:
            page = parse_page(resource, document, page=page_number, per_page=per_page)
        except MappingError as exc:
            # A page that is not Kantata's shape: nothing on it can be trusted; the tick fails and
            # comes back (then rests in the DLQ), the watermark stays.
            record_connector_exception(
                store,
                audit,
                connector=CONNECTOR,
                kind=REJECTED,
                key=f"{resource}/page/{archived}",
                error=exc,
                archived_as=archived,
                context={"resource": resource, "page": page_number},
            )
            raise
        counts.pages += 1
        expected = max(expected, page.count)
        newest: tuple[int, str] | None = None
        for record_id, record in page.records:
            counts.read += 1
            seen.add(record_id)
            _take(
                resource,
                record_id,
                record,
                page.included,
                counts=counts,
                store=store,
                audit=audit,
                publisher=publisher,
                directory=directory,
                archived=archived,
            )
            stamp = _stamp(record)
            if stamp is not None and (newest is None or stamp[0] > newest[0]):
                newest = stamp
        # The page's events are published: only now does the watermark move past them.
        if newest is not None and newest[0] > since_ms:
            _advance(store, resource, newest)
            counts.watermark = newest[1]
        if not page.has_more:
            break
        page_number += 1
        if page_number > MAX_PAGES_PER_POLL:
            counts.complete = False
            break
    if counts.complete and len(seen) < expected and counts.watermark != since:
        # Records moved while we paged: read this span again next time.
        counts.rewound = _rewind(store, resource, since, counts.watermark)
        if counts.rewound:
            counts.watermark = since
    return counts


def _take(
    resource: str,
    record_id: str,
    record: Mapping[str, Any] | None,
    included: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    counts: ResourceCounts,
    store: StateStore,
    audit: AuditLog,
    publisher: Publisher,
    directory: Directory,
    archived: str,
) -> None:
    version = (record or {}).get("updated_at")
    try:
        mapped = map_record(resource, record_id, record, included, directory)
    except WorkspaceNotLinked as exc:
        counts.unlinked += 1
        # One per workspace: finance links it (or says it is not billed through r2r).
        record_connector_exception(
            store,
            audit,
            connector=CONNECTOR,
            kind=WAITING,
            key=f"workspace/{exc.workspace_id}",
            error=exc,
            archived_as=archived,
            context={"resource": resource, "workspace_id": exc.workspace_id, "first_record": record_id},
        )
        return
    except MappingError as exc:
        counts.rejected += 1
        record_connector_exception(
            store,
            audit,
            connector=CONNECTOR,
            kind=REJECTED,
            key=f"{resource}/{record_id}@{version}",
            error=exc,
            archived_as=archived,
            context={"resource": resource, "kantata_id": record_id, "kantata_updated_at": str(version)},
        )
        return
    for envelope in mapped.envelopes:
        publisher.publish(envelope)
    for item in mapped.remember:
        directory.put(item)
    if mapped.envelopes:
        counts.published += len(mapped.envelopes)
    else:
        counts.unchanged += 1


def _stamp(record: Mapping[str, Any] | None) -> tuple[int, str] | None:
    value = (record or {}).get("updated_at")
    if not isinstance(value, str):
        return None
    try:
        moment = _parse(value)
    except ValueError:
        return None
    return version_of(moment), _iso(moment)


def _advance(store: StateStore, resource: str, newest: tuple[int, str]) -> None:
    pk, sk = watermark_key(resource)
    store.update_if(
        pk,
        sk,
        set_values={"since": newest[1], "since_ms": newest[0], "updated_at": now_iso()},
        # Never backwards, even when two polls overlap.
        condition="attribute_not_exists(pk) OR #since_ms < :ms",
        values={":ms": newest[0]},
    )


def _rewind(store: StateStore, resource: str, since: str | None, written: str | None) -> bool:
    pk, sk = watermark_key(resource)
    if written is None:
        return False
    written_ms = version_of(_parse(written))
    if since is None:
        logger.warning(
            "kantata records moved while paging; reading from the start again", extra={"resource": resource}
        )
        return store.update_if(
            pk,
            sk,
            set_values={"since": "1970-01-01T00:00:00Z", "since_ms": 0, "updated_at": now_iso()},
            condition="#since_ms = :mine",
            values={":mine": written_ms},
        )
    logger.warning("kantata records moved while paging; reading the span again", extra={"resource": resource})
    return store.update_if(
        pk,
        sk,
        set_values={"since": since, "since_ms": version_of(_parse(since)), "updated_at": now_iso()},
        condition="#since_ms = :mine",
        values={":mine": written_ms},
    )


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- the workspace ↔ engagement link ------------------------------------------------------------------


def link_workspace(
    store: StateStore,
    audit: AuditLog,
    *,
    workspace_id: str,
    engagement_id: str,
    default_role: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Any]:
    """Record that Kantata workspace ``workspace_id`` bills r2r engagement ``engagement_id`` (set up by a
    closed-won deal). Returns the link. Raises ``LookupError`` for an engagement r2r does not know."""
    if not workspace_id.isdigit():
        raise ValueError(f"Kantata workspace id {workspace_id!r} is not a number")
    loaded = load_terms(store, engagement_id)
    if loaded is None:
        raise LookupError(f"engagement {engagement_id} is not set up in r2r (no closed-won deal received)")
    deal, _ = loaded
    value = link_value(
        engagement_id=deal.engagement.id,
        project_id=deal.project.id,
        client_id=deal.project.client_id,
        region=deal.project.region,
        start_date=deal.project.start_date.isoformat(),
        business_unit=deal.project.business_unit,
        currency=deal.engagement.currency,
        default_role=default_role,
    )
    # A link is versioned by the time it was made; a workspace read later (newer) refines it.
    written = StateDirectory(store).put(Remember(WORKSPACE_LINK, workspace_id, version_of(now()), value))
    audit.append(
        kind="kantata_workspace",
        entity_id=workspace_id,
        action="linked",
        event_id=f"link-{workspace_id}-{engagement_id}",
        correlation_id=engagement_id,
        detail={"engagement_id": engagement_id, "written": written},
    )
    return {"workspace_id": workspace_id, **value, "written": written}
