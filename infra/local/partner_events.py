"""Salesforce change events as Event Relay delivers them to a partner event bus (for the local stack).

:func:`change_event` builds the ``detail`` of one Change Data Capture event (``payload`` with its
``ChangeEventHeader``); ``LocalStack.put_partner_event`` puts it on the template's partner bus, playing
the part of Salesforce.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

_COMMITS = itertools.count(1)


def detail_type(entity: str) -> str:
    """``OpportunityChangeEvent``; a custom object ``pse__Proj__c`` → ``pse__Proj__ChangeEvent``."""
    return f"{entity.removesuffix('__c')}__ChangeEvent" if entity.endswith("__c") else f"{entity}ChangeEvent"


def change_event(
    entity: str,
    record_ids: Iterable[str],
    change_type: str = "UPDATE",
    *,
    values: Mapping[str, Any] | None = None,
    changed_fields: Iterable[str] | None = None,
    commit_timestamp_ms: int | None = None,
    transaction_key: str | None = None,
    sequence_number: int = 1,
    commit_user: str = "0055g00000R2RusAAC",
) -> dict[str, Any]:
    """The ``detail`` of an Event Relay change event (``{"payload": {...}, "schemaId", "id"}``)."""
    fields = dict(values or {})
    header = {
        "entityName": entity,
        "recordIds": list(record_ids),
        "changeType": change_type,
        "changedFields": sorted(changed_fields if changed_fields is not None else fields),
        "nulledFields": [],
        "diffFields": [],
        "changeOrigin": "com/salesforce/api/rest/61.0;client=r2r-local",
        "transactionKey": transaction_key or str(uuid.uuid4()),
        "sequenceNumber": sequence_number,
        "commitTimestamp": commit_timestamp_ms
        if commit_timestamp_ms is not None
        else int(time.time() * 1000),
        "commitUser": commit_user,
        "commitNumber": 1_170_000_000_000 + next(_COMMITS),
    }
    return {
        "payload": {"ChangeEventHeader": header, **fields},
        "schemaId": f"{detail_type(entity)}-local",
        "id": str(uuid.uuid4()),
    }
