"""A time-bounded fuzz target for the compiled chat output path, for `make fuzz` (which builds it with ASan and UBSan).

Not a pytest module: it mutates emulator rows, the shared sample rows (with a line label added) and hand-made ones
at random (byte flips, inserts of JSON's special bytes, deletes, splices of two rows, cuts), and checks that the
compiled path and the Python reference write the same bytes and counters for runs of such rows fed in random
chunks; it also calls `answer_rows` directly from random offsets and checks that it stops inside the buffer on a
row's start. The sanitizers catch what a wrong byte would not: a read past a buffer, an overflow, undefined
behaviour. Stops by itself after `--seconds`.

    python -m tests.openai_door.fuzz_chatrows --seconds 60 [--seed N]
"""

from __future__ import annotations

import random
import time

from proxy.openai_door._chatrows import answer_rows
from tests.openai_door.support import CHAT_MODEL, chat_line, convert, emulate, jsonl
from tests.openai_door.test_chat_rows import _index, both_paths
from tests.support import fuzzing
from tests.support.samples import SAMPLES

INTERESTING = [b'"', b"\\", b"\\/", b"\\u00e9", b"\\ud83d\\ude00", b"\\ud800", b"{", b"}", b"[", b"]", b":", b",",
               b"\n", b"\r", b"\x00", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"-", b"0", b"1e5", b"99999999999999999",
               b"null", b"true", b'"text"', b'"thought":true', b'"functionCall":{}', b'"vbp_line":"2"',
               b'"createTime":"2026-01-01T00:00:00.5+01:00"', b'"responseId":""', b'"candidates":[]']
_LINES = 12


def seeds() -> list[bytes]:
    """Rows to mutate: emulator rows (succeeded and failed), the shared samples with labels, hand-made ones."""
    converted, vertex = convert(jsonl(*[chat_line(f"req-{n}", {"max_tokens": 3 + n, "messages": [
        {"role": "user", "content": "é \"q\" \\ \t" * n}]}) for n in range(1, _LINES + 1)]))
    rows = emulate(vertex, CHAT_MODEL, fail=frozenset({4}))
    samples = (SAMPLES / "vertex-predictions.jsonl").read_bytes().splitlines(keepends=True)
    rows += [row.replace(b'"request":{', b'"request":{"labels":{"vbp_line":"%d"},' % (at + 1), 1)
             for at, row in enumerate(samples)]
    rows.append(b'{"request":{"labels":{"vbp_line":"3"}},"response":{"candidates":[{"content":{"parts":[{"text":'
                b'"a\\u0001\\/b","thought":false},{"text":"x","thought":true}]},"index":2,"finishReason":"SPII"}],'
                b'"usageMetadata":{"promptTokenCount":3,"promptTokensDetails":[{"modality":"AUDIO","tokenCount":2}]},'
                b'"createTime":"2026-03-04T05:06:07.123456789-02:30"}}\n')
    return rows


def mutate(rng: random.Random, row: bytes, pool: list[bytes]) -> bytes:
    """One to four random edits of a row (newlines inserted among them), or a splice with another one (without
    its newline: `pool` holds the rows stripped)."""
    return fuzzing.mutate(rng, row.rstrip(b"\n"), INTERESTING, splice_from=pool, keep_newlines=True) + b"\n"


def run(seconds: float, seed: int) -> tuple[int, int]:
    """(rows tried, rows answered in C) within `seconds`."""
    rng = random.Random(seed)
    pool = seeds()
    stripped = [row.rstrip(b"\n") for row in pool]  # the tails spliced in
    index = _index([f"req-{n}" for n in range(1, _LINES + 1)])
    ids, ends = index.custom_id_table()
    deadline = time.monotonic() + seconds
    tried = in_c = 0
    while time.monotonic() < deadline:
        rows = [mutate(rng, rng.choice(pool), stripped) if rng.random() < 0.8 else rng.choice(pool)
                for _ in range(rng.randint(1, 5))]
        buf = b"".join(rows)
        tried += len(rows)
        cuts = [rng.randrange(len(buf) + 1) for _ in range(rng.randint(0, 3))]
        for which in ("output", "error"):
            reference, compiled = both_paths(index, buf, which, cuts=cuts, batch_id=rng.choice(["b", "b" * 200]))
            assert compiled == reference, (buf, which)
        starts = [0, *(at + 1 for at, byte in enumerate(buf) if byte == 10)]
        start = rng.choice(starts) if rng.random() < 0.8 else rng.randint(0, len(buf))  # mostly a row's start
        end = rng.choice([len(buf), rng.randint(start, len(buf))])
        pos, lines, answer_ends, answers = answer_rows(buf, start, end, 0, ids, ends, b'"m"', b"b", True)
        assert start <= pos <= end and (pos == start or buf[pos - 1:pos] == b"\n"), (buf, start, end)
        assert len(lines) == len(answer_ends) and (not answers or answers.endswith(b"\n")), (buf, start, end)
        in_c += len(lines) // 8
    return tried, in_c


def report(seconds: float, seed: int) -> str:
    tried, in_c = run(seconds, seed)
    return (f"fuzz_chatrows: seed {seed}: {tried} rows (mostly mutated) in {seconds:.0f} s, {in_c} answered in C "
            "from random offsets; every run the bytes of the Python reference; no sanitizer report")


if __name__ == "__main__":
    fuzzing.fuzz_main(__doc__ or "", report)
