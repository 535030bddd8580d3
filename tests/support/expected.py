"""Expected tokens and cost of output rows, computed here from the published batch prices (docs/pricing.md),
independently of the project's pricing files and parser: plain json, Decimal, rates written out by hand."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from google.cloud import storage

M = Decimal(1_000_000)
D = Decimal

# USD per 1M tokens, batch: input, audio input, output, cached, cached audio; long tier: (threshold, rates)
BATCH: dict[str, dict[str, Any]] = {
    "gemini-2.5-pro": {"input": D("0.625"), "audio": D("0.625"), "output": D("5"), "cached": D("0.125"),
                       "cached_audio": D("0.125"),
                       "long": (200_000, {"input": D("1.25"), "audio": D("1.25"), "output": D("7.50"),
                                          "cached": D("0.25"), "cached_audio": D("0.25")})},
    "gemini-2.5-flash": {"input": D("0.15"), "audio": D("0.50"), "output": D("1.25"), "cached": D("0.03"),
                         "cached_audio": D("0.10")},
    "gemini-2.5-flash-lite": {"input": D("0.05"), "audio": D("0.05"), "output": D("0.20"), "cached": D("0.01"),
                              "cached_audio": D("0.03")},
    # no batch caching on 2.0: cached tokens are billed as ordinary batch input
    "gemini-2.0-flash": {"input": D("0.075"), "audio": D("0.50"), "output": D("0.30"), "cached": D("0.075"),
                         "cached_audio": D("0.50")},
}
EMBEDDING_PER_TOKEN = {"gemini-embedding-001": D("0.12")}
EMBEDDING_PER_CHARACTER = {"text-embedding-005": D("0.025")}


def _modality(details: list[dict[str, Any]] | None, modality: str) -> int:
    return sum(int(d.get("tokenCount", 0)) for d in details or [] if d.get("modality") == modality)


@dataclass
class Expected:
    succeeded: int = 0
    failed: int = 0
    prompt: int = 0
    cached: int = 0
    candidates: int = 0
    thoughts: int = 0
    cost: Decimal = field(default_factory=Decimal)

    @property
    def cost_pico(self) -> int:
        value = self.cost * 10**12
        assert value == value.to_integral_value(), "expected cost is not a whole number of pUSD"
        return int(value)


def expected_for(rows: Iterable[dict[str, Any]], model: str) -> Expected:
    """Sum tokens and price every successful row the way docs/pricing.md says Vertex bills a batch."""
    out = Expected()
    for row in rows:
        if row.get("status"):
            out.failed += 1
            continue
        out.succeeded += 1
        if model in EMBEDDING_PER_TOKEN or model in EMBEDDING_PER_CHARACTER:
            tokens = sum(p["embeddings"]["statistics"]["token_count"] for p in row["predictions"])
            if model in EMBEDDING_PER_TOKEN:
                out.cost += tokens * EMBEDDING_PER_TOKEN[model] / M
            else:
                out.cost += len(row["instance"]["content"]) * EMBEDDING_PER_CHARACTER[model] / M
            continue
        usage = row["response"]["usageMetadata"]
        prompt, cached = usage.get("promptTokenCount", 0), usage.get("cachedContentTokenCount", 0)
        candidates, thoughts = usage.get("candidatesTokenCount", 0), usage.get("thoughtsTokenCount", 0)
        audio = _modality(usage.get("promptTokensDetails"), "AUDIO")
        audio_cached = _modality(usage.get("cacheTokensDetails"), "AUDIO")
        rates = BATCH[model]
        if "long" in rates and prompt > rates["long"][0]:
            rates = rates["long"][1]
        out.prompt += prompt
        out.cached += cached
        out.candidates += candidates
        out.thoughts += thoughts
        tool_use = usage.get("toolUsePromptTokenCount", 0)  # input too (pricing rule 7)
        out.cost += ((prompt - cached - (audio - audio_cached) + tool_use) * rates["input"]
                     + (audio - audio_cached) * rates["audio"]
                     + (cached - audio_cached) * rates["cached"] + audio_cached * rates["cached_audio"]
                     + (candidates + thoughts) * rates["output"]) / M
    return out


def output_rows(client: storage.Client, directory: str) -> list[dict[str, Any]]:
    """Every row of every final *.jsonl under a job's output directory (incremental copies left out)."""
    bucket, _, prefix = directory.removeprefix("gs://").partition("/")
    rows: list[dict[str, Any]] = []
    for blob in client.list_blobs(bucket, prefix=prefix.rstrip("/") + "/"):
        if blob.name.endswith(".jsonl") and "/incremental_predictions/" not in blob.name:
            rows += [json.loads(line) for line in blob.download_as_bytes().splitlines() if line.strip()]
    return rows
