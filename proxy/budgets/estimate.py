"""The estimate of a batch before it runs: per line, input tokens and the most output tokens it can produce, priced
with the pricing table and the very code metering prices output rows with (`proxy.metering.cost`).

The estimate is a range, in exact pUSD:
- `low`: input only, each line at the cheapest rate its input can be billed at (the cached rate when the line
  names a `cachedContent`), so it never exceeds the metered cost of ordinary text (`proxy.budgets.tokens`).
- `high`: input plus the output bound: each line's `generationConfig.maxOutputTokens`, or the model's maximum
  output (`max_output_tokens` in the pricing table) when it sets none. Thinking counts inside that bound, as on
  Vertex. A line whose input is above the long-context threshold is priced at that tier, as metering does.

Lines that are not JSON objects Vertex can answer (malformed) are counted and cost nothing: Vertex fails them,
and failed lines are free. Embedding instances (`{"content": ...}`) cost their input only.

Bytes that could not be read in time (`bound_unread`) get a bound from their size alone, added to `high` only:
at most one input token per byte at the model's dearest input rate, and at most one line per
`MIN_LINE_BYTES` bytes (never more than Vertex's 200,000 lines a job), each producing the model's maximum output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from proxy.budgets.tokens import media_tokens, text_tokens
from proxy.metering.cost import price_units, row_units
from proxy.metering.pricing import Rates
from proxy.money import format_usd
from proxy.providers.base import SUCCEEDED, RowUsage

scan_requests: Callable[..., Any] | None
try:
    from proxy.budgets._estscan import scan_requests
except ImportError:  # built without a C compiler: msgspec reads every line, with the same figures, more slowly
    scan_requests = None
NATIVE = scan_requests is not None
_NO_TIER_LIMIT = 2**64 - 1  # `scan_requests`' "above" when the model has no long-context tier

MAX_LINES_PER_JOB = 200_000
MIN_LINE_BYTES = len(b'{"request":{"contents":[{"parts":[{"text":""}]}]}}\n')
EMBEDDING_TOKEN_LIMIT = 2048  # longer embedding content is truncated, and billed as truncated


class EstimateError(ValueError):
    """An input that cannot be estimated: an unpriced model, or a model the table gives no output bound for."""


# The fields an estimate reads, in both of Vertex's spellings; msgspec skips everything else without building it.
class _Blob(msgspec.Struct):
    mimeType: str | None = None
    mime_type: str | None = None
    data: str | None = None


class _File(msgspec.Struct):
    mimeType: str | None = None
    mime_type: str | None = None


class _Part(msgspec.Struct):
    text: str | None = None
    inlineData: _Blob | None = None
    inline_data: _Blob | None = None
    fileData: _File | None = None
    file_data: _File | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] = []


class _Generation(msgspec.Struct):
    maxOutputTokens: int | None = None
    max_output_tokens: int | None = None


class _Request(msgspec.Struct):
    contents: list[_Content] = []
    systemInstruction: _Content | None = None
    system_instruction: _Content | None = None
    generationConfig: _Generation | None = None
    generation_config: _Generation | None = None
    cachedContent: str | None = None
    cached_content: str | None = None


class _Line(msgspec.Struct):
    request: _Request | None = None
    content: str | None = None  # an embedding instance


_DECODER = msgspec.json.Decoder(_Line)
# the positions of the summed units in a tier's list
(_INPUT, _AUDIO_INPUT, _OUTPUT, _LOW_INPUT, _LOW_AUDIO, _LOW_CACHED, _LOW_AUDIO_CACHED, _EMBEDDING_TOKENS,
 _EMBEDDING_CHARACTERS) = range(9)


@dataclass
class Estimate:
    """The running figures of one input (or several: `merge`)."""

    model: str
    lines: int = 0
    malformed: int = 0
    input_tokens: int = 0
    max_output_tokens: int = 0
    low_pico: int = 0
    high_pico: int = 0
    bytes_read: int = 0
    bytes_bounded: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """`{"model", "lines", "input_tokens", "max_output_tokens", "cost_usd": {"low", "high"}, ...}`."""
        return {"model": self.model, "lines": self.lines, "malformed_lines": self.malformed,
                "input_tokens": self.input_tokens, "max_output_tokens": self.max_output_tokens,
                "cost_usd": {"low": format_usd(self.low_pico), "high": format_usd(self.high_pico)},
                "bytes_read": self.bytes_read, "bytes_bounded_by_size": self.bytes_bounded, "notes": self.notes}


class LineEstimator:
    """Feeds JSONL bytes in chunks of any size (lines may straddle chunks) into an `Estimate`."""

    def __init__(self, rates: Rates, *, max_output: int, model: str | None = None, native: bool = NATIVE) -> None:
        self.rates = rates
        # the compiled scanner claims the plain text request lines (not embedding instances); the rest is msgspec's
        self.native = native and NATIVE and rates.kind != "embedding"
        self.max_output = max_output
        self.estimate = Estimate(model=model or rates.model)
        self._rest = b""
        self._long = rates.long_context.above_prompt_tokens if rates.long_context is not None else None
        # per tier (long context or not): the summed units of the lines, priced once at `close`
        self._sums = {tier: [0] * 9 for tier in (False, True)}

    def feed(self, chunk: bytes) -> None:
        """Count every whole line of `self._rest + chunk`; keep the unfinished tail for the next chunk.

        The chunk is scanned in place: only the line that straddles the previous chunk is joined, never the
        whole chunk (a copy of every 2 MiB chunk cost as much as a tenth of the scan)."""
        self.estimate.bytes_read += len(chunk)
        start = 0
        if self._rest:
            start = chunk.find(b"\n") + 1
            if not start:  # the line goes on past this chunk too
                self._rest += chunk
                return
            head = self._rest + chunk[:start]
            self._lines(head, len(head))
        end = chunk.rfind(b"\n") + 1
        if end > start:
            self._lines(chunk, end, start)
        self._rest = chunk[max(start, end):]

    def close_object(self) -> None:
        """End of one object: its last line may lack a newline, and never continues into the next object."""
        if self._rest.strip():
            self._lines(self._rest, len(self._rest))
        self._rest = b""

    def close(self) -> Estimate:
        """Count the last line (one without a newline) and return the figures."""
        self.close_object()
        self._price()
        return self.estimate

    def bound_unread(self, size: int) -> None:
        """Add the size bound of `size` bytes that were not read (see the module docstring) to `high`."""
        if size <= 0:
            return
        estimate, rates = self.estimate, self.rates
        tier = rates.long_context.batch if rates.long_context is not None else rates.batch
        lines = min(size // MIN_LINE_BYTES + 1, max(0, MAX_LINES_PER_JOB - estimate.lines))
        estimate.bytes_bounded += size
        estimate.high_pico += size * max(tier.input, tier.audio_input) + lines * self.max_output * tier.output
        estimate.max_output_tokens += lines * self.max_output

    def _lines(self, data: bytes, stop: int, start: int = 0) -> None:
        """Count the lines of `data[start:stop]`: the compiled scanner's claims in runs, each line it leaves here."""
        if not self.native:
            self._decoded_lines(data[start:stop])
            return
        assert scan_requests is not None
        above = self._long if self._long is not None else _NO_TIER_LIMIT
        pos = start
        while pos < stop:
            pos, *tiers = scan_requests(data, pos, stop, above, self.max_output)
            for is_long, (lines, tokens, output) in enumerate(tiers):
                if lines:
                    self._add_plain(bool(is_long), lines, tokens, output)
            if pos >= stop:
                break
            end = data.find(b"\n", pos, stop)
            end = stop if end < 0 else end + 1
            self._decoded_line(data[pos:end])
            pos = end

    def _add_plain(self, is_long: bool, lines: int, tokens: int, output: int) -> None:
        """Add lines of text only and no cache, as `_line` adds each (the compiled scanner's sums per tier)."""
        estimate = self.estimate
        estimate.lines += lines
        estimate.input_tokens += tokens
        estimate.max_output_tokens += output
        sums = self._sums[is_long]
        sums[_LOW_INPUT] += tokens
        sums[_INPUT] += tokens
        sums[_OUTPUT] += output

    def _decoded_lines(self, block: bytes) -> None:
        """Each line of `block` by msgspec. One line is one request: not `decode_lines`, which reads a line such as
        `{...}{...}` as two values, and a whole block again line by line once one line fails."""
        for raw in block.split(b"\n"):  # lines end at LF only (a lone CR is not an end)
            self._decoded_line(raw)

    def _decoded_line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            line: _Line | None = _DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            line = None
        self._line(line)

    def _line(self, line: _Line | None) -> None:
        estimate = self.estimate
        estimate.lines += 1
        if self.rates.kind == "embedding":
            if line is None or line.content is None:
                estimate.malformed += 1
                return
            tokens = min(text_tokens(line.content), EMBEDDING_TOKEN_LIMIT)
            estimate.input_tokens += tokens
            sums = self._sums[False]
            sums[_EMBEDDING_TOKENS] += tokens
            sums[_EMBEDDING_CHARACTERS] += len(line.content)
            return
        request = line.request if line is not None else None
        if request is None:
            estimate.malformed += 1
            return
        tokens, audio = _prompt_tokens(request)
        generation = request.generationConfig or request.generation_config
        cap = None
        if generation is not None:
            cap = generation.maxOutputTokens if generation.maxOutputTokens is not None else generation.max_output_tokens
        output = min(cap, self.max_output) if cap is not None and cap > 0 else self.max_output
        estimate.input_tokens += tokens
        estimate.max_output_tokens += output
        sums = self._sums[self._long is not None and tokens > self._long]
        # low: the input at the cheapest rate it can be billed at (all of it cached when the line names a cache)
        if request.cachedContent or request.cached_content:
            sums[_LOW_CACHED] += tokens
            sums[_LOW_AUDIO_CACHED] += audio
        else:
            sums[_LOW_INPUT] += tokens
            sums[_LOW_AUDIO] += audio
        sums[_INPUT] += tokens
        sums[_AUDIO_INPUT] += audio
        sums[_OUTPUT] += output

    def _price(self) -> None:
        """Price the summed units of each tier once: prices are linear, so this is the sum of the lines' prices."""
        estimate, rates = self.estimate, self.rates
        for is_long, sums in self._sums.items():
            tier = rates.long_context.batch if is_long and rates.long_context is not None else rates.batch
            (input_, audio, output, low_input, low_audio, low_cached, low_audio_cached, embedding,
             characters) = sums
            high = RowUsage(SUCCEEDED, input=input_, audio_input=audio, output=output, embedding_tokens=embedding,
                            embedding_characters=characters)
            low = RowUsage(SUCCEEDED, input=low_input + low_cached, cached_input=low_cached,
                           audio_input=low_audio + low_audio_cached, audio_cached_input=low_audio_cached,
                           embedding_tokens=embedding, embedding_characters=characters)
            estimate.high_pico += price_units(row_units(high, rates), tier)
            estimate.low_pico += price_units(row_units(low, rates), tier)
            sums[:] = [0] * len(sums)


def _prompt_tokens(request: _Request) -> tuple[int, int]:
    """`(all prompt tokens, of which audio)` of a request's contents and system instruction."""
    tokens = audio = 0
    system = request.systemInstruction or request.system_instruction
    for content in (*request.contents, system) if system is not None else request.contents:
        for part in content.parts:
            if part.text is not None:
                tokens += text_tokens(part.text)
                continue
            inline = part.inlineData or part.inline_data
            media: _Blob | _File | None = inline or part.fileData or part.file_data
            if media is None:
                continue
            is_audio, count = media_tokens(media.mimeType or media.mime_type or "",
                                           inline_base64_chars=len(inline.data or "") if inline else None)
            tokens += count
            audio += count if is_audio else 0
    return tokens, audio
