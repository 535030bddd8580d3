"""The bytes of a per-line export's records: the reference formatters and the reader that writes them in bulk.

A record is its line number then a tail that does not depend on it (`jsonl_tail`, `csv_tail`), so worker
processes can write the tails of a byte range's lines before the range's first line number is known.
`jsonl_tail` and `csv_tail` are the definition of a record's bytes. `TailReader` gives each line's tail: the rows
the compiled scanner claims are written by `_rowscan.row_tails` from the scanner's records (the key's hash is
the only work left to Python per row), with the template cut from the very
format strings `jsonl_tail` and `csv_tail` use; every other line goes through the reference. Tests
(tests/reports/test_line_records.py, and `make fuzz`) hold the two to the same bytes.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import Any

import msgspec

from proxy.metering.cost import UNIT_RATES
from proxy.metering.pricing import Rates
from proxy.money import format_usd
from proxy.providers.base import FAILED, SUCCEEDED, RowUsage
from proxy.reports.line_keys import KeyReader, echo_digest
from proxy.reports.line_reader import ROW_FIELDS, Lines
from proxy.reports.render import TOKEN_FIELDS

row_tails: Callable[..., Any] | None
try:
    from proxy.metering._rowscan import row_tails
except ImportError:  # built without a C compiler: every record is written by the reference formatters
    row_tails = None

FORMATS = ("jsonl", "csv")
_JSONL_TAIL = (b',"key":%s,"status":"%s","tokens":{'
               + b",".join(b'"%s":%%d' % name.encode() for name in TOKEN_FIELDS) + b'},"cost_usd":%s}\n')
_CSV_TAIL = b",%s,%s" + b",%d" * len(TOKEN_FIELDS) + b",%s\r\n"
_CSV_PLAIN = re.compile(r"[A-Za-z0-9_.:/-]*")  # a field that csv's minimal quoting leaves as it is
_NO_LONG_CONTEXT = 2**64 - 1  # a prompt is never above this: the base tier for every row
_KEY_PREFIX = b"req_"  # line_keys.request_key's


def jsonl_tail(key: str | None, usage: RowUsage, cost_pico: int | None) -> bytes:
    """A JSON-lines record after `{"line":N` (as msgspec encodes `LineCost.document()`)."""
    cost = b"null" if cost_pico is None else b'"%s"' % format_usd(cost_pico).encode()
    return _JSONL_TAIL % (msgspec.json.encode(key), usage.kind.encode(), usage.input, usage.cached_input,
                          usage.output, usage.reasoning, usage.tool_use_input, cost)


def csv_tail(key: str | None, usage: RowUsage, cost_pico: int | None) -> bytes:
    """A CSV row after its line number (as `csv.writer` writes it: `key` quoted only when it must be)."""
    if not key:
        field = b""
    elif _CSV_PLAIN.fullmatch(key):
        field = key.encode()
    else:
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow((key,))
        field = out.getvalue().encode()
    cost = b"" if cost_pico is None else format_usd(cost_pico).encode()
    return _CSV_TAIL % (field, usage.kind.encode(), usage.input, usage.cached_input, usage.output, usage.reasoning,
                        usage.tool_use_input, cost)


TAILS = {"jsonl": jsonl_tail, "csv": csv_tail}


def _template(tail: bytes, quote: bytes, absent: bytes) -> tuple[object, ...]:
    """`row_tails`' template of a tail format: its literal pieces around the 8 fields, the quote around a present
    key or cost, the text of an absent one, the key's prefix and the two statuses the scanner's rows have."""
    pieces = tuple(re.split(rb"%[sd]", tail))
    assert len(pieces) == 9, pieces
    return pieces, quote, absent, _KEY_PREFIX, (SUCCEEDED.encode(), FAILED.encode())


# As jsonl_tail writes a key (msgspec's string of `req_<hex>`, or null) and a cost; as csv_tail writes them (a
# `req_<hex>` key is plain, so never quoted; an absent key or cost is an empty field).
TEMPLATES = {"jsonl": _template(_JSONL_TAIL, b'"', b"null"), "csv": _template(_CSV_TAIL, b"", b"")}


def rate_spec(rates: Rates | None) -> tuple[int, ...] | None:
    """`row_tails`' rates: the long-context threshold, then the batch rates of the base and long-context tiers in
    `cost.UNIT_RATES` order (a model without the tier: its base rates, above a prompt no row has)."""
    if rates is None:
        return None
    long_context = rates.long_context
    tiers = (rates.batch, rates.batch if long_context is None else long_context.batch)
    above = _NO_LONG_CONTEXT if long_context is None else long_context.above_prompt_tokens
    return (above, *(getattr(tier, name) for tier in tiers for name in UNIT_RATES))


class TailReader(Lines[bytes]):
    """Turns a stream of chunks into each line's record tail in `fmt`, in order (the bytes of
    `TAILS[fmt](*LineReader's figures)`); `native=False`: every line through the reference."""

    def __init__(self, provider: str, keys: KeyReader, rates: Rates | None, fmt: str, *,
                 native: bool = True) -> None:
        super().__init__(provider, keys, rates, native=native)
        self.tail = TAILS[fmt]
        self.template = TEMPLATES[fmt]
        self.rates_spec = rate_spec(rates)
        # The compiled writer knows the rules of a generative row keyed by its request's hash, in 64-bit figures.
        self.compiled = native and row_tails is not None and self.hash_requests and (
            rates is None or (rates.kind == "generative" and all(
                0 <= value < 2**64 for value in self.rates_spec or ())))

    def _python_line(self, line: bytes, out: list[bytes]) -> None:
        out.append(self.tail(*self.figures(line)))

    def _claimed(self, buf: bytes, view: memoryview, records: bytes, out: list[bytes]) -> None:
        values = memoryview(records).cast("q").tolist()
        if not self.compiled:
            figures, tail = self.claimed_figures, self.tail
            out.extend(tail(*figures(buf, view, values, at)) for at in range(0, len(values), ROW_FIELDS))
            return
        assert row_tails is not None
        digest = echo_digest
        # the key hashes the echoed request, else the echoed instance (line_keys.request_key)
        requests, request_ends = values[2::ROW_FIELDS], values[3::ROW_FIELDS]
        digests: list[bytes | None]
        if -1 not in requests:  # the common case: every row echoes its request
            digests = [digest(view[start:stop]) for start, stop in zip(requests, request_ends, strict=True)]
        else:
            digests = [digest(view[start:stop]) if start >= 0
                       else digest(view[other:other_end]) if other >= 0 else None
                       for start, stop, other, other_end in zip(requests, request_ends, values[4::ROW_FIELDS],
                                                                  values[5::ROW_FIELDS], strict=True)]
        tails = row_tails(records, digests, self.template, self.rates_spec)
        if None in tails:  # a cost past 64 bits: that row's tail by the reference
            tails = [self.tail(*self.claimed_figures(buf, view, values, index * ROW_FIELDS)) if tail is None
                     else tail for index, tail in enumerate(tails)]
        out.extend(tails)
