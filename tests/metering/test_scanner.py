"""The line scanner: chunks in, a job's totals out, the same wherever the chunks are cut and whatever the rows."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from proxy.metering.cost import price_row
from proxy.metering.objects import describe_malformed
from proxy.metering.pricing import PricingTable, Rates
from proxy.metering.totals import JobTotals
from proxy.money import to_decimal_usd
from proxy.providers.vertex.scanner import LineScanner
from proxy.providers.vertex.usage import parse_row

TABLE = PricingTable.load(Path(__file__).resolve().parents[2] / "pricing")


def rates(model: str) -> Rates:
    found = TABLE.rates_for("vertex", model, datetime(2026, 6, 1, tzinfo=UTC))
    assert found is not None
    return found


def scan(chunks: list[bytes], table: Rates | None, *, native: bool = True) -> tuple[JobTotals, LineScanner]:
    totals = JobTotals(table)
    scanner = LineScanner(totals, native=native)
    for chunk in chunks:
        scanner.feed(chunk)
    scanner.close()
    return totals, scanner


def cut(text: bytes, size: int) -> list[bytes]:
    return [text[at:at + size] for at in range(0, len(text), size)]


def gemini(prompt: int, candidates: int) -> bytes:
    return (b'{"status":"","request":{"contents":[{"parts":[{"text":"a \\"quoted\\" {brace"}]}]},"response":'
            b'{"modelVersion":"gemini-2.5-flash-lite","usageMetadata":{"promptTokenCount":%d,'
            b'"candidatesTokenCount":%d}}}' % (prompt, candidates))


SPLIT_TEXT = b"".join([
    gemini(9, 10), b"\r\n",
    b"\n   \n",
    gemini(7, 1), b"\n",
    b'{"status":"Bad Request","request":{}}\r\n',
    b'  {"status":"","response":{"truncated":', b"\n",
    b"\r\n",
    gemini(100, 50),  # no newline at the end
])


@pytest.mark.parametrize("native", [True, False], ids=["accelerated", "python"])
def test_every_chunk_boundary_gives_the_same_totals(native: bool) -> None:
    lite = rates("gemini-2.5-flash-lite")
    # Independently: 116 prompt tokens at 0.05 and 61 output tokens at 0.20 per 1M (batch).
    expected_usd = (116 * Decimal("0.05") + 61 * Decimal("0.20")) / 1_000_000
    for size in range(1, len(SPLIT_TEXT) + 1):
        totals, scanner = scan(cut(SPLIT_TEXT, size), lite, native=native)
        assert totals.to_dict()["lines"] == {"succeeded": 3, "failed": 1, "malformed": 1, "no_usage": 0}, size
        assert (totals.prompt, totals.candidates) == (116, 61), size
        assert to_decimal_usd(totals.cost_pico or 0) == expected_usd, size
        assert scanner.rows == 5
        assert [row for row, _ in scanner.malformed_rows] == [4]
        assert totals.model_versions == {"gemini-2.5-flash-lite": 3}
    (problem,) = describe_malformed("gs://b/o.jsonl", scanner.malformed_rows, first_row=11)
    assert problem.startswith("gs://b/o.jsonl row 14: ")


def _details(rng: random.Random, total: int, audio: int) -> list[dict[str, Any]]:
    details: list[dict[str, Any]] = [{"modality": "TEXT", "tokenCount": total - audio}]
    if audio:
        details.append({"modality": "AUDIO", "tokenCount": audio})
    rng.shuffle(details)
    return details


def random_row(rng: random.Random) -> bytes:
    """One output line of any shape the metering meets, plain rows most often."""
    shape = rng.choices(["plain", "audio", "clamp", "long", "nulls", "escaped-audio", "failed", "no-usage",
                         "malformed", "embedding", "response-first"], weights=[40, 8, 4, 6, 3, 2, 5, 3, 3, 3, 3])[0]
    request = {"contents": [{"parts": [{"text": "x" * rng.randrange(0, 300) + ' "q" {'}], "role": "user"}]}
    prompt = rng.randrange(0, 400_000) if shape == "long" else rng.randrange(0, 5000)
    cached = rng.choice([0, rng.randrange(0, prompt + 1)])
    usage: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": rng.randrange(0, 3000),
                             "totalTokenCount": 1}
    if cached:
        usage["cachedContentTokenCount"] = cached
    if rng.random() < 0.5:
        usage["thoughtsTokenCount"] = rng.randrange(0, 9000)
    if rng.random() < 0.2:
        usage["toolUsePromptTokenCount"] = rng.randrange(0, 500)
    usage["promptTokensDetails"] = _details(rng, prompt, 0)
    if shape == "audio":
        audio = rng.randrange(0, prompt + 1)
        usage["promptTokensDetails"] = _details(rng, prompt, audio)
        if cached:
            usage["cacheTokensDetails"] = _details(rng, cached, min(cached, rng.randrange(0, audio + 1)))
    elif shape == "clamp":
        usage["cachedContentTokenCount"] = prompt + rng.randrange(1, 100)  # more cached than prompt
        usage["promptTokensDetails"] = _details(rng, prompt, 0 if rng.random() < 0.7 else prompt // 2)
    elif shape == "nulls":
        usage["candidatesTokenCount"] = None
    response = {"candidates": [{"content": {"parts": [{"text": "ok \"fine\" }"}]}}], "modelVersion": "m-1",
                "usageMetadata": usage}
    row: dict[str, Any] = {"status": "", "request": request, "response": response}
    if shape == "escaped-audio":
        text = json.dumps(row).replace('"TEXT"', '"\\u0041UDIO"')  # AUDIO, spelled with an escape
        return text.encode()
    if shape == "failed":
        row = {"status": 'Bad Request: {"error": {"code": 400}}', "request": request}
    elif shape == "no-usage":
        del response["usageMetadata"]
    elif shape == "malformed":
        return json.dumps(row).encode()[:-rng.randrange(1, 40)]
    elif shape == "embedding":
        row = {"instance": {"content": "héllo " * rng.randrange(1, 9)},
               "predictions": [{"embeddings": {"statistics": {"token_count": rng.randrange(1, 50)}}}], "status": ""}
    elif shape == "response-first":
        row = {"response": response, "status": "", "request": request}
    return json.dumps(row, ensure_ascii=rng.random() < 0.5).encode()


@pytest.mark.parametrize("native", [True, False], ids=["accelerated", "python"])
@pytest.mark.parametrize("model", ["gemini-2.5-pro", "gemini-2.5-flash", "text-embedding-005", None])
def test_the_scanner_agrees_with_pricing_each_row_alone(model: str | None, native: bool) -> None:
    rng = random.Random(f"scanner-{model}")
    table = rates(model) if model else None
    lines = [random_row(rng) for _ in range(3000)]
    text = b"".join(line + rng.choice([b"\n", b"\r\n", b"\n\n"]) for line in lines)
    reference = JobTotals(table)
    for line in lines:
        reference.add(parse_row(line))
    for size in (1 << 20, 4096, 997, 64):
        totals, scanner = scan(cut(text, size), table, native=native)
        assert totals.to_dict() | {"problems": []} == reference.to_dict() | {"problems": []}, size
        assert scanner.rows == len(lines)
        assert len(scanner.malformed_rows) == min(20, reference.malformed)
    if table is not None:
        assert totals.cost_pico == sum(price_row(parse_row(line), table) for line in lines)
        assert totals.malformed > 0 and totals.failed > 0 and totals.no_usage > 0
