"""What the fuzz targets of `make fuzz` (and the scanners' random tests) share: the command line, `--seconds` (how
long to mutate) and `--seed` (random when absent, and printed, so that a failing run can be replayed with it), and
the line mutator."""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Sequence


def fuzz_main(doc: str, run: Callable[[float, int], str]) -> None:
    """Parse the options, call `run(seconds, seed)` and print what it says (a failure raises inside `run`)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(run(args.seconds, seed))


def mutate(rng: random.Random, line: bytes, pieces: Sequence[bytes], *, splice_from: Sequence[bytes] = (),
           keep_newlines: bool = False) -> bytes:
    """One to four random edits of a line: a flipped bit, an inserted piece, a deletion; with `splice_from`, also
    its tail replaced by another line's and random bytes inserted. Newlines become spaces unless `keep_newlines`."""
    data = bytearray(line)
    kinds = 5 if splice_from else 3
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(data))
        edit = rng.randrange(kinds)
        if edit == 0 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif edit == 1:
            data[at:at] = rng.choice(pieces)
        elif edit == 3:
            other = rng.choice(splice_from)
            data[at:] = other[rng.randint(0, len(other)):]
        elif edit == 2 or kinds == 3:  # a flip of an empty line falls to the last kind
            del data[at:at + rng.randint(1, 8)]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
    return bytes(data) if keep_newlines else bytes(data).replace(b"\n", b" ")
