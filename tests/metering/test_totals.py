"""A job's totals: line counts, token sums, cost, and what goes to the ledger."""

from __future__ import annotations

import json

import pytest

from proxy.metering.totals import MAX_PROBLEMS, JobTotals
from proxy.metering.usage import FAILED, MALFORMED, NO_USAGE, SUCCEEDED, RowUsage


def test_sums_every_kind() -> None:
    totals = JobTotals()
    totals.add(RowUsage(SUCCEEDED, prompt=10, cached=4, candidates=3, thoughts=2, tool_use_prompt=1,
                        audio_prompt=5, audio_cached=1, model_version="gemini-2.5-flash"), 700)
    totals.add(RowUsage(SUCCEEDED, prompt=20, candidates=7, model_version="gemini-2.5-flash"), 300)
    totals.add(RowUsage(SUCCEEDED, embedding_tokens=8, embedding_characters=11), 5)
    totals.add(RowUsage(FAILED))
    totals.add(RowUsage(NO_USAGE, model_version="gemini-2.5-flash-001"))
    totals.add(RowUsage(MALFORMED, error="not JSON"), where="gs://b/p.jsonl row 6")
    assert totals.lines == 6
    record = totals.to_dict()
    assert record == {
        "lines": {"succeeded": 3, "failed": 1, "malformed": 1, "no_usage": 1},
        "tokens": {"prompt": 30, "cached": 4, "candidates": 10, "thoughts": 2, "tool_use_prompt": 1,
                   "audio_prompt": 5, "audio_cached": 1, "embedding_tokens": 8, "embedding_characters": 11},
        "cost_pico": 1005,
        "cost_usd": "0.000000001005",
        "model_versions": {"gemini-2.5-flash": 2, "gemini-2.5-flash-001": 1},
        "problems": ["gs://b/p.jsonl row 6: not JSON"],
    }
    assert json.loads(json.dumps(record)) == record


def test_an_unpriced_job_counts_everything_but_has_no_cost() -> None:
    totals = JobTotals(priced=False)
    totals.add(RowUsage(SUCCEEDED, prompt=10, candidates=5))
    assert totals.cost_pico is None
    assert totals.to_dict()["cost_usd"] is None
    assert totals.to_dict()["tokens"]["prompt"] == 10


def test_a_priced_job_needs_each_rows_cost() -> None:
    with pytest.raises(ValueError, match="needs its cost"):
        JobTotals().add(RowUsage(SUCCEEDED, prompt=1))


def test_problems_are_capped_but_all_counted() -> None:
    totals = JobTotals()
    for n in range(MAX_PROBLEMS + 5):
        totals.add(RowUsage(MALFORMED, error="bad"), where=f"row {n}")
    assert totals.malformed == MAX_PROBLEMS + 5
    assert len(totals.problems) == MAX_PROBLEMS
    assert totals.problems[0] == "row 0: bad"
