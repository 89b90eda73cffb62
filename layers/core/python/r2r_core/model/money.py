"""Money: ``Decimal`` plus an ISO 4217 currency, rounded explicitly per currency.

Rounding rule (documented in the README): half-up to the currency's minor unit, applied
once per invoice line and per charge; totals are sums of already-rounded amounts.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

# ISO 4217 minor units of the currencies r2r bills in; anything else is refused rather than guessed.
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        ("USD", "EUR", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "INR", "SGD", "HKD",
         "CNY", "ZAR", "BRL", "MXN", "HUF", "CZK", "AED", "SAR", "ILS", "TRY", "RON", "PHP", "MYR", "THB",
         "IDR", "TWD", "COP", "ARS", "PEN", "EGP", "NGN", "KES", "QAR", "UYU"),
        2,
    ),
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                     "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}  # fmt: skip


class UnknownCurrency(ValueError):
    """A currency r2r has no minor-unit rule for."""


def minor_units(currency: str) -> int:
    """Digits after the decimal point of an ISO 4217 currency (``USD`` 2, ``JPY`` 0, ``KWD`` 3)."""
    try:
        return MINOR_UNITS[currency.strip().upper()]
    except KeyError:
        raise UnknownCurrency(f"currency {currency!r} is not an ISO 4217 code r2r bills in") from None


def minor_unit_quantum(currency: str) -> Decimal:
    quantum = _QUANTA.get(currency)
    return quantum if quantum is not None else Decimal(1).scaleb(-minor_units(currency))


_QUANTA = {code: Decimal(1).scaleb(-places) for code, places in MINOR_UNITS.items()}


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the minor unit of ``currency`` (USD 2 places, JPY 0, KWD 3)."""
    return amount.quantize(minor_unit_quantum(currency), rounding=ROUND_HALF_UP)


class Money(BaseModel):
    """An amount in a currency. Serialised with the amount as a string, never a float."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    amount: Decimal = Field(allow_inf_nan=False, description='Exact decimal amount, e.g. "1500.00".')
    currency: CurrencyCode

    @model_validator(mode="after")
    def _known_currency(self) -> Self:
        minor_unit_quantum(self.currency)
        return self

    @classmethod
    def of(cls, amount: Decimal | str | int, currency: str) -> Money:
        return cls(amount=Decimal(amount), currency=currency)

    def rounded(self) -> Money:
        return Money(amount=round_money(self.amount, self.currency), currency=self.currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency} amounts")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(amount=Decimal(0), currency=currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
