"""`make bench`: every benchmark in turn, each printing its own figures and targets.

    PYTHONPATH=. .venv/bin/python -m bench.run [overhead|metering|report|openai_door ...]

Benchmarks print figures and say whether their targets are met; they never fail on a missed target (the exit
status is non-zero only when one could not run or its result was wrong, e.g. a metering total that does not match).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
import traceback
from collections.abc import Sequence

# (module, what it measures); a module that is not there yet is skipped with a note.
BENCHMARKS = (
    ("bench.overhead", "passthrough overhead: GET of a job direct vs. through `vbp serve`, with wrk"),
    ("bench.metering", "metering throughput and memory on a ~1 GB predictions object"),
    ("bench.report", "cost report speed over a 1,000,000-job ledger"),
    ("bench.openai_door", "the OpenAI door: conversion + upload of a 200 MB file, output conversion of ~1 GB"),
    ("bench.budgets", "what a budget adds to a create: the estimate and the reservation, 10 MB and 200 MB inputs"),
    ("bench.line_costs", "per-line cost export of a ~1 GB predictions object vs its raw download"),
    ("bench.placement", "what placement adds to a create: one project vs. a pool of three, p50 and p99"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks named in `argv` (default: all) and return non-zero if any of them failed to run."""
    wanted = list(argv if argv is not None else sys.argv[1:])
    known = {module.rsplit(".", 1)[1] for module, _ in BENCHMARKS}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    failures: list[str] = []
    for module_name, title in BENCHMARKS:
        short = module_name.rsplit(".", 1)[1]
        if wanted and short not in wanted:
            continue
        print(f"\n=== {short}: {title}", flush=True)
        if importlib.util.find_spec(module_name) is None:
            print(f"(skipped: {module_name} is not in this tree)")
            continue
        started = time.monotonic()
        try:
            status = importlib.import_module(module_name).main([])
        except Exception:
            traceback.print_exc()
            status = 1
        print(f"({short} took {time.monotonic() - started:.0f} s)", flush=True)
        if status:
            failures.append(short)
    if failures:
        print(f"\nbenchmarks that did not run cleanly: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
