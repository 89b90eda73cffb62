from decimal import Decimal

import pytest
from pydantic import ValidationError

from r2r_core.model.money import Money, UnknownCurrency, round_money


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("6134.375", "USD", "6134.38"),  # half-up, not banker's rounding (which would give .38 too)
        ("0.125", "USD", "0.13"),  # banker's rounding would give 0.12
        ("-0.125", "USD", "-0.13"),  # half away from zero for credits
        ("1500.5", "JPY", "1501"),  # no minor unit
        ("12.3455", "KWD", "12.346"),  # three minor digits
        ("10", "EUR", "10.00"),
    ],
)
def test_round_money_is_half_up_to_the_currency_minor_unit(amount: str, currency: str, expected: str) -> None:
    assert str(round_money(Decimal(amount), currency)) == expected


def test_unknown_currency_is_refused_not_guessed() -> None:
    with pytest.raises(UnknownCurrency, match="XYZ"):
        round_money(Decimal(1), "XYZ")
    with pytest.raises(ValidationError, match="XYZ"):
        Money(amount=Decimal(1), currency="XYZ")


def test_money_serialises_amount_as_string_and_never_float() -> None:
    money = Money.of("0.10", "USD")
    assert money.model_dump(mode="json") == {"amount": "0.10", "currency": "USD"}
    assert (money + Money.of("0.20", "USD")).amount == Decimal("0.30")


def test_money_refuses_mixing_currencies() -> None:
    with pytest.raises(ValueError, match="USD and EUR"):
        _ = Money.of(1, "USD") + Money.of(1, "EUR")


def test_money_rejects_nan_and_infinity() -> None:
    with pytest.raises(ValidationError):
        Money(amount=Decimal("NaN"), currency="USD")
