"""Exact money: integers of picodollars (pUSD), never float.

1 USD = 10**12 pUSD. Google publishes rates in USD per 1M tokens (or characters) with at most 6 decimals,
so every published rate is a whole number of pUSD per token and every line's cost is an exact integer.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

PICO_PER_USD = 10**12
UNITS_PER_RATE = 10**6  # rates are quoted per 1M tokens or characters
PICO_PER_UNIT_PER_USD_PER_MILLION = PICO_PER_USD // UNITS_PER_RATE  # 1 USD/1M units = 10**6 pUSD/unit


class InexactRate(ValueError):
    """A rate that is not a whole number of pUSD per unit (more than 6 decimals of USD per 1M), or not a number."""


def rate_to_pico_per_unit(rate_per_million: Decimal | str) -> int:
    """USD per 1M units (tokens or characters) -> integer pUSD per unit; refuse a rate that is not exact."""
    try:
        rate = rate_per_million if isinstance(rate_per_million, Decimal) else Decimal(rate_per_million)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise InexactRate(f"rate {rate_per_million!r} is not a decimal number") from exc
    if not rate.is_finite():
        raise InexactRate(f"rate {rate_per_million!r} is not finite")
    if rate < 0:
        raise InexactRate(f"rate {rate_per_million!r} is negative")
    pico = rate * PICO_PER_UNIT_PER_USD_PER_MILLION
    if pico != pico.to_integral_value():
        raise InexactRate(f"rate {rate_per_million!r} USD per 1M has more than 6 decimals: not a whole pUSD per unit")
    return int(pico)


def to_decimal_usd(pico: int) -> Decimal:
    """pUSD -> USD as an exact Decimal, whatever its size (built from digits: no context rounding)."""
    sign, digits, _ = Decimal(pico).as_tuple()
    return Decimal((sign, digits, -12))


def format_usd(pico: int) -> str:
    """pUSD -> an exact USD string: as many decimals as needed, at least 2 (`727000000` -> `0.000727`)."""
    sign = "-" if pico < 0 else ""
    whole, frac = divmod(abs(pico), PICO_PER_USD)
    digits = f"{frac:012d}".rstrip("0")
    if len(digits) < 2:
        digits = digits.ljust(2, "0")
    return f"{sign}{whole}.{digits}"
