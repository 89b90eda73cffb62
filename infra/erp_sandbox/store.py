"""SQLite-backed record storage: survives restarts, one lock for every thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import jsonio

__all__ = ["RecordStore", "StoredRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    record_type TEXT NOT NULL,
    id INTEGER NOT NULL,
    external_id TEXT,
    fields TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (record_type, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS records_external_id
    ON records (record_type, external_id) WHERE external_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS sequences (
    record_type TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class StoredRecord:
    record_type: str
    id: str
    external_id: str | None
    fields: dict[str, Any]
    created_at: str
    updated_at: str

    def as_document(self) -> dict[str, Any]:
        """``id``, ``externalId``, the fields, then the audit dates (stored form: money as strings)."""
        document: dict[str, Any] = {"id": self.id}
        if self.external_id is not None:
            document["externalId"] = self.external_id
        document.update(self.fields)
        document["createdDate"] = self.created_at
        document["lastModifiedDate"] = self.updated_at
        return document


class RecordStore:
    """Records by (type, internal id), unique external id per type, ids allocated per type.

    Ids are never reused, even after a reset, so a stale id held by a client cannot silently
    point at a different record.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Serialise a read-validate-write sequence; nested calls join the outer transaction."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._db.execute("COMMIT")

    def get(self, record_type: str, record_id: str) -> StoredRecord | None:
        if not record_id.isdigit():
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT record_type, id, external_id, fields, created_at, updated_at FROM records"
                " WHERE record_type = ? AND id = ?",
                (record_type, int(record_id)),
            ).fetchone()
        return _record(row)

    def get_by_external_id(self, record_type: str, external_id: str) -> StoredRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT record_type, id, external_id, fields, created_at, updated_at FROM records"
                " WHERE record_type = ? AND external_id = ?",
                (record_type, external_id),
            ).fetchone()
        return _record(row)

    def insert(self, record_type: str, external_id: str | None, fields: dict[str, Any]) -> StoredRecord:
        now = _now()
        with self.transaction():
            row = self._db.execute(
                "SELECT last_id FROM sequences WHERE record_type = ?", (record_type,)
            ).fetchone()
            record_id = (row[0] if row else 0) + 1
            self._db.execute(
                "INSERT INTO sequences (record_type, last_id) VALUES (?, ?)"
                " ON CONFLICT (record_type) DO UPDATE SET last_id = excluded.last_id",
                (record_type, record_id),
            )
            self._db.execute(
                "INSERT INTO records (record_type, id, external_id, fields, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (record_type, record_id, external_id, jsonio.dumps(fields), now, now),
            )
        return StoredRecord(record_type, str(record_id), external_id, fields, now, now)

    def replace(self, record: StoredRecord, fields: dict[str, Any]) -> StoredRecord:
        now = _now()
        with self.transaction():
            self._db.execute(
                "UPDATE records SET fields = ?, updated_at = ? WHERE record_type = ? AND id = ?",
                (jsonio.dumps(fields), now, record.record_type, int(record.id)),
            )
        return StoredRecord(record.record_type, record.id, record.external_id, fields, record.created_at, now)

    def delete(self, record_type: str, record_id: str) -> bool:
        with self.transaction():
            cursor = self._db.execute(
                "DELETE FROM records WHERE record_type = ? AND id = ?", (record_type, int(record_id))
            )
        return cursor.rowcount > 0

    def page(self, record_type: str, limit: int, offset: int) -> tuple[list[str], int]:
        with self._lock:
            total = self._db.execute(
                "SELECT COUNT(*) FROM records WHERE record_type = ?", (record_type,)
            ).fetchone()[0]
            rows = self._db.execute(
                "SELECT id FROM records WHERE record_type = ? ORDER BY id LIMIT ? OFFSET ?",
                (record_type, limit, offset),
            ).fetchall()
        return [str(row[0]) for row in rows], int(total)

    def all(self) -> list[StoredRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT record_type, id, external_id, fields, created_at, updated_at FROM records"
                " ORDER BY record_type, id"
            ).fetchall()
        return [record for record in (_record(row) for row in rows) if record is not None]

    def clear(self) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM records")


def _record(row: Any) -> StoredRecord | None:
    if row is None:
        return None
    record_type, record_id, external_id, fields, created_at, updated_at = row
    return StoredRecord(
        record_type, str(record_id), external_id, jsonio.loads(fields), created_at, updated_at
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
