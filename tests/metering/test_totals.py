"""A job's totals: line counts, token sums, the cost priced once from units per tier, and what goes to the ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from proxy.metering.cost import price_row
from proxy.metering.pricing import PricingTable, Rates
from proxy.metering.totals import MAX_PROBLEMS, JobTotals
from proxy.money import to_decimal_usd
from proxy.providers.base import FAILED, MALFORMED, NO_USAGE, SUCCEEDED, RowUsage

TABLE = PricingTable.load(Path(__file__).resolve().parents[2] / "pricing")


def rates(model: str) -> Rates:
    found = TABLE.rates_for("vertex", model, datetime(2026, 6, 1, tzinfo=UTC))
    assert found is not None
    return found


def usd(*terms: tuple[int, str]) -> Decimal:
    return sum((Decimal(tokens) * Decimal(rate) / 1_000_000 for tokens, rate in terms), Decimal(0))


def test_sums_every_kind() -> None:
    flash = rates("gemini-2.5-flash")
    totals = JobTotals(flash)
    rows = [
        RowUsage(SUCCEEDED, input=10, cached_input=4, output=3, reasoning=2, tool_use_input=1, audio_input=5,
                 audio_cached_input=1, model_version="gemini-2.5-flash"),
        RowUsage(SUCCEEDED, input=20, output=7, model_version="gemini-2.5-flash"),
        RowUsage(FAILED),
        RowUsage(NO_USAGE, model_version="gemini-2.5-flash-001"),
    ]
    for row in rows:
        totals.add(row)
    totals.add(RowUsage(MALFORMED, error="not JSON"), where="gs://b/p.jsonl row 5")
    assert totals.lines == 5
    # Row 1: 6 uncached of which 4 audio (the audio share), 2 text; 4 cached of which 1 audio; 1 tool-use; 5 output.
    # Row 2: 20 input, 7 output. Batch rates of gemini-2.5-flash.
    expected = usd((2 + 1 + 20, "0.15"), (4, "0.50"), (3, "0.03"), (1, "0.10"), (5 + 7, "1.25"))
    record = totals.to_dict()
    assert record == {
        "lines": {"succeeded": 2, "failed": 1, "malformed": 1, "no_usage": 1},
        "tokens": {"prompt": 30, "cached": 4, "candidates": 10, "thoughts": 2, "tool_use_prompt": 1,
                   "audio_prompt": 5, "audio_cached": 1, "embedding_tokens": 0, "embedding_characters": 0},
        "cost_pico": sum(price_row(row, flash) for row in rows),
        "cost_usd": str(expected),
        "model_versions": {"gemini-2.5-flash": 2, "gemini-2.5-flash-001": 1},
        "problems": ["gs://b/p.jsonl row 5: not JSON"],
    }
    assert to_decimal_usd(record["cost_pico"]) == expected
    assert json.loads(json.dumps(record)) == record


def test_an_unpriced_job_counts_everything_but_has_no_cost() -> None:
    totals = JobTotals(None)
    totals.add(RowUsage(SUCCEEDED, input=10, output=5))
    totals.add_plain(0, 1, 7, 2, 3, 0, 0)
    assert totals.cost_pico is None
    assert totals.to_dict()["cost_usd"] is None
    assert (totals.succeeded, totals.prompt, totals.cached, totals.candidates) == (2, 17, 2, 8)


def test_the_long_context_tier_is_kept_apart() -> None:
    pro = rates("gemini-2.5-pro")
    rows = [RowUsage(SUCCEEDED, input=200_000, cached_input=50_000, output=1_000, reasoning=500),
            RowUsage(SUCCEEDED, input=200_001, cached_input=50_000, output=1_000, reasoning=500)]
    totals = JobTotals(pro)
    for row in rows:
        totals.add(row)
    assert to_decimal_usd(totals.cost_pico or 0) == (usd((150_000, "0.625"), (50_000, "0.125"), (1_500, "5"))
                                                      + usd((150_001, "1.25"), (50_000, "0.25"), (1_500, "7.50")))
    assert totals.cost_pico == sum(price_row(row, pro) for row in rows)
    on_demand = JobTotals(pro, batch=False)
    for row in rows:
        on_demand.add(row)
    assert on_demand.cost_pico == sum(price_row(row, pro, batch=False) for row in rows)


def test_a_block_of_plain_rows_costs_what_its_rows_cost_one_by_one() -> None:
    pro = rates("gemini-2.5-pro")
    rows = [RowUsage(SUCCEEDED, input=100 + n * 37, cached_input=n * 11, output=n, reasoning=2 * n,
                     tool_use_input=n % 3) for n in range(50)]
    one_by_one = JobTotals(pro)
    for row in rows:
        one_by_one.add(row)
    block = JobTotals(pro)
    block.add_plain(0, len(rows), *(sum(getattr(row, name) for row in rows)
                                    for name in ("input", "cached_input", "output", "reasoning", "tool_use_input")))
    assert block.to_dict() == one_by_one.to_dict()
    assert block.cost_pico == sum(price_row(row, pro) for row in rows)


def test_plain_blocks_are_refused_for_embedding_rates() -> None:
    totals = JobTotals(rates("text-embedding-005"))
    assert not totals.plain_is_linear
    with pytest.raises(ValueError, match="embedding"):
        totals.add_plain(0, 1, 10, 0, 0, 0, 0)


def test_merged_parts_equal_the_whole() -> None:
    flash = rates("gemini-2.5-flash")
    rows = [RowUsage(SUCCEEDED, input=n, cached_input=n // 2, output=3, audio_input=n % 4, model_version="v")
            for n in range(1, 30)] + [RowUsage(FAILED), RowUsage(NO_USAGE)]
    whole = JobTotals(flash)
    first, second = JobTotals(flash), JobTotals(flash)
    for index, row in enumerate(rows):
        whole.add(row)
        (first if index % 3 else second).add(row)
    first.merge(second)
    assert first.to_dict() == whole.to_dict()


def test_problems_are_capped_but_all_counted() -> None:
    totals = JobTotals()
    for n in range(MAX_PROBLEMS + 5):
        totals.add(RowUsage(MALFORMED, error="bad"), where=f"row {n}")
    assert totals.malformed == MAX_PROBLEMS + 5
    assert len(totals.problems) == MAX_PROBLEMS
    assert totals.problems[0] == "row 0: bad"
