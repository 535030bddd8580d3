"""The command line the fuzz targets of `make fuzz` share: `--seconds` (how long to mutate) and `--seed` (random
when absent, and printed, so that a failing run can be replayed with it)."""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable


def fuzz_main(doc: str, run: Callable[[float, int], str]) -> None:
    """Parse the options, call `run(seconds, seed)` and print what it says (a failure raises inside `run`)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(run(args.seconds, seed))
