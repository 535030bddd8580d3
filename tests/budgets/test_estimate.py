"""The estimate against what metering charges: for every job of the metering tests' fixtures, `low` is at most
and `high` at least the cost of the rows the emulator writes for it (priced by tests/support/expected.py, which
shares no code with the proxy's pricing)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from proxy.budgets.estimate import MIN_LINE_BYTES, Estimate, LineEstimator
from proxy.budgets.tokens import text_tokens
from proxy.emulator.predictions import RowMaker
from proxy.emulator.usage_rule import text_tokens as emulator_text_tokens
from proxy.metering.pricing import PricingTable
from tests.support.expected import expected_for

SAMPLE = Path(__file__).parents[1] / "data" / "vertex-batch-input.jsonl"
NOW = datetime(2026, 11, 30, tzinfo=UTC)
CACHE = "projects/meter-project/locations/us-central1/cachedContents/123"
AUDIO = {"inlineData": {"mimeType": "audio/wav", "data": base64.b64encode(b"\0" * 40_000).decode()}}


def text_line(text: str, **request: object) -> dict[str, object]:
    return {"request": {"contents": [{"role": "user", "parts": [{"text": text}]}], **request}}


# The jobs of tests/metering/completion (test_poller_meters_jobs.py, test_meter_command.py), line for line.
FIXTURE_JOBS = {
    "flash with cache, audio, thoughts and a failed row": ("gemini-2.5-flash", [
        text_line("Hello world!"),
        text_line("Tell me a long story about batch prediction and its costs.", cachedContent=CACHE),
        {"request": {"contents": [{"role": "user", "parts": [{"text": "What is said here?"}, AUDIO]}]}},
        {"request": {"contents": [{"role": "user", "parts": [AUDIO]}], "cachedContent": CACHE}},
        {"request": {"contents": [{"role": "system", "parts": [{"text": "bad role"}]}]}},
        {"custom_id": "x-1", **text_line("Short answer please.", generationConfig={"maxOutputTokens": 3})},
    ]),
    "pro long-context tier per line": ("gemini-2.5-pro", [text_line(" ".join(["w"] * 200_001)),
                                                          text_line("A short question?")]),
    "2.0 flash shards": ("gemini-2.0-flash", [text_line(f"Question {i} about shards?") for i in range(7)]),
    "flash-lite lines": ("gemini-2.5-flash-lite", [text_line(f"Line {i}") for i in range(8)]),
    "flash questions": ("gemini-2.5-flash", [text_line(f"Question {i}?") for i in range(3)]),
    "flash-lite many rows": ("gemini-2.5-flash-lite", [text_line(f"Row {i} of many") for i in range(60)]),
    "2.0 flash price me twice": ("gemini-2.0-flash", [text_line("Price me twice")]),
    "flash two lines": ("gemini-2.5-flash", [text_line("Where did my output go?"), text_line("And this one?")]),
    "flash-lite one line": ("gemini-2.5-flash-lite", [text_line("Checked an hour from now?")]),
    "the sample input": ("gemini-2.5-flash-lite", [json.loads(line) for line in SAMPLE.read_text().splitlines()]),
    "capped thinking on pro": ("gemini-2.5-pro", [text_line("word " * 300, generationConfig={"maxOutputTokens": c})
                                                  for c in (1, 2, 7, 50, 400)]),
    "embeddings by token": ("gemini-embedding-001", [{"content": "What is the meaning of life?"},
                                                     {"content": "w " * 3000}]),
    "embeddings by character": ("text-embedding-005", [{"content": "naïve café, 42"}]),
}


@pytest.fixture(scope="module")
def table() -> PricingTable:
    return PricingTable.load()


def estimate(table: PricingTable, model: str, data: bytes, *, chunk: int = 1 << 20) -> Estimate:
    rates = table.rates_for("vertex", model, NOW)
    max_output = table.max_output_tokens("vertex", model)
    assert rates is not None and max_output is not None
    estimator = LineEstimator(rates, max_output=max_output)
    for at in range(0, len(data), chunk):
        estimator.feed(data[at:at + chunk])
    return estimator.close()


def jsonl(lines: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.mark.parametrize("job", sorted(FIXTURE_JOBS))
def test_low_and_high_hold_the_metered_cost(table: PricingTable, job: str) -> None:
    model, lines = FIXTURE_JOBS[job]
    maker = RowMaker(model=model, job_id="1")
    rows = [json.loads(maker.row(json.dumps(line).encode(), i, now=NOW)[0]) for i, line in enumerate(lines)]
    metered = expected_for(rows, model).cost_pico
    figures = estimate(table, model, jsonl(lines))
    assert figures.lines == len(lines)
    assert figures.low_pico <= metered <= figures.high_pico, (figures.low_pico, metered, figures.high_pico)


def test_the_sample_figures_shown_in_the_readme(table: PricingTable) -> None:
    data = SAMPLE.read_bytes()
    # 9 input tokens a line ("Hello world!" 3 + "You are a(n) (un)helpful assistant." 6); maxOutputTokens 10 each
    figures = estimate(table, "gemini-2.5-flash-lite", data).to_json()
    assert (figures["lines"], figures["input_tokens"], figures["max_output_tokens"]) == (2, 18, 20)
    # low 18 x 0.05 / 1M; high + 20 x 0.20 / 1M; Vertex's real rows (tests/data/vertex-predictions.jsonl)
    # charged 18 x 0.05 + 19 x 0.20 = 4.7 micro-USD
    assert figures["cost_usd"] == {"low": "0.0000009", "high": "0.0000049"}
    flash = estimate(table, "gemini-2.5-flash", data).to_json()
    assert flash["cost_usd"] == {"low": "0.0000027", "high": "0.0000277"}  # 18 x 0.15; + 20 x 1.25


@pytest.mark.parametrize("text", ["Hello world!", "You are a helpful assistant.", "don't stop -- now...",
                                  "naïve café, 42", "tabs\tand\nnew lines", "a_b c-d e.f", "", "   "])
def test_the_text_rule_counts_as_the_emulators_documented_rule(text: str) -> None:
    assert text_tokens(text) == emulator_text_tokens(text)


def test_lines_split_across_chunks_count_once(table: PricingTable) -> None:
    lines = [text_line(f"Question {i} is here.", generationConfig={"maxOutputTokens": 5}) for i in range(50)]
    whole = estimate(table, "gemini-2.5-flash", jsonl(lines))
    pieces = estimate(table, "gemini-2.5-flash", jsonl(lines), chunk=7)
    assert whole == pieces
    assert (whole.lines, whole.input_tokens, whole.max_output_tokens) == (50, 50 * 5, 50 * 5)


def test_malformed_lines_cost_nothing_and_lines_without_a_cap_get_the_models_maximum(table: PricingTable) -> None:
    data = b'not json\n{"request": {"contents": "oops"}}\n' + jsonl([text_line("One two")])
    figures = estimate(table, "gemini-2.5-flash", data)
    assert (figures.lines, figures.malformed, figures.input_tokens, figures.max_output_tokens) == (3, 2, 2, 65_536)
    # 2 x 0.15 + 65,536 x 1.25 per 1M, in pUSD
    assert (figures.low_pico, figures.high_pico) == (2 * 150_000, 2 * 150_000 + 65_536 * 1_250_000)


def test_unread_bytes_are_bounded_from_their_size(table: PricingTable) -> None:
    rates = table.rates_for("vertex", "gemini-2.5-pro", NOW)
    assert rates is not None
    estimator = LineEstimator(rates, max_output=65_536)
    estimator.bound_unread(10_400)
    figures = estimator.close()
    lines = 10_400 // MIN_LINE_BYTES + 1
    # the long-context tier's dearest input rate (1.25) per byte, and 7.50 per output token
    assert figures.high_pico == 10_400 * 1_250_000 + lines * 65_536 * 7_500_000
    assert figures.low_pico == 0 and figures.bytes_bounded == 10_400
    assert Decimal(figures.to_json()["cost_usd"]["high"]) == Decimal(figures.high_pico) / 10**12
