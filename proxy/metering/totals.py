"""A job's totals: line counts by kind, token totals by kind and the cost, summed row by row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.metering.usage import FAILED, MALFORMED, NO_USAGE, SUCCEEDED, RowUsage
from proxy.money import format_usd

MAX_PROBLEMS = 20  # malformed lines reported by place and reason; the rest are only counted
MAX_MODEL_VERSIONS = 20  # distinct modelVersion values remembered (a job normally has one)
TOKEN_FIELDS = ("prompt", "cached", "candidates", "thoughts", "tool_use_prompt", "audio_prompt", "audio_cached",
                "embedding_tokens", "embedding_characters")


@dataclass
class JobTotals:
    """Sums over a job's rows. `cost_pico` is None for a job whose model has no price (never $0)."""

    priced: bool = True
    succeeded: int = 0
    failed: int = 0
    malformed: int = 0
    no_usage: int = 0
    prompt: int = 0
    cached: int = 0
    candidates: int = 0
    thoughts: int = 0
    tool_use_prompt: int = 0
    audio_prompt: int = 0
    audio_cached: int = 0
    embedding_tokens: int = 0
    embedding_characters: int = 0
    cost: int = 0
    model_versions: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def lines(self) -> int:
        """Every line counted (blank lines are not lines)."""
        return self.succeeded + self.failed + self.malformed + self.no_usage

    @property
    def cost_pico(self) -> int | None:
        """The cost in pUSD, or None when the job is unpriced."""
        return self.cost if self.priced else None

    def add(self, usage: RowUsage, cost_pico: int | None = None, *, where: str | None = None) -> None:
        """Count one row; `cost_pico` is its price (ignored when unpriced); `where` names a malformed line."""
        kind = usage.kind
        if kind == SUCCEEDED:
            self.succeeded += 1
            self.prompt += usage.prompt
            self.cached += usage.cached
            self.candidates += usage.candidates
            self.thoughts += usage.thoughts
            self.tool_use_prompt += usage.tool_use_prompt
            self.audio_prompt += usage.audio_prompt
            self.audio_cached += usage.audio_cached
            self.embedding_tokens += usage.embedding_tokens
            self.embedding_characters += usage.embedding_characters
            if self.priced:
                if cost_pico is None:
                    raise ValueError("a succeeded row of a priced job needs its cost")
                self.cost += cost_pico
        elif kind == FAILED:
            self.failed += 1
        elif kind == NO_USAGE:
            self.no_usage += 1
        elif kind == MALFORMED:
            self.malformed += 1
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append(f"{where or 'line'}: {usage.error}")
        else:
            raise ValueError(f"unknown row kind {kind!r}")
        version = usage.model_version
        if version is not None:
            versions = self.model_versions
            if version in versions:
                versions[version] += 1
            elif len(versions) < MAX_MODEL_VERSIONS:
                versions[version] = 1

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able record: line counts, token totals, cost (pUSD and exact USD string, None if unpriced)."""
        return {
            "lines": {SUCCEEDED: self.succeeded, FAILED: self.failed, MALFORMED: self.malformed,
                      NO_USAGE: self.no_usage},
            "tokens": {name: getattr(self, name) for name in TOKEN_FIELDS},
            "cost_pico": self.cost_pico,
            "cost_usd": None if self.cost_pico is None else format_usd(self.cost),
            "model_versions": dict(self.model_versions),
            "problems": list(self.problems),
        }
