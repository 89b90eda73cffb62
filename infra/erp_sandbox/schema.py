"""Record types the sandbox serves and how their bodies are validated.

Adding a record type is one ``RecordType(...)`` line in ``RECORD_TYPES``. Money and quantities
are validated as ``Decimal`` and stored as exact strings; they are rendered back as JSON numbers,
as NetSuite does.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from r2r_core.model.money import MINOR_UNITS

from .errors import SandboxError, invalid_content, invalid_ref, missing_field

__all__ = [
    "READ_ONLY_FIELDS",
    "RECORD_TYPES",
    "RecordType",
    "Ref",
    "Sublist",
    "minor_units",
    "render_decimals",
    "tran_date",
    "validate",
]

# Fields the server owns: ignored when a client sends them.
READ_ONLY_FIELDS = frozenset(
    {"id", "links", "externalId", "total", "subtotal", "createdDate", "lastModifiedDate"}
)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMBER = re.compile(r"^\s*-?(\d+(\.\d*)?|\.\d+)\s*$")
_DIGITS = re.compile(r"^\d+$")


@dataclass(frozen=True)
class Ref:
    """A reference field ``{"id": ...}`` / ``{"externalId": ...}``; ``targets`` are checked to exist."""

    field: str
    targets: tuple[str, ...] = ()

    @property
    def must_exist(self) -> bool:
        return bool(self.targets)


@dataclass(frozen=True)
class Sublist:
    """A sublist ``{"items": [...]}``; ``priced`` lines need amount == quantity x rate."""

    field: str
    line_required: tuple[str, ...]
    line_refs: tuple[str, ...] = ()
    line_decimals: tuple[str, ...] = ()
    required: bool = True
    priced: bool = False


@dataclass(frozen=True)
class RecordType:
    name: str
    # Each group needs one of its fields (``("companyName", "entityId")`` = either).
    required: tuple[tuple[str, ...], ...] = ()
    refs: tuple[Ref, ...] = ()
    decimals: tuple[str, ...] = ()
    positive: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    sublist: Sublist | None = None
    # Transactions have a tranDate (closed periods apply) and, with a sublist, computed totals.
    transaction: bool = False

    @property
    def rendered_decimals(self) -> tuple[str, ...]:
        return (*self.decimals, "total", "subtotal") if self.transaction else self.decimals


_ITEM_LINES = Sublist(
    "item",
    line_required=("item", "quantity", "rate", "amount"),
    line_refs=("item",),
    line_decimals=("quantity", "rate", "amount"),
    priced=True,
)
_EXPENSE_LINES = Sublist(
    "expense",
    line_required=("amount",),
    line_refs=("category",),
    line_decimals=("amount", "quantity", "rate"),
)

RECORD_TYPES: dict[str, RecordType] = {
    t.name: t
    for t in (
        RecordType("customer", required=(("companyName",),), refs=(Ref("parent", ("customer",)),)),
        RecordType(
            "job",
            required=(("companyName", "entityId"), ("parent",)),
            refs=(Ref("parent", ("customer",)),),
            # The cost forecast r2r keeps (hours x HRIS cost rate of the project's allocations).
            decimals=("estimatedLaborCost", "estimatedTime"),
            dates=("startDate", "projectedEndDate", "endDate"),
        ),
        RecordType(
            "timeBill",
            required=(("customer",), ("hours",), ("tranDate",), ("employee",)),
            refs=(Ref("customer", ("job",)), Ref("employee"), Ref("item")),
            decimals=("hours", "rate"),
            positive=("hours",),
            dates=("tranDate",),
            transaction=True,
        ),
        RecordType(
            "invoice",
            required=(("entity",),),
            refs=(Ref("entity", ("customer", "job")), Ref("job", ("job",))),
            dates=("tranDate", "dueDate"),
            sublist=_ITEM_LINES,
            transaction=True,
        ),
        RecordType(
            "creditMemo",
            required=(("entity",),),
            refs=(Ref("entity", ("customer", "job")), Ref("job", ("job",)), Ref("createdFrom", ("invoice",))),
            dates=("tranDate",),
            sublist=_ITEM_LINES,
            transaction=True,
        ),
        RecordType(
            "expenseReport",
            required=(("entity",), ("tranDate",)),
            refs=(Ref("entity"),),
            dates=("tranDate",),
            sublist=_EXPENSE_LINES,
            transaction=True,
        ),
        RecordType(
            "employee",
            required=(("lastName",), ("firstName",)),
            refs=(Ref("subsidiary"), Ref("department"), Ref("location")),
            decimals=("laborCost",),
            dates=("releaseDate", "hireDate"),
        ),
        RecordType(
            "resourceAllocation",
            required=(
                ("project",),
                ("allocationResource",),
                ("allocationAmount",),
                ("startDate",),
                ("endDate",),
            ),
            refs=(Ref("project", ("job",)), Ref("allocationResource", ("employee",))),
            decimals=("allocationAmount",),
            positive=("allocationAmount",),
            dates=("startDate", "endDate"),
        ),
    )
}

# exists(record_types, key, by_external_id) -> internal id or None
Resolver = Callable[[tuple[str, ...], str, bool], str | None]


def validate(record_type: RecordType, fields: Mapping[str, Any], resolve: Resolver) -> dict[str, Any]:
    """Check a whole record (after merging an update) and return it normalised for storage.

    Raises :class:`SandboxError` naming the first offending field, as NetSuite does.
    """
    record = {k: copy.deepcopy(v) for k, v in fields.items() if k not in READ_ONLY_FIELDS and v is not None}
    for group in record_type.required:
        if not any(_present(record.get(name)) for name in group):
            raise missing_field(group[0])
    for ref in record_type.refs:
        if ref.field in record:
            record[ref.field] = _check_ref(ref.field, record[ref.field], ref.targets, resolve)
    for name in record_type.decimals:
        if name in record:
            number = _decimal(name, record[name])
            if name in record_type.positive and number <= 0:
                raise invalid_content(name, f"The field {name} must be greater than 0.")
            record[name] = _store_decimal(number)
    for name in record_type.dates:
        if name in record:
            record[name] = _date(name, record[name]).isoformat()
    if record_type.sublist is not None:
        _check_sublist(record_type.sublist, record, resolve)
    return record


def _present(value: Any) -> bool:
    if isinstance(value, str | dict | list):
        return len(value) > 0
    return value is not None


def _check_ref(path: str, value: Any, targets: tuple[str, ...], resolve: Resolver) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise invalid_content(path, f"The field {path} must be a reference object with id or externalId.")
    ref = dict(value)
    ref.pop("links", None)
    if "id" in ref and ref["id"] is not None:
        key = str(ref["id"])
        if not _DIGITS.match(key):
            raise invalid_ref(path, key)
        ref["id"] = key
        if targets and resolve(targets, key, False) is None:
            raise invalid_ref(path, key)
    elif isinstance(ref.get("externalId"), str) and ref["externalId"]:
        key = ref["externalId"]
        if targets:
            found = resolve(targets, key, True)
            if found is None:
                raise invalid_ref(path, key)
    elif targets or not (isinstance(ref.get("refName"), str) and ref["refName"]):
        raise invalid_content(path, f"The field {path} must be a reference object with id or externalId.")
    return ref


def _decimal(path: str, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise invalid_content(path, f"The field {path} must be a number.")
    if isinstance(value, Decimal | int):
        number = Decimal(value)
    elif isinstance(value, str) and _NUMBER.match(value):
        try:
            number = Decimal(value.strip())
        except InvalidOperation as exc:  # pragma: no cover - the pattern already guards this
            raise invalid_content(path, f"The field {path} must be a number.") from exc
    else:
        raise invalid_content(path, f"The field {path} must be a number.")
    if not number.is_finite():
        raise invalid_content(path, f"The field {path} must be a finite number.")
    return number


def _store_decimal(number: Decimal) -> str:
    return format(number, "f")


def _date(path: str, value: Any) -> date:
    if isinstance(value, str) and _DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise invalid_content(path, f"The field {path} must be a date in the format YYYY-MM-DD.")


def minor_units(record: Mapping[str, Any]) -> int:
    """Minor units of the record's currency when it names an ISO code, else 2 (cents)."""
    currency = record.get("currency")
    if isinstance(currency, Mapping):
        for key in ("externalId", "refName"):
            code = currency.get(key)
            if isinstance(code, str) and code.upper() in MINOR_UNITS:
                return MINOR_UNITS[code.upper()]
    return 2


def _check_sublist(sublist: Sublist, record: dict[str, Any], resolve: Resolver) -> None:
    container = record.get(sublist.field)
    if container is None:
        if sublist.required:
            raise missing_field(sublist.field, f"{sublist.field} (at least one line)")
        return
    if not isinstance(container, Mapping) or not isinstance(container.get("items"), list):
        raise invalid_content(sublist.field, f"The sublist {sublist.field} must be an object with items.")
    lines = container["items"]
    if sublist.required and not lines:
        raise SandboxError(
            400, "USER_ERROR", "You must enter at least one line item for this transaction.", sublist.field
        )
    places = minor_units(record)
    quantum = Decimal(1).scaleb(-places)
    total = Decimal(0)
    normalised: list[dict[str, Any]] = []
    for index, raw in enumerate(lines):
        base = f"{sublist.field}.items[{index}]"
        if not isinstance(raw, Mapping):
            raise invalid_content(base, "Each line must be an object.")
        line = {k: v for k, v in raw.items() if v is not None and k != "links"}
        for name in sublist.line_required:
            if not _present(line.get(name)):
                raise missing_field(f"{base}.{name}", name)
        for name in sublist.line_refs:
            if name in line:
                line[name] = _check_ref(f"{base}.{name}", line[name], (), resolve)
        numbers = {
            name: _decimal(f"{base}.{name}", line[name]) for name in sublist.line_decimals if name in line
        }
        if sublist.priced:
            expected = (numbers["quantity"] * numbers["rate"]).quantize(quantum, rounding=ROUND_HALF_UP)
            if numbers["amount"] != expected:
                raise invalid_content(
                    f"{base}.amount",
                    f"The amount {numbers['amount']} does not equal quantity x rate ({expected}).",
                )
        if "amount" in numbers:
            total += numbers["amount"]
        line.update({name: _store_decimal(number) for name, number in numbers.items()})
        normalised.append(line)
    record[sublist.field] = {**{k: v for k, v in container.items() if k != "links"}, "items": normalised}
    record["subtotal"] = _store_decimal(total.quantize(quantum, rounding=ROUND_HALF_UP))
    record["total"] = record["subtotal"]  # no tax, shipping or discounts in the sandbox


def tran_date(record: Mapping[str, Any]) -> date | None:
    value = record.get("tranDate")
    if isinstance(value, str) and _DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def render_decimals(record_type: RecordType, record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with stored decimal strings turned back into ``Decimal`` (JSON numbers on the wire)."""
    out = copy.deepcopy(dict(record))
    for name in record_type.rendered_decimals:
        if isinstance(out.get(name), str):
            out[name] = Decimal(out[name])
    sublist = record_type.sublist
    if sublist is not None and isinstance(out.get(sublist.field), Mapping):
        for line in out[sublist.field].get("items", []):
            for name in sublist.line_decimals:
                if isinstance(line, dict) and isinstance(line.get(name), str):
                    line[name] = Decimal(line[name])
    return out
