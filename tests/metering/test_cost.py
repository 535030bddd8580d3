"""Pricing rows: exact pUSD by the billing rules, each figure computed here from the published USD rates."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from proxy.metering.cost import price_row
from proxy.metering.pricing import PricingTable, Rates
from proxy.money import format_usd, to_decimal_usd
from proxy.providers.base import FAILED, MALFORMED, NO_USAGE, SUCCEEDED, RowUsage
from proxy.providers.vertex.usage import parse_row
from tests.support.samples import SAMPLES

REPO_PRICING = Path(__file__).resolve().parents[2] / "pricing"
PREDICTIONS = SAMPLES / "vertex-predictions.jsonl"
AT = datetime(2026, 6, 1, tzinfo=UTC)
TABLE = PricingTable.load(REPO_PRICING)
MILLION = Decimal(1_000_000)


def rates(model: str) -> Rates:
    found = TABLE.rates_for("vertex", model, AT)
    assert found is not None
    return found


def usd(*terms: tuple[int, str]) -> Decimal:
    """Sum of tokens x published USD-per-1M rate, in exact Decimal USD."""
    return sum((Decimal(tokens) * Decimal(rate) / MILLION for tokens, rate in terms), Decimal(0))


def test_the_worked_line_of_docs_pricing() -> None:
    usage = RowUsage(SUCCEEDED, input=1000, cached_input=400, output=200, reasoning=300)
    cost = price_row(usage, rates("gemini-2.5-flash"))
    assert cost == 727_000_000
    assert format_usd(cost) == "0.000727"
    assert to_decimal_usd(cost) == usd((600, "0.15"), (400, "0.03"), (500, "1.25")) == Decimal("0.000727")


def test_the_real_sample_rows_to_the_micro_dollar() -> None:
    lite = rates("gemini-2.5-flash-lite")
    costs = [price_row(parse_row(line), lite) for line in PREDICTIONS.read_bytes().splitlines()]
    # 9 prompt + 10 output, 9 prompt + 9 output, at batch 0.05 / 0.20; the failed row is free.
    expected = [usd((9, "0.05"), (10, "0.20")), usd((9, "0.05"), (9, "0.20")), Decimal(0)]
    assert [to_decimal_usd(cost) for cost in costs] == expected
    assert expected == [Decimal("0.00000245"), Decimal("0.00000225"), 0]
    assert format_usd(sum(costs)) == "0.0000047"


def test_long_context_tier_is_decided_per_row_on_the_prompt() -> None:
    pro = rates("gemini-2.5-pro")
    at_threshold = RowUsage(SUCCEEDED, input=200_000, cached_input=50_000, output=1_000, reasoning=500)
    above = RowUsage(SUCCEEDED, input=200_001, cached_input=50_000, output=1_000, reasoning=500)
    assert to_decimal_usd(price_row(at_threshold, pro)) == usd((150_000, "0.625"), (50_000, "0.125"), (1_500, "5"))
    # Above 200k, ALL the row's tokens (input, cached and output) take the higher rates.
    assert to_decimal_usd(price_row(above, pro)) == usd((150_001, "1.25"), (50_000, "0.25"), (1_500, "7.50"))
    assert to_decimal_usd(price_row(above, pro, batch=False)) == usd((150_001, "2.50"), (50_000, "0.25"),
                                                                      (1_500, "15"))
    # Models without a tier never switch.
    flash = RowUsage(SUCCEEDED, input=900_000)
    assert to_decimal_usd(price_row(flash, rates("gemini-2.5-flash"))) == usd((900_000, "0.15"))


def test_cached_tokens_are_not_discounted_twice() -> None:
    usage = RowUsage(SUCCEEDED, input=10_000, cached_input=10_000)
    # Batch cached = the cached rate (0.125), not half of it (0.0625).
    assert to_decimal_usd(price_row(usage, rates("gemini-2.5-pro"))) == usd((10_000, "0.125")) == Decimal("0.00125")
    assert price_row(usage, rates("gemini-2.5-pro"), batch=False) == price_row(usage, rates("gemini-2.5-pro"))


def test_thoughts_are_output_and_tool_use_prompt_is_input() -> None:
    flash = rates("gemini-2.5-flash")
    assert price_row(RowUsage(SUCCEEDED, reasoning=1000), flash) == price_row(
        RowUsage(SUCCEEDED, output=1000), flash)
    assert to_decimal_usd(price_row(RowUsage(SUCCEEDED, reasoning=1000), flash)) == usd((1000, "1.25"))
    usage = RowUsage(SUCCEEDED, input=100, tool_use_input=40, output=10)
    assert to_decimal_usd(price_row(usage, flash)) == usd((140, "0.15"), (10, "1.25"))


def test_audio_on_flash_and_flash_lite() -> None:
    usage = RowUsage(SUCCEEDED, input=10_000, cached_input=3_000, audio_input=4_000, audio_cached_input=1_000,
                     output=100)
    # uncached: 7,000 of which audio 3,000; cached: 3,000 of which audio 1,000.
    assert to_decimal_usd(price_row(usage, rates("gemini-2.5-flash"))) == usd(
        (4_000, "0.15"), (3_000, "0.50"), (2_000, "0.03"), (1_000, "0.10"), (100, "1.25"))
    # flash-lite's published batch audio rate is 0.05 (not half of 0.30).
    assert to_decimal_usd(price_row(usage, rates("gemini-2.5-flash-lite"))) == usd(
        (4_000, "0.05"), (3_000, "0.05"), (2_000, "0.01"), (1_000, "0.03"), (100, "0.20"))
    assert to_decimal_usd(price_row(usage, rates("gemini-2.5-flash-lite"), batch=False)) == usd(
        (4_000, "0.10"), (3_000, "0.30"), (2_000, "0.01"), (1_000, "0.03"), (100, "0.40"))


def test_gemini_2_0_flash_has_no_batch_caching() -> None:
    usage = RowUsage(SUCCEEDED, input=8_000, cached_input=6_000, output=500)
    assert to_decimal_usd(price_row(usage, rates("gemini-2.0-flash-001"))) == usd((8_000, "0.075"), (500, "0.30"))
    assert to_decimal_usd(price_row(usage, rates("gemini-2.0-flash-lite"))) == usd((8_000, "0.0375"), (500, "0.15"))


def test_inconsistent_counts_never_go_negative() -> None:
    flash = rates("gemini-2.5-flash")
    # More cached than prompt: the cached tokens are billed as cached, nothing uncached.
    assert to_decimal_usd(price_row(RowUsage(SUCCEEDED, input=10, cached_input=50), flash)) == usd((50, "0.03"))
    # More audio than the uncached prompt: capped at it.
    assert to_decimal_usd(price_row(RowUsage(SUCCEEDED, input=10, audio_input=99), flash)) == usd((10, "0.50"))


def test_embeddings_by_token_and_by_character() -> None:
    tokens = parse_row(b'{"predictions":[{"embeddings":{"statistics":{"token_count":2500}}}],'
                       b'"instance":{"content":"abc"}}')
    assert to_decimal_usd(price_row(tokens, rates("gemini-embedding-001"))) == usd((2500, "0.12"))
    assert to_decimal_usd(price_row(tokens, rates("gemini-embedding-001"), batch=False)) == usd((2500, "0.15"))
    chars = parse_row('{"predictions":[{"embeddings":{"statistics":{"token_count":3}}}],'
                      '"instance":{"content":"Grüße, Welt"}}'.encode())
    assert chars.embedding_characters == 11
    assert to_decimal_usd(price_row(chars, rates("text-embedding-005"))) == usd((11, "0.025"))


@pytest.mark.parametrize("kind", [FAILED, MALFORMED, NO_USAGE])
def test_rows_that_did_not_succeed_are_free(kind: str) -> None:
    assert price_row(RowUsage(kind, input=1000, output=1000), rates("gemini-2.5-pro")) == 0
