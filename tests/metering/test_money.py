"""Exact money: rates to integer pUSD per unit, and back to exact USD."""

from __future__ import annotations

from decimal import Decimal

import pytest

from proxy.money import InexactRate, format_usd, rate_to_pico_per_unit, to_decimal_usd


@pytest.mark.parametrize(("rate", "pico"), [
    ("0.15", 150_000), ("1.25", 1_250_000), ("0.0375", 37_500), ("10", 10_000_000), ("0.000001", 1),
    (Decimal("7.50"), 7_500_000), ("0", 0),
])
def test_rate_per_million_is_whole_pico_per_unit(rate: str | Decimal, pico: int) -> None:
    assert rate_to_pico_per_unit(rate) == pico


@pytest.mark.parametrize("rate", ["0.0000001", "0.1234567", "abc", "-0.15", "NaN", "Infinity", ""])
def test_inexact_or_invalid_rate_is_refused(rate: str) -> None:
    with pytest.raises(InexactRate):
        rate_to_pico_per_unit(rate)


@pytest.mark.parametrize(("pico", "text"), [
    (727_000_000, "0.000727"), (0, "0.00"), (10**12, "1.00"), (1, "0.000000000001"),
    (1_500_000_000_000, "1.50"), (123 * 10**12 + 456_789, "123.000000456789"), (-2_450_000, "-0.00000245"),
])
def test_format_usd_is_exact_with_at_least_two_decimals(pico: int, text: str) -> None:
    assert format_usd(pico) == text


def test_to_decimal_usd_is_exact() -> None:
    assert to_decimal_usd(727_000_000) == Decimal("0.000727")
    assert to_decimal_usd(10**30 + 1) == Decimal("1000000000000000000.000000000001")
