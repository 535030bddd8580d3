"""The per-line reader of a per-line cost export: each non-blank line of a stream of chunks with its key, usage and
exact cost, at the metering's speed.

It reads lines as metering numbers them (`split_lines`: blank and whitespace-only lines skipped, a CR before the LF
not part of the line, a last line without a newline counted at `close`), in two layers, like the metering scanner:
- for a Vertex job, the compiled row scanner's per-row mode (`_rowscan.scan_rows`) claims the succeeded Gemini
  rows and the failed rows it can vouch for and gives each one's token counts and the span of its echoed
  `request` (or `instance`), so the key is hashed from that slice of the buffer without any JSON parse;
- every other line (the first one the scanner cannot vouch for, or every line without the compiled scanner or
  for another provider) goes through the provider's `row_usage` and the job's key reader, one by one.
Both give the same `RowUsage` for the same line (tests/reports/test_line_reader.py holds them equal), and the cost
is metering's own `price_row` of it. `Lines` is that reading; `LineReader` gives each line's figures, and
`line_records.TailReader` each line's record bytes (with the scanner's rows written in C).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from proxy.metering.cost import price_row
from proxy.metering.pricing import Rates
from proxy.providers.base import FAILED, SUCCEEDED, RowUsage
from proxy.providers.registry import get_provider
from proxy.reports.line_keys import KeyReader, echo_key, request_key

scan_rows: Callable[..., Any] | None
try:
    from proxy.metering._rowscan import scan_rows
except ImportError:  # built without a C compiler: every line is read in Python, with the same figures
    scan_rows = None

ROW_FIELDS = 16  # int64s per record of `scan_rows` (see _rowscan.c)
_ROWS_PER_CALL = 4096
_BLANK = b" \t\r\f\v"
_CR = 13
_FAILED = RowUsage(FAILED)

LineFigures = tuple[str | None, RowUsage, int | None]  # (key, usage, cost in pUSD or None when unpriced)
Out = TypeVar("Out")  # what a reader gives per line: its figures (`LineReader`), or its record's bytes


class Lines(Generic[Out]):
    """Reads a stream of chunks (one object, or a byte range of one) line by line, in order, into one `Out` per line:
    the scanner's claimed rows go to `_claimed`, every other line to `_python_line`.

    `native=False` leaves every line to the provider's parser (the reference the fast path is tested against).
    """

    def __init__(self, provider: str, keys: KeyReader, rates: Rates | None, *, native: bool = True) -> None:
        self.row_usage = get_provider(provider).row_usage
        self.keys = keys
        self.rates = rates
        self.native = native and scan_rows is not None and provider == "vertex"
        self.hash_requests = keys is request_key  # the key is the echoed request's hash: taken from the span
        self._pending: list[bytes] = []  # the start of a line that continues in the next chunk(s)

    def feed(self, chunk: bytes) -> list[Out]:
        """What every line that ends in this chunk gives; the unfinished last one is kept for the next."""
        out: list[Out] = []
        pos = 0
        pending = self._pending
        if pending:
            newline = chunk.find(b"\n")
            if newline < 0:
                pending.append(chunk)  # a line longer than a chunk: memory grows with the line, not the stream
                return out
            pending.append(chunk[:newline + 1])
            joined = b"".join(pending)
            pending.clear()
            self._read(joined, 0, out)
            pos = newline + 1
        done = self._read(chunk, pos, out)
        if done < len(chunk):
            pending.append(chunk[done:])
        return out

    def close(self) -> list[Out]:
        """The end of the stream: what a last line that had no newline gives."""
        out: list[Out] = []
        if self._pending:
            joined = b"".join(self._pending) + b"\n"
            self._pending.clear()
            self._read(joined, 0, out)
        return out

    def _read(self, buf: bytes, pos: int, out: list[Out]) -> int:
        """Append what the lines of `buf` from `pos` up to its last newline give; returns where the rest begins."""
        python_line = self._python_line
        view = memoryview(buf)
        while True:
            if self.native:
                assert scan_rows is not None
                pos, records = scan_rows(buf, pos, _ROWS_PER_CALL)
                if records:
                    self._claimed(buf, view, records, out)
                    continue  # a full batch may be followed by more claimable rows
            newline = buf.find(b"\n", pos)
            if newline < 0:
                return pos
            end = newline
            if end > pos and buf[end - 1] == _CR:
                end -= 1
            if end > pos and (buf[pos] not in _BLANK or buf[pos:end].strip()):
                python_line(buf[pos:end], out)
            pos = newline + 1

    def figures(self, line: bytes) -> LineFigures:
        """A line's figures by the provider's parser and the key reader (any line)."""
        usage = self.row_usage(line)
        return self.keys(line), usage, None if self.rates is None else price_row(usage, self.rates)

    def claimed_figures(self, buf: bytes, view: memoryview, values: list[int], at: int) -> LineFigures:
        """The figures of the scanner's record at `values[at:at + ROW_FIELDS]` (see `_rowscan.scan_rows`)."""
        (start, end, request, request_end, instance, instance_end, kind, prompt, cached, candidates, thoughts,
         tool_use, audio, audio_cached, version, version_end) = values[at:at + ROW_FIELDS]
        if not self.hash_requests:
            key = self.keys(buf[start:end])
        elif request >= 0:
            key = echo_key(view[request:request_end])
        elif instance >= 0:
            key = echo_key(view[instance:instance_end])
        else:
            key = None
        if kind:
            return key, _FAILED, None if self.rates is None else 0
        usage = RowUsage(SUCCEEDED, prompt, cached, candidates, thoughts, tool_use, audio, audio_cached, 0, 0,
                         buf[version:version_end].decode() if version >= 0 else None)
        return key, usage, None if self.rates is None else price_row(usage, self.rates)

    def _python_line(self, line: bytes, out: list[Out]) -> None:
        raise NotImplementedError

    def _claimed(self, buf: bytes, view: memoryview, records: bytes, out: list[Out]) -> None:
        raise NotImplementedError


class LineReader(Lines[LineFigures]):
    """Turns a stream of chunks into each line's `LineFigures`, in order."""

    def _python_line(self, line: bytes, out: list[LineFigures]) -> None:
        out.append(self.figures(line))

    def _claimed(self, buf: bytes, view: memoryview, records: bytes, out: list[LineFigures]) -> None:
        values = memoryview(records).cast("q").tolist()
        figures = self.claimed_figures
        out.extend(figures(buf, view, values, at) for at in range(0, len(values), ROW_FIELDS))
