"""The Vertex row reader: split a stream of output bytes into lines and add each line's usage to a job's totals.

It is what `VertexProvider.row_reader` hands metering, and the one place that chooses the compiled scanner
(`proxy.metering._rowscan`, which knows the Gemini row layout; it is built there with the package).

It runs on every line of multi-GB outputs, so it is written for speed, in three layers:
- the common rows, succeeded Gemini rows and failed rows, are claimed in runs by the compiled accelerator
  `_rowscan.scan_gemini` (C, without the GIL): it checks each line as strict JSON, sums the tokens and billed
  units of succeeded rows per pricing tier (as `cost.row_units`) and counts failed ones, and stops at the
  first line it cannot vouch for (see the contract atop `_rowscan.c`: anything doubtful is left to Python,
  never imitated);
- that line is decided here, by the one row parser (`usage.py`): its fast path (`usage.trailing_response`)
  decodes only the response; a plain row read off it is summed in local counters, one set per tier;
- any other row (audio, cached > prompt, failed, embeddings, malformed, no usage) goes through
  `usage.parse_span` and `JobTotals.add`.
The per-tier sums are handed to the totals once per chunk. The cost is the same exact integer whichever layer
read a row: prices are linear in the summed counts. Lines are spans of their chunk, never copied out (only a
line that straddles two chunks is joined).
Blank and whitespace-only lines are skipped; a CR before the LF is not part of the line; a last line without a
newline counts once `close()` is called.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from proxy.metering.totals import BASE, LONG, MAX_MODEL_VERSIONS, MAX_PROBLEMS, JobTotals
from proxy.providers.vertex.usage import MALFORMED, audio_tokens, parse_span, trailing_response, usage_of

scan_gemini: Callable[..., Any] | None
try:
    from proxy.metering._rowscan import scan_gemini
except ImportError:  # built without a C compiler: Python reads every line, with the same figures, more slowly
    scan_gemini = None
NATIVE = scan_gemini is not None
log = logging.getLogger("proxy.metering")
_warned = False

_BLANK = b" \t\r\f\v"  # a line starting with one of these may be blank
_CR = 13
_NO_TIER_LIMIT = 2**64 - 1  # `scan_gemini`'s "above" when the model has no long-context tier


def warn_if_pure_python() -> None:
    """Log once per process when the compiled scanner is missing, so a slow metering has a visible cause."""
    global _warned
    if not NATIVE and not _warned:
        _warned = True
        log.warning("the compiled row scanner (proxy.metering._rowscan) is not built: metering reads every line in "
                    "Python, with the same figures, several times slower; reinstall with gcc and Python's headers "
                    "to build it")


class LineScanner:
    """Feeds the lines of one stream of chunks (an object, or a byte range of one) into `totals` (a `RowReader`).

    `rows` counts the non-blank lines seen; `malformed_rows` keeps (row number in this stream, reason) of the first
    malformed ones, for `objects.describe_malformed`. `native=False` leaves every line to Python (the reference the
    accelerator is tested against); without the compiled scanner every line is Python's anyway.
    """

    def __init__(self, totals: JobTotals, *, native: bool = True) -> None:
        self.totals = totals
        self.native = native and NATIVE
        self.rows = 0
        self.malformed_rows: list[tuple[int, str]] = []
        self._pending: list[bytes] = []  # the start of a line that continues in the next chunk(s)
        # Plain rows summed per tier: [rows, prompt, cached, candidates, thoughts, tool_use_prompt].
        self._sums = [[0] * 6, [0] * 6]
        # Rows the accelerator claimed, summed per tier: [rows, 7 tokens (GEMINI_TOKENS), 5 units (UNIT_RATES)].
        self._blocks = [[0] * 13, [0] * 13]
        self._versions: dict[str, int] = {}

    def feed(self, chunk: bytes) -> None:
        """Count every line that ends in this chunk; keep the unfinished last one for the next."""
        pos = 0
        pending = self._pending
        if pending:
            newline = chunk.find(b"\n")
            if newline < 0:
                pending.append(chunk)  # a line longer than a chunk: memory grows with the line, not the stream
                return
            pending.append(chunk[:newline + 1])
            joined = b"".join(pending)
            pending.clear()
            self._scan(joined, 0)
            pos = newline + 1
        done = self._scan(chunk, pos)
        if done < len(chunk):
            pending.append(chunk[done:])
        self._flush()

    def close(self) -> None:
        """The end of the stream: count a last line that had no newline."""
        if self._pending:
            joined = b"".join(self._pending) + b"\n"
            self._pending.clear()
            self._scan(joined, 0)
        self._flush()

    def _scan(self, buf: bytes, pos: int) -> int:
        """Count the lines of `buf` from `pos` up to its last newline; returns where the unfinished rest begins."""
        totals = self.totals
        plain = totals.plain_is_linear
        above = totals.long_context_above
        threshold = math.inf if above is None else above
        native = plain and self.native and (above is None or 0 <= above < _NO_TIER_LIMIT)
        limit = _NO_TIER_LIMIT if above is None else above
        sums = self._sums
        blocks = self._blocks
        versions = self._versions
        malformed_rows = self.malformed_rows
        rows = self.rows
        view = memoryview(buf)
        find = buf.find
        while True:
            if native:
                assert scan_gemini is not None
                pos, claimed, failed, base, long_context, found = scan_gemini(buf, pos, limit)
                if claimed:
                    rows += claimed
                    totals.failed += failed
                    for block, run in ((blocks[BASE], base), (blocks[LONG], long_context)):
                        if run[0]:
                            for index, value in enumerate(run):
                                block[index] += value
                    for name, count in found:
                        if name in versions:
                            versions[name] += count
                        elif len(versions) < MAX_MODEL_VERSIONS:
                            versions[name] = count
            newline = find(b"\n", pos)
            if newline < 0:
                break
            end = newline
            if end > pos and buf[end - 1] == _CR:
                end -= 1
            if end > pos and (buf[pos] not in _BLANK or buf[pos:end].strip()):
                rows += 1
                response = trailing_response(buf, pos, end, view) if plain else None
                usage = response.usageMetadata if response is not None else None
                if usage is not None:
                    # The plain row, read straight off the decoded response (what `usage_of` would make of it).
                    prompt = usage.promptTokenCount or 0
                    cached = usage.cachedContentTokenCount or 0
                    details = usage.promptTokensDetails
                    cache_details = usage.cacheTokensDetails
                    if (prompt >= cached and not (details and audio_tokens(details))
                            and not (cache_details and audio_tokens(cache_details))):
                        tier = sums[LONG if prompt > threshold else BASE]
                        tier[0] += 1
                        tier[1] += prompt
                        tier[2] += cached
                        tier[3] += usage.candidatesTokenCount or 0
                        tier[4] += usage.thoughtsTokenCount or 0
                        tier[5] += usage.toolUsePromptTokenCount or 0
                        version = response.modelVersion  # type: ignore[union-attr]
                        if version is not None:
                            if version in versions:
                                versions[version] += 1
                            elif len(versions) < MAX_MODEL_VERSIONS:
                                versions[version] = 1
                        pos = newline + 1
                        continue
                row = usage_of(response) if response is not None else parse_span(buf, pos, end, view)
                if row.kind == MALFORMED:
                    totals.malformed += 1
                    if len(malformed_rows) < MAX_PROBLEMS:
                        malformed_rows.append((rows, row.error or "malformed"))
                else:
                    totals.add(row)
            pos = newline + 1
        self.rows = rows
        return pos

    def _flush(self) -> None:
        for tier, sums in enumerate(self._sums):
            if sums[0]:
                self.totals.add_plain(tier, *sums)
                sums[:] = [0] * 6
        for tier, block in enumerate(self._blocks):
            if block[0]:
                self.totals.add_gemini_block(tier, block[0], block[1:8], block[8:])
                block[:] = [0] * 13
        if self._versions:
            self.totals.count_versions(self._versions)
            self._versions.clear()
