"""Scenario files: webhook deliveries posted in name order (format in docs/local-stack.md)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

_KNOWN_KEYS = {
    "source",
    "webhook_id",
    "body",
    "expect_status",
    "headers",
    "sign",
    "raw_body_file",
    "content_type",
    "path",
    "description",
}
_TICK_KEYS = {"tick", "description"}
_KANTATA_KEYS = {"kantata", "description"}
_KANTATA_ACTIONS = {"seed", "link", "throttle"}


class ScenarioError(ValueError):
    """A scenario file is malformed."""


@dataclass
class Step:
    """One delivery of a scenario."""

    file: str
    source: str
    webhook_id: str
    body: Any = None
    raw_body: bytes | None = None
    content_type: str | None = None
    expect_status: list[int] | None = None  # None: any 2xx
    headers: dict[str, str] = field(default_factory=dict)
    sign: bool = True
    path: str | None = None
    tick: str | None = None  # a scheduled rule to tick instead of a delivery
    kantata: dict[str, Any] | None = None  # records to seed in the Kantata sandbox, a link, 429s

    def expected(self, status: int) -> bool:
        if self.expect_status is None:
            return 200 <= status < 300
        return status in self.expect_status


def default_webhook_id(file: Path) -> str:
    """A stable id from the file name: ``msg_<stem>`` (letters, digits, ``_``, ``-``)."""
    return "msg_" + re.sub(r"[^A-Za-z0-9_-]", "_", file.stem)


def load_step(file: Path) -> Step:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ScenarioError(f"{file.name}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ScenarioError(f"{file.name}: a scenario file is a JSON object")
    if "tick" in document:
        extra = set(document) - _TICK_KEYS
        if extra:
            raise ScenarioError(
                f"{file.name}: a tick step takes only {sorted(_TICK_KEYS)}, not {sorted(extra)}"
            )
        return Step(file=file.name, source="", webhook_id="", tick=str(document["tick"]))
    if "kantata" in document:
        return _kantata_step(file, document)
    unknown = set(document) - _KNOWN_KEYS
    if unknown:
        raise ScenarioError(
            f"{file.name}: unknown keys {sorted(unknown)} (known: {sorted(_KNOWN_KEYS | _TICK_KEYS)})"
        )
    source = document.get("source")
    if not isinstance(source, str) or not source:
        raise ScenarioError(f"{file.name}: 'source' (e.g. \"crm\") is required")
    raw_body = None
    if "raw_body_file" in document:
        raw_path = file.parent / str(document["raw_body_file"])
        if not raw_path.is_file():
            raise ScenarioError(f"{file.name}: raw_body_file {raw_path.name} does not exist")
        raw_body = raw_path.read_bytes()
        if "body" in document:
            raise ScenarioError(f"{file.name}: give either 'body' or 'raw_body_file', not both")
    elif "body" not in document:
        raise ScenarioError(f"{file.name}: 'body' (or 'raw_body_file') is required")
    expect = document.get("expect_status")
    if expect is not None:
        expect = [int(expect)] if isinstance(expect, int) else [int(s) for s in expect]
    headers = document.get("headers") or {}
    if not isinstance(headers, dict):
        raise ScenarioError(f"{file.name}: 'headers' is an object of header name to value")
    return Step(
        file=file.name,
        source=source,
        webhook_id=str(document.get("webhook_id") or default_webhook_id(file)),
        body=document.get("body"),
        raw_body=raw_body,
        content_type=document.get("content_type"),
        expect_status=expect,
        headers={str(k): str(v) for k, v in headers.items()},
        sign=bool(document.get("sign", True)),
        path=document.get("path"),
    )


def _kantata_step(file: Path, document: dict[str, Any]) -> Step:
    extra = set(document) - _KANTATA_KEYS
    action = document["kantata"]
    if extra or not isinstance(action, dict) or not action or set(action) - _KANTATA_ACTIONS:
        raise ScenarioError(
            f'{file.name}: a kantata step is {{"kantata": {{...}}}} with any of {sorted(_KANTATA_ACTIONS)}'
        )
    seed = action.get("seed") or {}
    if not isinstance(seed, dict) or not all(isinstance(v, list) for v in seed.values()):
        raise ScenarioError(f"{file.name}: kantata.seed maps a resource to a list of records")
    link = action.get("link")
    if link is not None and not (
        isinstance(link, dict) and isinstance(link.get("workspace_id"), str) and link.get("engagement_id")
    ):
        raise ScenarioError(f"{file.name}: kantata.link needs workspace_id (text) and engagement_id")
    return Step(file=file.name, source="", webhook_id="", kantata=action)


def load_scenario(directory: Path) -> list[Step]:
    """Every ``*.json`` file of ``directory`` in name order (other files are raw bodies, notes...)."""
    if not directory.is_dir():
        raise ScenarioError(f"{directory} is not a directory")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix == ".json")
    if not files:
        raise ScenarioError(f"{directory} holds no *.json delivery files")
    return [load_step(file) for file in files]


# --- report helpers ------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _ref(value: Any) -> Any:
    """A NetSuite reference (``{"id": "12"}``, ``{"externalId": "USD"}``...) as one value."""
    if isinstance(value, dict):
        return value.get("id") or value.get("externalId") or value.get("refName") or value
    return value


def invoice_summary(record: dict[str, Any]) -> dict[str, Any]:
    """An ERP invoice record as the report shows it: lines, total, currency."""
    sublist = record.get("item")
    items = sublist.get("items") if isinstance(sublist, dict) else sublist
    lines = []
    computed = Decimal(0)
    for item in items or []:
        amount = _decimal(item.get("amount"))
        quantity = _decimal(item.get("quantity"))
        rate = _decimal(item.get("rate"))
        if amount is None and quantity is not None and rate is not None:
            amount = quantity * rate
        computed += amount or Decimal(0)
        lines.append(
            {
                "item": _ref(item.get("item")),
                "description": item.get("description") or item.get("memo"),
                "quantity": str(quantity) if quantity is not None else None,
                "rate": str(rate) if rate is not None else None,
                "amount": str(amount) if amount is not None else None,
            }
        )
    total = _decimal(record.get("total"))
    return {
        "id": record.get("id"),
        "externalId": record.get("externalId"),
        "entity": _ref(record.get("entity")),
        "tranDate": record.get("tranDate"),
        "lines": lines,
        "total": str(total if total is not None else computed),
        "currency": _ref(record.get("currency")),
    }


def to_jsonable(value: Any) -> Any:
    """DynamoDB items (Decimal, sets, bytes) as plain JSON values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
