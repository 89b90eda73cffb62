"""File drops in the raw archive bucket (``inbound/workday/``, ``inbound/timesheets/``, ``inbound/expenses/``)
→ canonical events, row by row.

S3 tells EventBridge (``aws.s3`` ``Object Created``); a rule puts the event on the intake's queue. The
object version (version id, else the ETag) names the file: a redelivery or redrive of the same version
publishes nothing twice (progress item ``FILE#<bucket>/<key>@<version>`` / ``INTAKE`` counts the rows
published, in file order), and every event id is derived from (key, version, row).

A file that cannot be read as a whole (too big, not UTF-8, hostile XML, missing columns) is ONE
``connector_rejected`` exception; each bad row is one exception naming its line, field and record, and
the good rows proceed. The object itself is never changed or deleted: it stays in the bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from r2r_core.connectors.base import MappingError
from r2r_core.connectors.files import MAX_FILE_BYTES, FileRejected, parser_for
from r2r_core.flows.connector_exceptions import REJECTED, record_connector_exception
from r2r_core.flows.ownership_guard import owned_only
from r2r_core.model.events import EventEnvelope
from r2r_core.state import AuditLog, StateStore, now_iso

logger = Logger(child=True)

CONNECTOR = "file_drop"
PROGRESS_EVERY = 25
BATCH = 10  # rows per PutEvents call


class Publisher(Protocol):
    def publish(self, envelope: EventEnvelope) -> None: ...


@dataclass(frozen=True)
class DroppedFile:
    bucket: str
    key: str
    version: str  # the S3 version id, else the ETag
    version_id: str | None
    size: int | None

    @property
    def name(self) -> str:
        """How rows are named in errors and event ids: ``<key>@<version>``."""
        return f"{self.key}@{self.version}"

    @property
    def location(self) -> str:
        suffix = f"?versionId={self.version_id}" if self.version_id else ""
        return f"s3://{self.bucket}/{self.key}{suffix}"


def dropped_file(event: Mapping[str, Any]) -> DroppedFile:
    """The file an EventBridge ``Object Created`` event (``source`` ``aws.s3``) names."""
    detail = event.get("detail") or {}
    bucket = str((detail.get("bucket") or {}).get("name") or "")
    obj = detail.get("object") or {}
    key = str(obj.get("key") or "")
    if not bucket or not key:
        raise ValueError("not an S3 Object Created event: detail.bucket.name and detail.object.key required")
    version_id = obj.get("version-id") or None
    etag = str(obj.get("etag") or obj.get("eTag") or "").strip('"')  # moto spells it eTag
    version = str(version_id or etag or "unversioned")
    size = obj.get("size")
    return DroppedFile(
        bucket=bucket,
        key=key,
        version=version,
        version_id=str(version_id) if version_id else None,
        size=int(size) if isinstance(size, int) else None,
    )


def _progress_key(file: DroppedFile) -> dict[str, str]:
    return {"pk": f"FILE#{file.bucket}/{file.name}", "sk": "INTAKE"}


def take_in_file(
    file: DroppedFile,
    *,
    read: Callable[[DroppedFile, int], bytes],
    store: StateStore,
    audit: AuditLog,
    publisher: Publisher,
) -> dict[str, Any]:
    """Parse one dropped file and publish its good rows; ``read(file, limit)`` returns at most
    ``limit`` bytes of the object."""
    parser = parser_for(file.key)
    if parser is None:
        return _reject(file, FileRejected(file.name, "(key)", "is not under a watched prefix"), store, audit)
    if file.size is not None and file.size > MAX_FILE_BYTES:
        return _reject(
            file,
            FileRejected(file.name, "(file)", f"is {file.size} bytes; the limit is {MAX_FILE_BYTES}"),
            store,
            audit,
        )
    body = read(file, MAX_FILE_BYTES + 1)
    try:
        result = parser(file.name, body)
    except FileRejected as exc:
        return _reject(file, exc, store, audit)

    for line, error in zip(result.error_lines, result.row_errors, strict=True):
        _row_exception(file, line, error, store, audit)

    progress = store.get(**_progress_key(file)) or {}
    done = int(progress.get("version", 0))
    ignored = 0
    publish_many = getattr(publisher, "publish_many", None)
    total = len(result.envelopes)
    # Rows are published in order, in PutEvents batches when the publisher can; progress is saved at
    # most every PROGRESS_EVERY rows, so a retry republishes at most that many (idempotent downstream).
    step = BATCH if publish_many is not None else 1
    saved = done
    for start in range(done, total, step):
        chunk = result.envelopes[start : start + step]
        # Rows the file's source does not own (r2r_core.ownership) are audited, never published.
        owned = owned_only(list(chunk), audit=audit, path="file_intake")
        ignored += len(chunk) - len(owned)
        if owned and publish_many is not None:
            publish_many(owned)
        else:
            for envelope in owned:
                publisher.publish(envelope)
        index = start + len(chunk)
        if index - saved >= PROGRESS_EVERY or index == total:
            _save_progress(file, index, store)
            saved = index
    outcome = {
        "file": file.location,
        "rows": result.rows,
        "published": len(result.envelopes) - done - ignored,
        "already_published": min(done, len(result.envelopes)),
        "row_errors": len(result.row_errors),
        "ignored_not_owner": ignored,
        "rejected": False,
    }
    logger.info("file taken in", extra=outcome)
    return outcome


def _save_progress(file: DroppedFile, published: int, store: StateStore) -> None:
    # ``version`` is the count of rows published: put_versioned only lets it grow.
    store.put_versioned(
        {**_progress_key(file), "version": published, "location": file.location, "updated_at": now_iso()}
    )


def _reject(file: DroppedFile, error: FileRejected, store: StateStore, audit: AuditLog) -> dict[str, Any]:
    record_connector_exception(
        store,
        audit,
        connector=CONNECTOR,
        kind=REJECTED,
        key=f"{file.bucket}/{file.name}",
        error=error,
        archived_as=file.location,
        context={"object_key": file.key, "object_version": file.version, "line": None},
    )
    outcome = {"file": file.location, "rejected": True, "problem": str(error)}
    logger.warning("file rejected", extra=outcome)
    return outcome


def _row_exception(
    file: DroppedFile, line: int, error: MappingError, store: StateStore, audit: AuditLog
) -> None:
    record_connector_exception(
        store,
        audit,
        connector=CONNECTOR,
        kind=REJECTED,
        key=f"{file.bucket}/{file.name}#line{line}",
        error=error,
        archived_as=file.location,
        context={"object_key": file.key, "object_version": file.version, "line": line},
    )
