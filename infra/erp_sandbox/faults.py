"""Fault injection: scripted errors, lost answers, throttling, latency and closed periods.

Configuration (``POST /_sandbox/faults`` body, or :meth:`FaultInjector.configure`)::

    {
      "seed": 7,                         # seeds the RNG used by "probability" (deterministic)
      "rules": [                         # first rule that matches and fires wins
        {"status": 429, "record_type": "timeBill", "method": "PUT", "count": 2, "retry_after": 1},
        {"status": "CLOSED_PERIOD", "record_type": "invoice"},          # NetSuite code -> its HTTP status
        {"status": 503, "probability": 0.3},
        {"mode": "commit_then_drop", "record_type": "invoice", "count": 1},
        {"mode": "commit_then_delay", "delay_ms": 500, "method": "PUT", "count": 1},  # answer late
        {"mode": "drop", "method": "GET", "count": 1}                   # close without processing
      ],
      "concurrency_limit": 5,            # more record requests in flight -> 429 CONCURRENCY_LIMIT_EXCEEDED
      "concurrency_retry_after": 1,      # optional Retry-After (s) on those 429s
      "latency_ms": 20,                  # added to every record request (while it counts as in flight)
      "closed_before": "2026-01-01",     # transactions dated earlier are in a closed period
      "closed_records": [{"record_type": "invoice", "external_id": "r2r-invoice-1"},
                         {"record_type": "job", "id": "3"}]
    }

Rule keys: ``status`` (HTTP status 400-599 or a NetSuite error code), ``mode`` (``error`` default:
answer the error without doing the work; ``commit_then_drop``: do the work, then close the
connection without an answer; ``commit_then_delay``: do the work, wait ``delay_ms``, then answer, so
a client with a shorter read timeout sees a timeout; ``drop``: close without doing the work),
``record_type``, ``method``, ``external_id``, ``probability`` (0..1, default 1), ``count`` (times it
fires; absent = always), ``retry_after`` (s, sent on 429/503), ``detail``, ``error_path``,
``http_status`` (for codes the sandbox does not know), ``delay_ms`` (also delays ``error`` answers).
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date
from typing import Any

from .errors import CODE_STATUS, STATUS_CODE, SandboxError

__all__ = ["MODES", "ClosedRecord", "FaultInjector", "FaultRule"]

MODES = ("error", "commit_then_drop", "commit_then_delay", "drop")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_RETRY_AFTER_STATUSES = (429, 503)


@dataclass
class FaultRule:
    status: int | str = 500
    mode: str = "error"
    record_type: str | None = None
    method: str | None = None
    external_id: str | None = None
    probability: float = 1.0
    count: int | None = None
    retry_after: float | None = None
    detail: str | None = None
    error_path: str | None = None
    http_status: int | None = None
    delay_ms: float = 0.0
    fired: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int | str):
            raise ValueError("status must be an HTTP status or a NetSuite error code")
        if isinstance(self.status, int) and not 400 <= self.status <= 599:
            raise ValueError("status must be between 400 and 599")
        if isinstance(self.status, str) and not _CODE.match(self.status):
            raise ValueError("status code must look like INVALID_CONTENT")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if self.method is not None:
            self.method = self.method.upper()
            if self.method not in _METHODS:
                raise ValueError(f"method must be one of {', '.join(_METHODS)}")
        if not 0.0 <= float(self.probability) <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        self.probability = float(self.probability)
        if self.count is not None and (isinstance(self.count, bool) or int(self.count) < 0):
            raise ValueError("count must be a non-negative integer")
        if self.retry_after is not None and float(self.retry_after) < 0:
            raise ValueError("retry_after must not be negative")
        if self.http_status is not None and not 400 <= int(self.http_status) <= 599:
            raise ValueError("http_status must be between 400 and 599")
        self.delay_ms = float(self.delay_ms)
        if self.delay_ms < 0:
            raise ValueError("delay_ms must not be negative")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        allowed = set(cls.__dataclass_fields__) - {"fired"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault rule keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        for key in ("probability", "retry_after"):
            if values.get(key) is not None:
                values[key] = float(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def matches(self, method: str, record_type: str, external_id: str | None) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.record_type is not None and self.record_type != record_type:
            return False
        return self.external_id is None or self.external_id == external_id

    def error(self) -> SandboxError:
        if isinstance(self.status, int):
            status = self.status
            code = STATUS_CODE.get(status, "UNEXPECTED_ERROR" if status >= 500 else "INVALID_CONTENT")
        else:
            code = self.status
            status = int(self.http_status or CODE_STATUS.get(code, 400))
        headers = {}
        if self.retry_after is not None and status in _RETRY_AFTER_STATUSES:
            headers["Retry-After"] = str(max(0, round(self.retry_after)))
        return SandboxError(status, code, self.detail, self.error_path, headers=headers)


@dataclass(frozen=True)
class ClosedRecord:
    record_type: str
    id: str | None = None
    external_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClosedRecord:
        unknown = set(data) - {"record_type", "id", "external_id"}
        if unknown or not data.get("record_type"):
            raise ValueError("closed_records entries need record_type and id or external_id")
        record = cls(
            str(data["record_type"]),
            str(data["id"]) if data.get("id") is not None else None,
            str(data["external_id"]) if data.get("external_id") is not None else None,
        )
        if record.id is None and record.external_id is None:
            raise ValueError("closed_records entries need id or external_id")
        return record


class FaultInjector:
    """The current fault configuration; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._apply({})

    def _apply(self, config: Mapping[str, Any]) -> None:
        known = {
            "seed",
            "rules",
            "concurrency_limit",
            "concurrency_retry_after",
            "latency_ms",
            "closed_before",
            "closed_records",
        }
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        seed = int(config.get("seed") or 0)
        rules = [FaultRule.from_dict(rule) for rule in config.get("rules") or []]
        limit = config.get("concurrency_limit")
        if limit is not None and int(limit) < 1:
            raise ValueError("concurrency_limit must be at least 1")
        retry_after = config.get("concurrency_retry_after")
        latency_ms = float(config.get("latency_ms") or 0)
        if latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        closed_before = config.get("closed_before")
        closed = [ClosedRecord.from_dict(item) for item in config.get("closed_records") or []]
        self._seed = seed
        self._rng = random.Random(seed)  # noqa: S311 - reproducible test faults, not security
        self._rules = rules
        self.concurrency_limit: int | None = int(limit) if limit is not None else None
        self.concurrency_retry_after: float | None = float(retry_after) if retry_after is not None else None
        self.latency_ms = latency_ms
        self.closed_before: date | None = date.fromisoformat(closed_before) if closed_before else None
        self._closed = closed

    def configure(self, config: Mapping[str, Any]) -> None:
        """Replace the whole configuration (validated first: a bad one changes nothing)."""
        with self._lock:
            saved = self.__dict__.copy()
            try:
                self._apply(config)
            except (TypeError, ValueError):
                self.__dict__.update(saved)
                raise

    def clear(self) -> None:
        with self._lock:
            self._apply({})

    def add_rule(self, rule: FaultRule | Mapping[str, Any]) -> None:
        parsed = rule if isinstance(rule, FaultRule) else FaultRule.from_dict(rule)
        with self._lock:
            self._rules.append(parsed)

    def mark_closed(self, record_type: str, *, id: str | None = None, external_id: str | None = None) -> None:
        record = ClosedRecord.from_dict({"record_type": record_type, "id": id, "external_id": external_id})
        with self._lock:
            self._closed.append(record)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "seed": self._seed,
                "rules": [rule.to_dict() for rule in self._rules],
                "concurrency_limit": self.concurrency_limit,
                "concurrency_retry_after": self.concurrency_retry_after,
                "latency_ms": self.latency_ms,
                "closed_before": self.closed_before.isoformat() if self.closed_before else None,
                "closed_records": [
                    {k: v for k, v in asdict(item).items() if v is not None} for item in self._closed
                ],
            }

    def pick(self, method: str, record_type: str, external_id: str | None) -> FaultRule | None:
        """The rule that fires for this request, if any (counts and the RNG advance here)."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, record_type, external_id):
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                rule.fired += 1
                return replace(rule)
        return None

    def is_closed(
        self, record_type: str, record_id: str | None, external_id: str | None, tran_date: date | None
    ) -> bool:
        with self._lock:
            if self.closed_before is not None and tran_date is not None and tran_date < self.closed_before:
                return True
            return any(
                item.record_type == record_type
                and (
                    (item.id is not None and item.id == record_id)
                    or (item.external_id is not None and item.external_id == external_id)
                )
                for item in self._closed
            )
