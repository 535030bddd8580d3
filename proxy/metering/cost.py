"""The cost of one output row, in integer pUSD, by the billing rules of pricing-facts.md.

- Batch rates are the table's explicit batch rates (about 50% of on-demand; flash-lite's batch audio is not).
- Cached tokens pay the cached rate, never halved again: cache and batch discounts do not stack.
  promptTokenCount includes the cached tokens, so uncached input = prompt - cached.
- Thinking tokens are output; toolUsePromptTokenCount is input.
- Long context: a row whose prompt is above the tier's threshold pays the higher rates for ALL its tokens.
- Audio prompt tokens pay the audio rate, cached audio the cached audio rate.
- Embedding models: tokens (or characters of `instance.content`) at their one input rate.
Only `succeeded` rows cost anything; failed, malformed and no-usage rows are free.
"""

from __future__ import annotations

from proxy.metering.pricing import Rates, TierRates
from proxy.metering.usage import SUCCEEDED, RowUsage


def tier_for(usage: RowUsage, rates: Rates, *, batch: bool = True) -> TierRates:
    """The rates that apply to this row: its mode, and the long-context tier when its prompt is above it."""
    long_context = rates.long_context
    if long_context is not None and usage.prompt > long_context.above_prompt_tokens:
        return long_context.batch if batch else long_context.on_demand
    return rates.batch if batch else rates.on_demand


def price_row(usage: RowUsage, rates: Rates, *, batch: bool = True) -> int:
    """The row's cost in pUSD (exact integer arithmetic, per token or character)."""
    if usage.kind != SUCCEEDED:
        return 0
    tier = tier_for(usage, rates, batch=batch)
    if rates.kind == "embedding":
        if rates.unit == "character":
            return usage.embedding_characters * tier.input
        # An embedding row reports its tokens in statistics.token_count; count promptTokenCount too, should a
        # row report it that way, so that tokens are never dropped.
        return (usage.embedding_tokens + usage.prompt) * tier.input
    prompt = usage.prompt
    cached = usage.cached
    audio_cached = usage.audio_cached
    audio_prompt = usage.audio_prompt
    input_rate = tier.input
    if not audio_prompt and not audio_cached:  # the common case, without the audio shares
        uncached = prompt - cached if prompt > cached else 0
        return (uncached * input_rate + cached * tier.cached_input
                + (usage.tool_use_prompt + usage.embedding_tokens) * input_rate
                + (usage.candidates + usage.thoughts) * tier.output)
    # Clamp so that inconsistent counts (parts larger than their whole) never make a negative share.
    if audio_cached > cached:
        audio_cached = cached
    uncached = prompt - cached if prompt > cached else 0
    audio_uncached = audio_prompt - audio_cached if audio_prompt > audio_cached else 0
    if audio_uncached > uncached:
        audio_uncached = uncached
    return (
        (uncached - audio_uncached) * input_rate
        + audio_uncached * tier.audio_input
        + (cached - audio_cached) * tier.cached_input
        + audio_cached * tier.cached_audio_input
        # embedding_tokens is 0 on Gemini rows; counted so that no token a row reports is ever dropped
        + (usage.tool_use_prompt + usage.embedding_tokens) * input_rate
        + (usage.candidates + usage.thoughts) * tier.output
    )
