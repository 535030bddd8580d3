"""A time-bounded fuzz target for the upload conversion's compiled fast path, for `make fuzz` (which builds it with
ASan and UBSan).

Not a pytest module: it edits common chat lines at random (byte flips, JSON-ish inserts, deletes), and checks that
a file of them converts, or is refused, alike by the fast path and by the Python path
(`test_conversion_fast_path.agree`), and that a run from a random offset stops inside the buffer on a line start.
The sanitizers catch what a wrong result would not: a read past a buffer, an overflow, undefined behaviour. Stops by
itself after `--seconds`.

    python -m tests.openai_door.fuzz_chatscan --seconds 60 [--seed N]
"""

from __future__ import annotations

import random
import time

from proxy.openai_door._chatscan import chat_lines
from tests.openai_door.support import CHAT_MODEL
from tests.openai_door.test_conversion_fast_path import GOOD, SEEDS, agree, mutate
from tests.support.fuzzing import fuzz_main


def run(seconds: float, seed: int) -> int:
    """Files tried within `seconds`."""
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    tried = 0
    while time.monotonic() < deadline:
        lines = [mutate(rng, rng.choice(SEEDS)) if rng.random() < 0.7 else rng.choice(SEEDS)
                 for _ in range(rng.randint(1, 5))]
        data = GOOD + b"\n" + b"".join(line + rng.choice([b"\n", b"\r\n"]) for line in lines)
        agree(data)
        start = rng.randint(0, len(data))
        pos, ids, converted = chat_lines(data, start, CHAT_MODEL, 2)
        assert start <= pos <= len(data) and (pos == start or data[pos - 1:pos] == b"\n"), (data, start, pos)
        assert converted.count(b"\n") == len(ids), (data, start)
        tried += 1
    return tried


def report(seconds: float, seed: int) -> str:
    tried = run(seconds, seed)
    return (f"fuzz_chatscan: seed {seed}: {tried} files of mutated lines in {seconds:.0f} s, every one converted "
            "or refused alike by the compiled fast path and by the Python path")


if __name__ == "__main__":
    fuzz_main(__doc__ or "", report)
