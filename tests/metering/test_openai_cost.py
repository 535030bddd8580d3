"""OpenAI and Azure OpenAI rows priced from the shipped tables: exact pUSD, each figure computed here by hand from
the published USD-per-1M batch rates (RowUsage is what `proxy/providers/openai_batch/usage.py` reports)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from proxy.metering.cost import price_row
from proxy.metering.pricing import PricingTable, Rates
from proxy.money import format_usd, to_decimal_usd
from proxy.providers.base import FAILED, MALFORMED, NO_USAGE, SUCCEEDED, RowUsage

REPO_PRICING = Path(__file__).resolve().parents[2] / "pricing"
AT = datetime(2026, 11, 30, tzinfo=UTC)
TABLE = PricingTable.load(REPO_PRICING)
MILLION = Decimal(1_000_000)
GENERATIVE = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o4-mini")
EMBEDDING = ("text-embedding-3-small", "text-embedding-3-large")


def rates(provider: str, model: str) -> Rates:
    found = TABLE.rates_for(provider, model, AT)
    assert found is not None
    return found


def usd(*terms: tuple[int, str]) -> Decimal:
    """Sum of tokens x published USD-per-1M rate, in exact Decimal USD."""
    return sum((Decimal(tokens) * Decimal(rate) / MILLION for tokens, rate in terms), Decimal(0))


def test_every_model_the_emulated_deployments_serve_is_priced_under_both_providers() -> None:
    for provider in ("openai", "azure"):
        for model in GENERATIVE + EMBEDDING:
            found = rates(provider, model)
            assert (found.provider, found.model, found.kind) == (
                provider, model, "embedding" if model in EMBEDDING else "generative")
            assert found.file == f"{provider}-{model}.toml"
    # Batch rates: half the standard input and output; cached input at the standard cached rate (not halved).
    gpt41 = rates("openai", "gpt-4.1")
    assert (gpt41.batch.input, gpt41.batch.cached_input, gpt41.batch.output) == (1_000_000, 500_000, 4_000_000)
    assert (gpt41.on_demand.input, gpt41.on_demand.cached_input, gpt41.on_demand.output) == (
        2_000_000, 500_000, 8_000_000)
    assert "UNCONFIRMED" in dict(rates("azure", "gpt-4o-mini").notes)["on_demand.input"]
    assert "UNCONFIRMED" in dict(rates("openai", "text-embedding-3-small").notes)["batch.input"]


def test_uncached_cached_and_output_of_a_gpt_4_1_line() -> None:
    usage = RowUsage(SUCCEEDED, input=10_000, cached_input=4_000, output=1_000)
    cost = price_row(usage, rates("openai", "gpt-4.1"))
    # 6,000 uncached x 1.00 + 4,000 cached x 0.50 + 1,000 output x 4.00, per 1M
    assert to_decimal_usd(cost) == usd((6_000, "1"), (4_000, "0.50"), (1_000, "4")) == Decimal("0.012")
    assert cost == 12_000_000_000


def test_reasoning_tokens_are_billed_as_output_on_o4_mini() -> None:
    # completion_tokens 1,000 of which reasoning_tokens 700: the reader reports 300 output + 700 reasoning, so that
    # each completion token is billed once at the output rate.
    usage = RowUsage(SUCCEEDED, input=2_000, cached_input=1_000, output=300, reasoning=700)
    cost = price_row(usage, rates("openai", "o4-mini"))
    assert to_decimal_usd(cost) == usd((1_000, "0.55"), (1_000, "0.275"), (1_000, "2.20")) == Decimal("0.003025")
    assert format_usd(cost) == "0.003025"


def test_an_azure_line_and_its_dated_snapshot_name() -> None:
    usage = RowUsage(SUCCEEDED, input=1_000_000, cached_input=0, output=1_000_000)
    # The output lines name the snapshot (gpt-4o-mini-2024-07-18): the same price as the deployment's model.
    snapshot = rates("azure", "gpt-4o-mini-2024-07-18")
    assert snapshot.model == "gpt-4o-mini"
    assert to_decimal_usd(price_row(usage, snapshot)) == usd((1_000_000, "0.075"), (1_000_000, "0.30")) == Decimal(
        "0.375")
    cached = RowUsage(SUCCEEDED, input=1_000, cached_input=1_000, output=0)
    # gpt-4o-mini's cached rate (0.075) equals its batch input rate: a fully cached line costs as an uncached one.
    assert price_row(cached, snapshot) == price_row(RowUsage(SUCCEEDED, input=1_000), snapshot) == 75_000_000


def test_embeddings_by_token() -> None:
    small, large = rates("openai", "text-embedding-3-small"), rates("azure", "text-embedding-3-large")
    # An embedding row's prompt_tokens may come as embedding tokens or as input: both are billed, once.
    assert to_decimal_usd(price_row(RowUsage(SUCCEEDED, embedding_tokens=12_345), small)) == usd(
        (12_345, "0.01")) == Decimal("0.00012345")
    assert to_decimal_usd(price_row(RowUsage(SUCCEEDED, input=2_000), large)) == usd((2_000, "0.065")) == Decimal(
        "0.00013")


@pytest.mark.parametrize("kind", [FAILED, NO_USAGE, MALFORMED])
def test_lines_that_did_not_succeed_are_free(kind: str) -> None:
    usage = RowUsage(kind, input=1_000, cached_input=10, output=100, reasoning=50)
    assert price_row(usage, rates("openai", "gpt-4o")) == 0
    assert price_row(usage, rates("azure", "gpt-4o")) == 0


def test_a_model_without_a_table_is_unpriced_never_free() -> None:
    # No rates: the job is marked unpriced by metering, never billed $0.
    assert TABLE.rates_for("openai", "gpt-5", AT) is None
    assert TABLE.rates_for("azure", "gemini-2.5-flash", AT) is None
    assert TABLE.rates_for("vertex", "gpt-4o", AT) is None
    # An alias belongs to its provider: Azure's snapshot name is not a Vertex model.
    assert TABLE.rates_for("vertex", "gpt-4o-mini-2024-07-18", AT) is None


def test_budget_estimates_know_each_model_s_largest_output() -> None:
    assert [TABLE.max_output_tokens("openai", model) for model in GENERATIVE] == [
        16_384, 16_384, 32_768, 32_768, 32_768, 100_000]
    assert [TABLE.max_output_tokens("azure", model) for model in EMBEDDING] == [0, 0]
