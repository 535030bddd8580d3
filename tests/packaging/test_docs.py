"""docs/ says what the code does: the rates of docs/pricing.md are those of pricing/, its worked line is what the
metering charges, and docs/design.md names every --by key of the reports."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from proxy.metering.cost import price_row
from proxy.metering.pricing import PricingTable, TierRates
from proxy.money import format_usd, rate_to_pico_per_unit
from proxy.providers.base import SUCCEEDED, RowUsage
from proxy.reports.query import GROUP_KEYS

REPO = Path(__file__).resolve().parents[2]
PRICING_DOC = (REPO / "docs" / "pricing.md").read_text()
DESIGN_DOC = (REPO / "docs" / "design.md").read_text()
TABLE = PricingTable.load(REPO / "pricing")
AT = datetime(2026, 6, 1, tzinfo=UTC)


def _pico(rate: str) -> int:
    return rate_to_pico_per_unit(rate)


def _tier(model: str, row: str) -> tuple[TierRates, TierRates]:
    rates = TABLE.rates_for("vertex", model, AT)
    assert rates is not None, model
    if "above" in row:
        assert rates.long_context is not None
        return rates.long_context.on_demand, rates.long_context.batch
    return rates.on_demand, rates.batch


def test_the_rate_table_of_docs_pricing_is_the_pricing_folder() -> None:
    table = PRICING_DOC.split("<!-- rates:start -->", 1)[1].split("<!-- rates:end -->", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[3:] if line]
    generative = {m for (p, m), rates in TABLE.models.items() if p == "vertex" and rates[-1].kind == "generative"}
    assert {row[0].split(" (", 1)[0] for row in rows} == generative
    for label, text_input, audio_input, output, cached, cached_audio in rows:
        on_demand, batch = _tier(label.split(" (", 1)[0], label)
        for cell, on_demand_rate, batch_rate in ((text_input, on_demand.input, batch.input),
                                                 (audio_input, on_demand.audio_input, batch.audio_input),
                                                 (output, on_demand.output, batch.output)):
            shown_on_demand, shown_batch = cell.split(" / ")
            assert (_pico(shown_on_demand), _pico(shown_batch)) == (on_demand_rate, batch_rate), (label, cell)
        assert (_pico(cached), _pico(cached_audio)) == (batch.cached_input, batch.cached_audio_input), label


def test_the_openai_rate_table_of_docs_pricing_is_the_pricing_folder_for_openai_and_azure() -> None:
    table = PRICING_DOC.split("<!-- openai-rates:start -->", 1)[1].split("<!-- openai-rates:end -->", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[3:] if line]
    for provider in ("openai", "azure"):
        assert {row[0] for row in rows} == {m for (p, m) in TABLE.models if p == provider}
        for model, text_input, output, cached in rows:
            rates = TABLE.rates_for(provider, model, AT)
            assert rates is not None, model
            shown = [cell.split(" / ") for cell in (text_input, output)]
            assert (_pico(shown[0][0]), _pico(shown[0][1])) == (rates.on_demand.input, rates.batch.input), model
            if rates.kind == "generative":
                assert (_pico(shown[1][0]), _pico(shown[1][1])) == (rates.on_demand.output, rates.batch.output)
                assert _pico(cached) == rates.batch.cached_input, model
            else:
                assert (output, cached) == ("-", "-"), model
    o4 = TABLE.rates_for("openai", "o4-mini", AT)
    assert o4 is not None
    worked = price_row(RowUsage(SUCCEEDED, input=2_000, cached_input=1_000, output=300, reasoning=700), o4)
    assert f"**{format_usd(worked)}** USD" in PRICING_DOC and format_usd(worked) == "0.003025"


def test_the_worked_line_of_docs_pricing_is_what_the_metering_charges() -> None:
    line = PRICING_DOC.split("## A worked line", 1)[1]
    assert "`promptTokenCount` 1000 (of which `cachedContentTokenCount` 400)" in " ".join(line.split())
    total = re.search(r"\*\*line total\*\* \| \| \| \*\*([\d.]+)\*\*", line)
    assert total is not None
    rates = TABLE.rates_for("vertex", "gemini-2.5-flash", AT)
    assert rates is not None
    cost = price_row(RowUsage(SUCCEEDED, input=1000, cached_input=400, output=200, reasoning=300), rates)
    assert format_usd(cost) == total.group(1) == "0.000727"


def test_docs_design_names_every_report_key() -> None:
    sentence = " ".join(DESIGN_DOC.split("`--by` (or `?by=`) takes any of", 1)[1].split(".", 1)[0].split())
    assert tuple(re.findall(r"`(\w+)`", sentence)) == GROUP_KEYS
