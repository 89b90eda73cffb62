"""Echo suppression: r2r's own writes into the CRM / PSA, recognised when they come back.

r2r writes into Salesforce (the invoice status on the Opportunity and on Certinia billing events,
``invoice_status_writeback``; records it provisions there, upserted by an external id). Salesforce then
sends a change notification for the record like for any edit. Two independent signs say a
notification is r2r's own write coming back; either one suppresses it (no canonical event published,
an ``echo`` audit record and the ``EchoSuppressed`` metric):

1. **the integration user**: the notification's ``LastModifiedById`` is one of r2r's integration users
   (``SALESFORCE_INTEGRATION_USER_IDS``, CDK context ``salesforceIntegrationUserIds``; compared on the
   15-character id), when the administrator includes ``LastModifiedById`` in the outbound message;
2. **what r2r last wrote** (works without any configuration): every write is remembered with its
   values (``ECHO#<system>#<object>#<key>`` / ``LAST_WRITE``, and by the record's id
   ``ECHOREC#<system>#<record id>`` / ``LAST_WRITE``). A notification for that record that carries
   exactly those values *and* maps to canonical data identical to what r2r last published for the
   record (``SRCREF#content#<event type>#<id>``: a hash without versions) is the echo. A person's
   edit to anything r2r reads changes the canonical data, so it is never mistaken for an echo.

Whoever writes into a source system (a write-back, a provisioning flow) calls :func:`remember_write`
with the values written and the record id the API answered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from r2r_core.state import StateStore, now_iso

CONTENT = "content"  # directory kind of the canonical-content hashes (r2r_core.connectors.directory)
_SF_ID_LENGTH = 15  # Salesforce ids: 15 case-sensitive characters, 18 with the checksum suffix


def values_hash(fields: Mapping[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def echo_key(system: str, sobject: str, key: str) -> tuple[str, str]:
    return f"ECHO#{system}#{sobject}#{key}", "LAST_WRITE"


def record_key(system: str, record_id: str) -> tuple[str, str]:
    return f"ECHOREC#{system}#{record_id[:_SF_ID_LENGTH]}", "LAST_WRITE"


def last_write(store: StateStore, system: str, sobject: str, key: str) -> dict[str, Any] | None:
    return store.get(*echo_key(system, sobject, key))


def last_write_of_record(store: StateStore, system: str, record_id: str) -> dict[str, Any] | None:
    return store.get(*record_key(system, record_id))


def remember_write(
    store: StateStore,
    *,
    system: str,
    sobject: str,
    key: str,
    record_id: str,
    fields: Mapping[str, Any],
    version: int,
) -> None:
    """Remember what r2r wrote to a record (by its external key and by its id); newer versions win."""
    values = {
        "hash": values_hash(fields),
        "fields": json.dumps(dict(fields), sort_keys=True, default=str),
        "record_id": record_id,
        "sobject": sobject,
        "key": key,
        "version": version,
        "updated_at": now_iso(),
    }
    for pk, sk in (echo_key(system, sobject, key), record_key(system, record_id)):
        store.update_if(
            pk,
            sk,
            set_values=values,
            condition="attribute_not_exists(pk) OR #version <= :v",
            values={":v": version},
        )


def is_echo(store: StateStore, system: str, sobject: str, key: str, changed: Mapping[str, Any]) -> bool:
    """True when ``changed`` only repeats the values r2r last wrote to that record."""
    last = last_write(store, system, sobject, key)
    return last is not None and repeats(last, changed)


def repeats(written_item: Mapping[str, Any], notified: Mapping[str, Any]) -> bool:
    """True when the notified values contain each value r2r wrote, unchanged (nested references such
    as ``pse__Project__r`` are not in a notification and are skipped); at least one must be there."""
    written = json.loads(written_item["fields"])
    scalar = {k: v for k, v in written.items() if not isinstance(v, dict)}
    present = {k: v for k, v in scalar.items() if k in notified}
    if not present:
        return False
    return all(_same(value, notified[k]) for k, value in present.items())


def _same(written: Any, notified: Any) -> bool:
    if isinstance(written, bool) or isinstance(notified, bool):
        return str(written).lower() == str(notified).lower()
    if written is None or notified in (None, ""):
        return written in (None, "") and notified in (None, "")
    try:
        return Decimal(str(written)) == Decimal(str(notified))
    except InvalidOperation:
        return str(written) == str(notified)


def by_integration_user(fields: Mapping[str, Any], integration_users: Iterable[str]) -> bool:
    modified_by = str(fields.get("LastModifiedById") or "")[:_SF_ID_LENGTH]
    return bool(modified_by) and modified_by in {
        u.strip()[:_SF_ID_LENGTH] for u in integration_users if u.strip()
    }


def content_hash(data: Mapping[str, Any]) -> str:
    """A hash of canonical data without its version numbers (an echo only bumps those)."""
    return values_hash(_without_versions(data))


def _without_versions(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_versions(v) for k, v in value.items() if k != "version"}
    if isinstance(value, list):
        return [_without_versions(v) for v in value]
    return value


def parse_user_ids(text: str | None) -> frozenset[str]:
    return frozenset(part.strip() for part in (text or "").split(",") if part.strip())
