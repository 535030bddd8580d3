"""The cost of one output row, in integer pUSD, by the billing rules of docs/pricing.md.

- Batch rates are the table's explicit batch rates (about 50% of on-demand; flash-lite's batch audio is not).
- Cached input pays the cached rate, never halved again: cache and batch discounts do not stack.
  Input includes the cached input, so uncached input = input - cached input.
- Reasoning tokens are output; tool-use input is input.
- Long context: a row whose input is above the tier's threshold pays the higher rates for ALL its tokens.
- Audio input pays the audio rate, cached audio input the cached audio rate.
- Embedding models: tokens (or characters) at their one input rate.
Only `succeeded` rows cost anything; failed, malformed and no-usage rows are free.
"""

from __future__ import annotations

from proxy.metering.pricing import Rates, TierRates
from proxy.providers.base import SUCCEEDED, RowUsage

# What a row bills at each rate of its tier, in this order (the fields of TierRates they are priced with).
UNIT_RATES = ("input", "audio_input", "cached_input", "cached_audio_input", "output")
Units = tuple[int, int, int, int, int]
NO_UNITS: Units = (0, 0, 0, 0, 0)


def is_long_context(usage: RowUsage, rates: Rates) -> bool:
    """Whether this row's prompt is above the model's long-context threshold (the tier is decided per row)."""
    long_context = rates.long_context
    return long_context is not None and usage.input > long_context.above_prompt_tokens


def tier_for(usage: RowUsage, rates: Rates, *, batch: bool = True) -> TierRates:
    """The rates that apply to this row: its mode, and the long-context tier when its prompt is above it."""
    if is_long_context(usage, rates):
        assert rates.long_context is not None
        return rates.long_context.batch if batch else rates.long_context.on_demand
    return rates.batch if batch else rates.on_demand


def row_units(usage: RowUsage, rates: Rates) -> Units:
    """The tokens (or characters) the row bills at each rate of UNIT_RATES; all 0 unless it succeeded.

    Prices are linear in these units, so a job's cost is the sum of its rows' units per tier, priced once.
    """
    if usage.kind != SUCCEEDED:
        return NO_UNITS
    if rates.kind == "embedding":
        if rates.unit == "character":
            return (usage.embedding_characters, 0, 0, 0, 0)
        # An embedding row reports embedding tokens; count plain input too, should a row report it that way,
        # so that tokens are never dropped.
        return (usage.embedding_tokens + usage.input, 0, 0, 0, 0)
    prompt = usage.input
    cached = usage.cached_input
    audio_cached = usage.audio_cached_input
    audio_prompt = usage.audio_input
    # embedding_tokens is 0 on generation rows; counted so that no token a row reports is ever dropped
    other_input = usage.tool_use_input + usage.embedding_tokens
    output = usage.output + usage.reasoning
    uncached = prompt - cached if prompt > cached else 0
    if not audio_prompt and not audio_cached:  # the common case, without the audio shares
        return (uncached + other_input, 0, cached, 0, output)
    # Clamp so that inconsistent counts (parts larger than their whole) never make a negative share.
    if audio_cached > cached:
        audio_cached = cached
    audio_uncached = audio_prompt - audio_cached if audio_prompt > audio_cached else 0
    if audio_uncached > uncached:
        audio_uncached = uncached
    return (uncached - audio_uncached + other_input, audio_uncached, cached - audio_cached, audio_cached, output)


def price_units(units: Units | list[int], tier: TierRates) -> int:
    """The pUSD of units billed at one tier's rates (exact integer arithmetic)."""
    return (units[0] * tier.input + units[1] * tier.audio_input + units[2] * tier.cached_input
            + units[3] * tier.cached_audio_input + units[4] * tier.output)


def price_row(usage: RowUsage, rates: Rates, *, batch: bool = True) -> int:
    """The row's cost in pUSD (exact integer arithmetic, per token or character)."""
    if usage.kind != SUCCEEDED:
        return 0
    return price_units(row_units(usage, rates), tier_for(usage, rates, batch=batch))
