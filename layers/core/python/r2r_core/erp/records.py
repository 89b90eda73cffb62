"""Pure builders of NetSuite REST record bodies.

Money is ``Decimal`` and leaves here as a JSON *string* (NetSuite accepts numbers or strings),
so no float ever touches an amount. Amounts carry exactly the currency's minor units; rates and
quantities are sent exactly as given (never rounded here: rounding is a billing decision).
References are ``{"id": ...}`` (internal id) or ``{"externalId": ...}``; sublists are
``{"items": [...]}``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol, cast

from r2r_core.model.money import minor_units as currency_minor_units

__all__ = [
    "MAX_EXTERNAL_ID_LENGTH",
    "InvoiceLine",
    "credit_memo_body",
    "currency_minor_units",
    "customer_body",
    "decimal_string",
    "employee_body",
    "expense_report_body",
    "external_id",
    "invoice_body",
    "job_body",
    "job_cost_forecast_body",
    "money_string",
    "resource_allocation_body",
    "time_bill_body",
]

MAX_EXTERNAL_ID_LENGTH = 254
_EXTERNAL_ID_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")
_HASH_CHARS = 16


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One invoice line; ``amount`` is already rounded to the currency (quantity x rate)."""

    item_id: str
    description: str
    quantity: Decimal
    rate: Decimal
    amount: Decimal
    tax_code_id: str | None = None


def decimal_string(value: Decimal | int) -> str:
    """An exact plain-notation string (no exponent, nothing rounded)."""
    number = _as_decimal(value)
    return format(number, "f")


def money_string(value: Decimal | int, currency: str) -> str:
    """An amount with exactly the currency's minor units; refuses to round silently."""
    number = _as_decimal(value)
    places = currency_minor_units(currency)
    quantum = Decimal(1).scaleb(-places)
    quantized = number.quantize(quantum)
    if quantized != number:
        raise ValueError(f"amount {number} has more precision than {currency} allows ({places} places)")
    return format(quantized, "f")


def _rate_string(value: Decimal | int, places: int) -> str:
    """A price: at least ``places`` decimals, more kept if given (a rate may be finer than cents)."""
    # A rate card's rate is one Decimal object in every decision made on it: its text is remembered by
    # that object's identity (kept alive by the entry, so the id cannot be another's) and the places.
    found = _RATE_TEXT.get(id(value))
    if found is not None and found[0] is value and found[1] == places:
        return found[2]
    number = _as_decimal(value)
    text = format(number, "f")  # a finite Decimal in plain notation: exactly max(0, -exponent) decimals
    point = text.find(".")
    if (len(text) - point - 1 if point >= 0 else 0) < places:  # the exponent is above -places
        text = format(number.quantize(Decimal(1).scaleb(-places)), "f")
    if type(value) is Decimal:
        if len(_RATE_TEXT) >= _RATE_TEXTS:
            _RATE_TEXT.clear()  # bounded; the rates in use come back at once
        _RATE_TEXT[id(value)] = (value, places, text)
    return text


_RATE_TEXTS = 256
_RATE_TEXT: dict[int, tuple[Decimal, int, str]] = {}


def _plain_text(number: Decimal) -> str:
    """``format(number, "f")`` of a finite Decimal: its ``str`` when that has no exponent (the same text,
    for half the cost of format's spec parsing), else the format."""
    text = str(number)
    return format(number, "f") if "E" in text or "e" in text else text


def _day_text(day: date) -> str:
    """``day.isoformat()``, remembered per day: the entries of a month have a few dozen work dates."""
    if type(day) is not date:  # a datetime (its text has a time and zone), a subclass: asked each time
        return day.isoformat()
    text = _DAY_TEXT.get(day)
    if text is None:
        if len(_DAY_TEXT) >= _DAY_TEXTS:
            _DAY_TEXT.clear()  # bounded; the days in use come back at once
        text = _DAY_TEXT[day] = day.isoformat()
    return text


_DAY_TEXTS = 1024
_DAY_TEXT: dict[date, str] = {}


def _as_decimal(value: Decimal | int) -> Decimal:
    if type(value) is Decimal:  # the usual case, checked first: it is asked several times per record
        number = value
    elif isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"money and quantities must be Decimal, got {type(value).__name__}")
    else:
        number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"not a finite number: {number}")
    return number


def _ref(internal_id: str) -> dict[str, str]:
    if not internal_id:
        raise ValueError("a reference needs an internal id")
    return {"id": str(internal_id)}


def _currency_ref(currency: str, currency_id: str | None) -> dict[str, str]:
    # NetSuite sets select fields by internal id or external id. Without an account-specific
    # internal id we reference the currency record by an external id equal to its ISO code,
    # which an administrator sets once per currency (shape unconfirmed for real accounts).
    code = currency.strip().upper()
    currency_minor_units(code)
    return {"id": currency_id} if currency_id else {"externalId": code}


class SegmentsLike(Protocol):
    """``ErpMapping.segments(...)``: builds fresh references of the known segments only."""

    def as_fields(self) -> dict[str, dict[str, str]]: ...


def _segment_fields(
    segments: Mapping[str, Mapping[str, str]] | SegmentsLike | None,
) -> dict[str, dict[str, str]]:
    """Department, class and location references (``ErpMapping.segments(...)`` or its ``as_fields()``)."""
    if not segments:
        return {}
    as_fields = getattr(segments, "as_fields", None)
    if as_fields is not None:
        fields: dict[str, dict[str, str]] = as_fields()  # new dicts: nothing to check or copy
        return fields
    segments = cast(Mapping[str, Mapping[str, str]], segments)
    if not _SEGMENT_NAMES.issuperset(segments):
        unknown = set(segments) - _SEGMENT_NAMES
        raise ValueError(f"unknown segments: {', '.join(sorted(unknown))}")
    return {name: dict(ref) for name, ref in segments.items()}


_SEGMENT_NAMES = frozenset({"department", "class", "location"})


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def customer_body(
    company_name: str,
    *,
    currency: str,
    subsidiary_id: str | None = None,
    email: str | None = None,
    currency_id: str | None = None,
) -> dict[str, Any]:
    """A company customer (``companyName``; ``subsidiary`` is required in OneWorld accounts)."""
    if not company_name.strip():
        raise ValueError("company_name must not be blank")
    return _without_none(
        {
            "companyName": company_name,
            "isPerson": False,
            "currency": _currency_ref(currency, currency_id),
            "subsidiary": _ref(subsidiary_id) if subsidiary_id else None,
            "email": email,
        }
    )


def job_body(
    name: str,
    *,
    customer_id: str,
    start_date: date,
    end_date: date | None = None,
    currency: str,
    currency_id: str | None = None,
) -> dict[str, Any]:
    """A project (``job``) under its customer (``parent``)."""
    if not name.strip():
        raise ValueError("name must not be blank")
    if end_date is not None and end_date < start_date:
        raise ValueError("end_date is before start_date")
    return _without_none(
        {
            "companyName": name,
            "parent": _ref(customer_id),
            "startDate": start_date.isoformat(),
            # Field name for the planned end of a project (shape unconfirmed).
            "projectedEndDate": end_date.isoformat() if end_date else None,
            "currency": _currency_ref(currency, currency_id),
        }
    )


def time_bill_body(
    *,
    job_id: str,
    employee_external_id: str,
    tran_date: date,
    hours: Decimal,
    rate: Decimal | None,
    is_billable: bool,
    item_id: str | None,
    memo: str | None,
    segments: Mapping[str, Mapping[str, str]] | SegmentsLike | None = None,
) -> dict[str, Any]:
    """A time entry against a project (``customer`` is the job), hours and rate exact.

    ``segments`` is ``{"department"|"class"|"location": {"id": ...}}`` or ``ErpMapping.segments(...)``.
    """
    # One body per approved entry, so the helpers' checks are made here, inline, in the same order:
    # _as_decimal (a finite Decimal as it is), then _ref for the job and the item.
    number = hours if type(hours) is Decimal and hours.is_finite() else _as_decimal(hours)
    if number <= 0:
        raise ValueError("hours must be positive")
    if not employee_external_id:
        raise ValueError("employee_external_id must not be empty")
    if not job_id:
        raise ValueError("a reference needs an internal id")
    # Built in place, leaving out what is not known (no second dict to filter).
    body: dict[str, Any] = {
        "customer": {"id": job_id if type(job_id) is str else str(job_id)},  # _ref(job_id)
        "employee": {"externalId": employee_external_id},
        "tranDate": _day_text(tran_date),
        "hours": _plain_text(number),  # decimal_string(hours)
        "isBillable": bool(is_billable),
    }
    if rate is not None:
        body["rate"] = _rate_string(rate, 2)
    if item_id:
        body["item"] = {"id": item_id if type(item_id) is str else str(item_id)}  # _ref(item_id)
    if memo is not None:
        body["memo"] = memo
    if segments:
        as_fields = getattr(segments, "as_fields", None)  # _segment_fields(segments), its usual case inline
        body.update(as_fields() if as_fields is not None else _segment_fields(segments))
    return body


def expense_report_body(
    *,
    employee_external_id: str,
    job_id: str,
    tran_date: date,
    amount: Decimal,
    currency: str,
    is_billable: bool,
    category_id: str | None,
    memo: str | None,
    segments: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """An approved expense as a one-line ``expenseReport`` for the employee, charged to the project."""
    if not employee_external_id:
        raise ValueError("employee_external_id must not be empty")
    if _as_decimal(amount) <= 0:
        raise ValueError("amount must be positive")
    line = _without_none(
        {
            "amount": money_string(amount, currency),
            "currency": _currency_ref(currency, None),
            "customer": _ref(job_id),
            "isBillable": bool(is_billable),
            "category": _ref(category_id) if category_id else None,
            "expenseDate": tran_date.isoformat(),
            "memo": memo,
            **_segment_fields(segments),
        }
    )
    return _without_none(
        {"entity": {"externalId": employee_external_id}, "tranDate": tran_date.isoformat(), "memo": memo}
        | {"expense": {"items": [line]}}
    )


def invoice_body(
    *,
    customer_id: str,
    job_id: str | None,
    tran_date: date,
    currency: str,
    memo: str | None,
    lines: Sequence[InvoiceLine],
    currency_id: str | None = None,
    subsidiary_id: str | None = None,
    segments: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """An invoice to ``customer_id`` for project ``job_id`` with ``item.items`` lines.

    ``segments`` is ``{"department"|"class"|"location": {"id": ...}}`` (``ErpMapping.segments``).
    """
    return _sales_transaction(
        customer_id=customer_id,
        job_id=job_id,
        tran_date=tran_date,
        currency=currency,
        memo=memo,
        lines=lines,
        currency_id=currency_id,
        subsidiary_id=subsidiary_id,
        segments=segments,
        created_from=None,
    )


def credit_memo_body(
    *,
    customer_id: str,
    job_id: str | None,
    tran_date: date,
    currency: str,
    memo: str | None,
    lines: Sequence[InvoiceLine],
    invoice_id: str | None = None,
    currency_id: str | None = None,
    subsidiary_id: str | None = None,
    segments: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """A ``creditMemo``: the credited amounts as positive lines, ``createdFrom`` the invoice credited."""
    if any(_as_decimal(line.amount) <= 0 for line in lines):
        raise ValueError("credit memo lines carry the credited amount as a positive number")
    return _sales_transaction(
        customer_id=customer_id,
        job_id=job_id,
        tran_date=tran_date,
        currency=currency,
        memo=memo,
        lines=lines,
        currency_id=currency_id,
        subsidiary_id=subsidiary_id,
        segments=segments,
        created_from=invoice_id,
    )


def _sales_transaction(
    *,
    customer_id: str,
    job_id: str | None,
    tran_date: date,
    currency: str,
    memo: str | None,
    lines: Sequence[InvoiceLine],
    currency_id: str | None,
    subsidiary_id: str | None,
    segments: Mapping[str, Mapping[str, str]] | None,
    created_from: str | None,
) -> dict[str, Any]:
    if not lines:
        raise ValueError("a transaction needs at least one line")
    places = currency_minor_units(currency)
    items = [
        _without_none(
            {
                "item": _ref(line.item_id),
                "description": line.description,
                "quantity": decimal_string(line.quantity),
                "rate": _rate_string(line.rate, places),
                "amount": money_string(line.amount, currency),
                "taxCode": _ref(line.tax_code_id) if line.tax_code_id else None,
            }
        )
        for line in lines
    ]
    return _without_none(
        {
            "entity": _ref(customer_id),
            "job": _ref(job_id) if job_id else None,
            "createdFrom": _ref(created_from) if created_from else None,
            "subsidiary": _ref(subsidiary_id) if subsidiary_id else None,
            "tranDate": tran_date.isoformat(),
            "currency": _currency_ref(currency, currency_id),
            "memo": memo,
            **_segment_fields(segments),
            "item": {"items": items},
        }
    )


def employee_body(
    name: str,
    *,
    email: str | None,
    inactive: bool,
    release_date: date | None,
    labor_cost: Decimal | None,
    labor_cost_currency: str | None,
    title: str | None,
    subsidiary_id: str | None = None,
    segments: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """An ``employee`` from the HRIS worker: names, email, active flag, labour cost (the cost rate).

    ``name`` is split at its last space (``firstName`` / ``lastName``, both required); ``laborCost``
    is the hourly cost rate in the employee subsidiary's currency (shape unconfirmed: NetSuite keeps
    it in the base currency), ``releaseDate`` the termination date.
    """
    words = name.split()
    if not words:
        raise ValueError("name must not be blank")
    first, last = (" ".join(words[:-1]), words[-1]) if len(words) > 1 else (words[0], words[0])
    if labor_cost is not None and (labor_cost_currency is None or _as_decimal(labor_cost) < 0):
        raise ValueError("labor_cost needs its currency and must not be negative")
    return _without_none(
        {
            "firstName": first,
            "lastName": last,
            "email": email,
            "isInactive": bool(inactive),
            "releaseDate": release_date.isoformat() if release_date else None,
            "laborCost": _rate_string(labor_cost, currency_minor_units(labor_cost_currency))
            if labor_cost is not None and labor_cost_currency
            else None,
            "title": title,
            "subsidiary": _ref(subsidiary_id) if subsidiary_id else None,
            **{k: v for k, v in _segment_fields(segments).items() if k in ("department", "location")},
        }
    )


def resource_allocation_body(
    *,
    job_id: str,
    employee_external_id: str,
    hours: Decimal,
    start_date: date,
    end_date: date,
    notes: str | None = None,
) -> dict[str, Any]:
    """A ``resourceAllocation`` of ``hours`` of a worker to a project (allocation unit: hours).

    ``allocationUnit`` is the select value ``H`` (hours, as opposed to ``P``, percent of time) and
    ``allocationType`` ``1`` a hard allocation (select values unconfirmed for real accounts).
    """
    if _as_decimal(hours) <= 0:
        raise ValueError("hours must be positive")
    if end_date < start_date:
        raise ValueError("end_date is before start_date")
    if not employee_external_id:
        raise ValueError("employee_external_id must not be empty")
    return _without_none(
        {
            "project": _ref(job_id),
            "allocationResource": {"externalId": employee_external_id},
            "allocationAmount": decimal_string(hours),
            "allocationUnit": {"id": "H"},
            "allocationType": {"id": "1"},
            "startDate": start_date.isoformat(),
            "endDate": end_date.isoformat(),
            "notes": notes,
        }
    )


def job_cost_forecast_body(*, labor_cost: Decimal, currency: str, hours: Decimal) -> dict[str, Any]:
    """The project's forecast labour cost and hours (``estimatedLaborCost``, ``estimatedTime``)."""
    if _as_decimal(labor_cost) < 0 or _as_decimal(hours) < 0:
        raise ValueError("a cost forecast is never negative")
    return {
        "estimatedLaborCost": money_string(labor_cost, currency),
        "estimatedTime": decimal_string(hours),
    }


@lru_cache(maxsize=4096)  # a pure function of two strings, asked once per record for a few thousand ids
def external_id(kind: str, canonical_id: str) -> str:
    """``r2r-<kind>-<canonical id>`` restricted to ``[A-Za-z0-9_-]``, deterministic.

    Characters outside the set become ``_``; when anything was replaced or the result would be
    too long, a hash of the original is appended so that distinct ids stay distinct.
    """
    if not kind or not canonical_id:
        raise ValueError("kind and canonical_id must not be empty")
    raw = f"r2r-{kind}-{canonical_id}"
    clean = _EXTERNAL_ID_ALLOWED.sub("_", raw)
    if clean == raw and len(clean) <= MAX_EXTERNAL_ID_LENGTH:
        return clean
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    keep = MAX_EXTERNAL_ID_LENGTH - _HASH_CHARS - 1
    return f"{clean[:keep]}-{digest}"
