"""Release time held over a cap for approval, so that the next billing run bills it (``r2r billing release``).

Time over a cap under ``cap_policy: hold_for_approval`` is held: at posting (decision ``capped``, the part
over in ``held_hours``; the charge is ``unbilled`` for the part under, or ``not_billable`` when nothing fit)
or at a billing run (status ``held_over_cap``). Finance approving it (a change order, a raised cap) releases
the held hours: the charge becomes ``unbilled`` for all its hours at its rate, marked ``cap_released`` so the
billing run admits it over the cap, and the release is recorded in the audit history of the entry. Time
written off by the contract, already invoiced, or whose entry changed since is not released.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from r2r_core.errors import Permanent
from r2r_core.flows.charges import charge_of
from r2r_core.model.money import round_money
from r2r_core.state import AuditLog, StateStore, now_iso

RELEASABLE_STATUSES = ("unbilled", "not_billable", "held_over_cap")


class ReleaseRefused(Permanent):
    """The charge cannot be released (nothing held, written off, already invoiced, changed meanwhile)."""


def release_held_time(
    store: StateStore, audit: AuditLog, entry_id: str, *, released_by: str, note: str = ""
) -> dict[str, Any]:
    """Release the hours of time entry ``entry_id`` held over a cap; returns the updated charge."""
    item = charge_of(store, audit, kind="time", source_id=entry_id)
    if item is None:
        raise ReleaseRefused(f"no billing decision recorded for time entry {entry_id}")
    pk, sk = str(item["pk"]), str(item["sk"])
    held = Decimal(str(item.get("held_hours") or 0))
    status = str(item.get("status", ""))
    if held <= 0:
        raise ReleaseRefused(f"time entry {entry_id} has no hours held over a cap (status {status})")
    if status not in RELEASABLE_STATUSES:
        raise ReleaseRefused(
            f"time entry {entry_id} is {status} (invoice {item.get('invoice_id', '?')}): releasing the "
            f"{held} h held of an entry already invoiced in part is not supported; raise a change order "
            "for them instead"
        )
    if item.get("cap_policy") == "write_off" and status != "held_over_cap":
        raise ReleaseRefused(
            f"time entry {entry_id}: the {held} h over the cap were written off as the contract says "
            "(cap_policy write_off), not held for approval"
        )
    rate = Decimal(str(item["rate"]))
    billable_hours = Decimal(str(item.get("billable_hours") or 0)) + held
    amount = round_money(billable_hours * rate, str(item["currency"]))
    when = now_iso()
    reason = (
        f"{item.get('reason', '')} Released over the cap by {released_by} on {when[:10]}"
        f"{f' ({note})' if note else ''}: the {held} h held are billed with the next invoice, "
        f"{billable_hours} h × {rate} = {amount} {item['currency']} in all."
    ).strip()
    released = store.update_if(
        pk,
        sk,
        set_values={
            "status": "unbilled",
            "billable_hours": billable_hours,
            "amount": amount,
            "held_hours": Decimal(0),
            "held_amount": Decimal(0),
            "cap_released": True,
            "released_hours": held,
            "released_by": released_by,
            "released_at": when,
            "rule": "cap-released-by-approval",
            "reason": reason,
        },
        condition="#status = :status AND #version = :v",
        values={":status": status, ":v": item["version"]},
    )
    if not released:
        raise ReleaseRefused(f"time entry {entry_id} changed while it was being released: look again")
    audit.append(
        kind="time_entry",
        entity_id=entry_id,
        action="cap_hold_released",
        event_id=f"release/{entry_id}/v{item['version']}",
        correlation_id=f"release/{entry_id}",
        detail={"released_hours": held, "released_by": released_by, "amount": amount, "note": note},
    )
    return store.get(pk, sk) or {}
