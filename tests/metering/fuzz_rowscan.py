"""A time-bounded fuzz target for the compiled row scanner, for `make fuzz` (which builds it with ASan and UBSan).

Not a pytest module: it mutates real and hand-made rows at random (byte flips, inserts, deletes, splices of two
rows, cuts), scans single lines and runs of several from random offsets and tier limits, and checks the contract
of every line (refused, or claimed with the Python parser's very figures), and that the per-line export's
compiled record writer (`row_tails`) writes each run of lines as the reference formatters do. The sanitizers
catch what a wrong figure would not: a read past a buffer, an overflow, undefined behaviour. Stops by itself
after `--seconds`.

    python -m tests.metering.fuzz_rowscan --seconds 60 [--seed N]
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from proxy.metering._rowscan import scan_gemini, scan_rows
from proxy.metering.cost import price_row
from proxy.metering.pricing import PricingTable
from proxy.providers.vertex.usage import parse_row
from proxy.reports.line_costs import split_lines
from proxy.reports.line_keys import request_key
from proxy.reports.line_reader import ROW_FIELDS
from proxy.reports.line_records import FORMATS, TAILS, TailReader
from tests.metering.test_rowscan import NO_LIMIT, SEEDS, agrees
from tests.support import fuzzing

EVERY_ROW = [rates for rows in PricingTable.load(Path(__file__).resolve().parents[2] / "pricing").models.values()
             for rates in rows]
INTERESTING = [b'"', b"\\", b"{", b"}", b"[", b"]", b":", b",", b"\n", b"\r", b"\x00", b"\xff", b"\\u", b"e9",
               b"-", b"0", b"18446744073709551616", b"null", b"true", b'"usageMetadata"', b'"response"']


def mutate(rng: random.Random, line: bytes) -> bytes:
    """One to four random edits of a line, or a splice with another seed."""
    return fuzzing.mutate(rng, line, INTERESTING, splice_from=SEEDS)


def run(seconds: float, seed: int) -> tuple[int, int]:
    """(lines tried, lines claimed) within `seconds`."""
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    tried = claimed = 0
    while time.monotonic() < deadline:
        line = mutate(rng, rng.choice(SEEDS))
        above = rng.choice([NO_LIMIT, 0, 1, 200_000, rng.randrange(1 << 20)])
        tried += 1
        claimed += agrees(line, above)
        # A run of several lines from a random offset: the scanner must stop inside the buffer, on a line start.
        buf = b"\n".join(mutate(rng, rng.choice(SEEDS)) for _ in range(rng.randint(1, 5))) + rng.choice([b"", b"\n"])
        start = rng.randint(0, len(buf))
        pos = scan_gemini(buf, start, above)[0]
        assert start <= pos <= len(buf) and (pos == start or buf[pos - 1:pos] == b"\n"), (buf, start, pos)
        # The per-row mode claims the same lines, and every span it gives lies inside its line.
        row_pos, records = scan_rows(buf, start, rng.randint(1, 6))
        fields = memoryview(records).cast("q").tolist()
        assert start <= row_pos <= pos and (row_pos == pos or len(fields) % ROW_FIELDS == 0), (buf, start)
        at = start
        for index in range(0, len(fields), ROW_FIELDS):
            line_start, line_end, *spans = fields[index:index + 6] + fields[index + 14:index + 16]
            assert line_start == at <= line_end < len(buf) and buf[line_end] in b"\r\n", (buf, start)
            for first, stop in zip(spans[::2], spans[1::2], strict=True):
                assert first == stop == -1 or line_start < first < stop < line_end, (buf, start)
            at = buf.index(b"\n", line_end) + 1
        assert at == row_pos, (buf, start)
        # The export's records: the compiled writer's bytes are the reference formatters', line for line.
        rates, fmt = rng.choice([*EVERY_ROW, None]), rng.choice(FORMATS)
        reader = TailReader("vertex", request_key, rates, fmt)
        tails = reader.feed(buf[start:]) + reader.close()
        expected = [TAILS[fmt](request_key(line), usage, None if rates is None else price_row(usage, rates))
                    for line in split_lines([buf[start:]]) for usage in [parse_row(line)]]
        assert tails == expected, (buf, start, rates, fmt)
    return tried, claimed


def report(seconds: float, seed: int) -> str:
    tried, claimed = run(seconds, seed)
    return (f"fuzz_rowscan: seed {seed}: {tried} mutated lines in {seconds:.0f} s, {claimed} claimed, every one "
            "as Python reads it; no sanitizer report")


if __name__ == "__main__":
    fuzzing.fuzz_main(__doc__ or "", report)
