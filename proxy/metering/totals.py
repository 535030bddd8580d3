"""A job's totals: line counts by kind, token totals by kind, and the units it bills per tier, priced once.

Prices are linear in the units each row bills (see `cost.row_units`), so the totals keep, per tier (base and
long context), the sum of every row's units and price them at the end: the same exact integer as summing each
row's price, at a fraction of the work, and totals of separate parts of a job simply add up (`merge`).

The token totals keep the names of the ledger's columns and of the report document (`tokens: {prompt, cached,
candidates, thoughts, tool_use_prompt, ...}`), which stay as they are: prompt is the rows' input (cached
included), cached their cached input, candidates their output, thoughts their reasoning, tool_use_prompt their
tool-use input, audio_prompt and audio_cached their audio input and cached audio input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.metering.cost import is_long_context, price_units, row_units
from proxy.metering.pricing import Rates
from proxy.money import format_usd
from proxy.providers.base import FAILED, MALFORMED, NO_USAGE, SUCCEEDED, RowUsage

MAX_PROBLEMS = 20  # malformed lines reported by place and reason; the rest are only counted
MAX_MODEL_VERSIONS = 20  # distinct modelVersion values remembered (a job normally has one)
# The tokens a Gemini row reports, as the scanner's blocks sum them (`add_gemini_block`).
GEMINI_TOKENS = ("prompt", "cached", "candidates", "thoughts", "tool_use_prompt", "audio_prompt", "audio_cached")
TOKEN_FIELDS = (*GEMINI_TOKENS, "embedding_tokens", "embedding_characters")
BASE, LONG = 0, 1  # tiers


@dataclass
class JobTotals:
    """Sums over a job's rows, priced with `rates` (None: the model has no price, and the cost is None, never $0)."""

    rates: Rates | None = None
    batch: bool = True
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
    # per tier (BASE, LONG): the units billed at each rate of cost.UNIT_RATES
    units: list[list[int]] = field(default_factory=lambda: [[0] * 5, [0] * 5])
    model_versions: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def priced(self) -> bool:
        return self.rates is not None

    @property
    def plain_is_linear(self) -> bool:
        """Whether `add_plain` applies: token-priced Gemini rates, or none at all (an unpriced job)."""
        return self.rates is None or self.rates.kind != "embedding"

    @property
    def long_context_above(self) -> int | None:
        """The prompt size above which a row takes the long-context tier (None: the model has no such tier)."""
        long_context = self.rates.long_context if self.rates is not None else None
        return long_context.above_prompt_tokens if long_context is not None else None

    @property
    def lines(self) -> int:
        """Every line counted (blank lines are not lines)."""
        return self.succeeded + self.failed + self.malformed + self.no_usage

    @property
    def cost_pico(self) -> int | None:
        """The cost in pUSD, or None when the job is unpriced."""
        rates = self.rates
        if rates is None:
            return None
        cost = price_units(self.units[BASE], rates.batch if self.batch else rates.on_demand)
        if rates.long_context is not None:
            long_context = rates.long_context
            cost += price_units(self.units[LONG], long_context.batch if self.batch else long_context.on_demand)
        return cost

    def add(self, usage: RowUsage, *, where: str | None = None) -> None:
        """Count one row of any kind; `where` names a malformed line in the problems reported."""
        kind = usage.kind
        if kind == SUCCEEDED:
            self.succeeded += 1
            self.prompt += usage.input
            self.cached += usage.cached_input
            self.candidates += usage.output
            self.thoughts += usage.reasoning
            self.tool_use_prompt += usage.tool_use_input
            self.audio_prompt += usage.audio_input
            self.audio_cached += usage.audio_cached_input
            self.embedding_tokens += usage.embedding_tokens
            self.embedding_characters += usage.embedding_characters
            if self.rates is not None:
                tier = self.units[LONG if is_long_context(usage, self.rates) else BASE]
                for index, units in enumerate(row_units(usage, self.rates)):
                    tier[index] += units
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
        if usage.model_version is not None:
            self.count_versions({usage.model_version: 1})

    def add_plain(self, tier: int, rows: int, prompt: int, cached: int, candidates: int, thoughts: int,
                  tool_use_prompt: int) -> None:
        """Count a block of plain succeeded Gemini rows of one tier at once, from their summed counts.

        Plain: no audio tokens, no embedding counts, and a prompt no smaller than its cached part. Such a row bills
        prompt - cached + tool-use tokens as input, cached as cached input, candidates + thoughts as output, so
        the block's units are those of its sums. Only valid when `plain_is_linear`.
        """
        self.add_gemini_block(tier, rows, (prompt, cached, candidates, thoughts, tool_use_prompt, 0, 0),
                              (prompt - cached + tool_use_prompt, 0, cached, 0, candidates + thoughts))

    def add_gemini_block(self, tier: int, rows: int, tokens: Sequence[int], units: Sequence[int]) -> None:
        """Count a block of succeeded Gemini rows of one tier at once: their summed tokens (GEMINI_TOKENS order)
        and the sum of the units each bills (`cost.row_units`, in UNIT_RATES order). Only valid when
        `plain_is_linear`."""
        if not self.plain_is_linear:
            raise ValueError("Gemini rows are not priced linearly by embedding rates")
        self.succeeded += rows
        for name, count in zip(GEMINI_TOKENS, tokens, strict=True):
            setattr(self, name, getattr(self, name) + count)
        mine = self.units[tier]
        for index, count in enumerate(units):
            mine[index] += count

    def count_versions(self, versions: dict[str, int]) -> None:
        """Add rows per modelVersion (at most MAX_MODEL_VERSIONS distinct values are remembered)."""
        known = self.model_versions
        for version, count in versions.items():
            if version in known:
                known[version] += count
            elif len(known) < MAX_MODEL_VERSIONS:
                known[version] = count

    def merge(self, other: JobTotals) -> None:
        """Add the totals of another part of the same job (other objects, or other byte ranges of one)."""
        for name in ("succeeded", "failed", "malformed", "no_usage", *TOKEN_FIELDS):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in zip(self.units, other.units, strict=True):
            for index, units in enumerate(theirs):
                mine[index] += units
        self.count_versions(other.model_versions)
        self.problems.extend(other.problems[:MAX_PROBLEMS - len(self.problems)])

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able record: line counts, token totals, cost (pUSD and exact USD string, None if unpriced)."""
        cost = self.cost_pico
        return {
            "lines": {SUCCEEDED: self.succeeded, FAILED: self.failed, MALFORMED: self.malformed,
                      NO_USAGE: self.no_usage},
            "tokens": {name: getattr(self, name) for name in TOKEN_FIELDS},
            "cost_pico": cost,
            "cost_usd": None if cost is None else format_usd(cost),
            "model_versions": dict(self.model_versions),
            "problems": list(self.problems),
        }
