"""A time-bounded fuzz target for the estimate's compiled line scanner, for `make fuzz` (which builds it with ASan
and UBSan).

Not a pytest module: it mutates request lines at random (byte flips, JSON-ish inserts, deletes), feeds runs of them
in random chunk sizes, and checks that the scanner's estimate equals the pure-Python one (`test_estscan.agree`),
and that a scan from a random offset stops inside the buffer on a line start. The sanitizers catch what a wrong
figure would not: a read past a buffer, an overflow, undefined behaviour. Stops by itself after `--seconds`.

    python -m tests.budgets.fuzz_estscan --seconds 60 [--seed N]
"""

from __future__ import annotations

import dataclasses
import random
import time

from proxy.budgets._estscan import scan_requests, simd_paths, use_simd
from proxy.metering.pricing import PricingTable
from tests.budgets.test_estscan import MAX_OUTPUT, NOW, SEEDS, agree, mutate
from tests.support.fuzzing import fuzz_main


def run(seconds: float, seed: int) -> int:
    """Runs of lines tried within `seconds`."""
    found = PricingTable.load().rates_for("vertex", "gemini-2.5-pro", NOW)
    assert found is not None and found.long_context is not None
    rates = dataclasses.replace(found, long_context=dataclasses.replace(found.long_context, above_prompt_tokens=20))
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    tried = 0
    while time.monotonic() < deadline:
        use_simd(rng.choice(simd_paths()))  # every version of the text loop the CPU can run
        data = b"".join(mutate(rng, rng.choice(SEEDS)) + rng.choice([b"\n", b"\r\n"]) for _ in range(rng.randint(1, 5)))
        agree(rates, data, chunk=rng.choice([1, 3, 17, 1 << 20]))
        start = rng.randint(0, len(data))
        stop = rng.randint(start, len(data))
        pos = scan_requests(data, start, stop, rng.choice([0, 20, 2**64 - 1]), MAX_OUTPUT)[0]
        assert start <= pos <= stop and (pos == start or data[pos - 1:pos] == b"\n"), (data, start, stop, pos)
        tried += 1
    return tried


def report(seconds: float, seed: int) -> str:
    tried = run(seconds, seed)
    return (f"fuzz_estscan: seed {seed}: {tried} runs of mutated lines in {seconds:.0f} s, every one estimated "
            "alike by the compiled scanner and by msgspec")


if __name__ == "__main__":
    fuzz_main(__doc__ or "", report)
