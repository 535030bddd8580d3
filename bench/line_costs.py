"""Per-line cost export of a ~1 GB predictions object vs its raw download, with the export's peak RSS growth.

    PYTHONPATH=. .venv/bin/python -m bench.line_costs [--mb 1024] [--row-bytes 5400] [--rounds 5]

The object is `bench.metering`'s (same generator, same raw baseline: the metering's own streamed download). The
export (`proxy.reports.line_costs`: read, split, one row's usage through the provider seam, its key, its exact
cost, a JSON line) runs in a fresh subprocess so that its peak RSS (VmHWM) is its own; its output is counted and
discarded; the CPU time it used (its own process and its workers) is printed per line, a figure that a shared
machine's load hardly moves. Rounds alternate a raw download and an export; the ratio is the median of each
round's; each round's export is the second in its fresh process (the first, printed apart, is the one where the
workers import the export's code and grow their heaps, once in a running proxy's life). Targets: export >= 50% of
the raw download rate, peak RSS growth <= 100 MB. Figures
are printed, never asserted; the exit status is non-zero only when the lines do not add up to the generated rows' cost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from bench.metering import (
    BUCKET,
    MODEL,
    OUTPUT_DIR,
    POOL,
    TARGET_RATIO,
    TARGET_RSS_MB,
    _reset_peak,
    _vm,
    make_row,
    object_body,
    raw_download,
    upload,
)
from proxy.emulator.storage import FakeGcsServer
from proxy.ledger.models import Job
from proxy.metering.cost import price_row
from proxy.metering.objects import DEFAULT_CHUNK_BYTES
from proxy.metering.pricing import PricingTable
from proxy.metering.ranges import RangeMeter
from proxy.money import PICO_PER_USD, format_usd
from proxy.providers.base import OutputObject
from proxy.reports.line_costs import LineSource, export

NAME = f"{OUTPUT_DIR}/predictions.jsonl"


def child(processes: int) -> None:
    """The export itself (by byte range over `processes` worker processes), in a fresh process: print its figures."""
    client = storage.Client(project="bench", credentials=AnonymousCredentials())
    rates = PricingTable.load().rates_for("vertex", MODEL, datetime.now(UTC))
    assert rates is not None
    blob = client.bucket(BUCKET).get_blob(NAME)
    assert blob is not None and blob.generation is not None and blob.size is not None
    source = LineSource(job=Job(name="bench", provider="vertex"),
                        objects=[OutputObject(BUCKET, NAME, int(blob.generation), int(blob.size))], rates=rates)
    ranges = RangeMeter(processes=processes)
    ranges.start()  # workers are spawned before the clock starts, as a running proxy's are
    pids: list[int | str] = ["self", *worker_pids(ranges)]
    for pid in pids:
        _reset_peak(pid)
    baseline = sum(_vm("VmRSS", pid) for pid in pids)
    # A first export, timed apart: the workers import the export's code and grow their heaps for it once in their
    # life, as a running proxy's did at its first export; the rounds' ratio is the next export's, the steady state.
    started = time.perf_counter()
    for _block in export(client, source, "jsonl", ranges=ranges):
        pass
    first_seconds = time.perf_counter() - started
    total = {"cost": 0, "lines": 0, "bytes": 0}
    with tempfile.TemporaryFile() as out:
        cpu_before = [cpu_seconds(pid) for pid in pids]
        started = time.perf_counter()
        for block in export(client, source, "jsonl", ranges=ranges):
            out.write(block)
            total["bytes"] += len(block)
        seconds = time.perf_counter() - started
        cpu = [after - before for after, before in zip([cpu_seconds(pid) for pid in pids], cpu_before, strict=True)]
        peak = sum(_vm("VmHWM", pid) for pid in pids)
        ranges.close()
        out.seek(0)
        decode = msgspec.json.Decoder(dict[str, Any]).decode
        for record in out:  # after the clock: the figures are checked from the records themselves
            document = decode(record)
            total["lines"] += 1
            if document["line"] != total["lines"]:
                raise SystemExit(f"line {total['lines']} is numbered {document['line']}")
            total["cost"] += parse_usd(document["cost_usd"])
    print(json.dumps({"seconds": seconds, "first_seconds": first_seconds, "size": int(blob.size),
                      "baseline": baseline, "peak": peak, "processes": processes, "cpu_parent": cpu[0],
                      "cpu_workers": sum(cpu[1:]), **total}))


def cpu_seconds(pid: int | str) -> float:
    """The CPU time (user + system) a process has used so far: with a shared machine's load, the figure that
    still says what the export costs."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def worker_pids(ranges: RangeMeter) -> list[int]:
    """The pids of the pool's worker processes (their peak RSS counts as the export's)."""
    pool = ranges.executor()
    return [] if pool is None else list(getattr(pool, "_processes", {}) or {})


def parse_usd(text: str) -> int:
    """An exact USD string -> pUSD."""
    return int(Decimal(text) * PICO_PER_USD)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="bench.line_costs", description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the predictions object in MB (default 1024)")
    parser.add_argument("--row-bytes", type=int, default=5400, help="mean row size in bytes (default 5400)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of a raw download then an export (default 5)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.processes)
        return 0
    rng = random.Random(args.seed)
    pool = [make_row(rng, args.row_bytes) for _ in range(POOL)]
    picks: Counter[int] = Counter()
    with FakeGcsServer() as server:
        os.environ["STORAGE_EMULATOR_HOST"] = server.url
        client = storage.Client(project="bench", credentials=AnonymousCredentials())
        client.create_bucket(BUCKET)
        upload(client, server.url, NAME, object_body(pool, rng, args.mb * 1_000_000, picks))
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "bench.line_costs", "--child", "--processes", str(args.processes)]
        # Rounds of a raw download then an export, each ratio against its own round's download: the raw rate of
        # this machine swings by half from one minute to the next (0.97-1.9 GB/s), so ratios of medians taken
        # minutes apart said more about the minute than about the export.
        rounds = []
        for _ in range(args.rounds):
            raw_size, raw_seconds = raw_download(client, NAME, DEFAULT_CHUNK_BYTES)
            reply = subprocess.run(command, capture_output=True, text=True,
                                   env={**os.environ, "PYTHONPATH": path}, cwd=root, check=False)
            if reply.returncode != 0:
                print(reply.stderr, file=sys.stderr)
                return 1
            rounds.append((raw_size / raw_seconds / 1e6, json.loads(reply.stdout)))
    rates = PricingTable.load().rates_for("vertex", MODEL, datetime.now(UTC))
    assert rates is not None
    expected = sum(price_row(pool[index][1], rates) * count for index, count in picks.items())
    exact = all(result["cost"] == expected and result["lines"] == picks.total() for _, result in rounds)
    raw_rates = sorted(raw for raw, _ in rounds)
    export_rates = sorted(result["size"] / result["seconds"] / 1e6 for _, result in rounds)
    ratios = sorted(result["size"] / result["seconds"] / 1e6 / raw for raw, result in rounds)
    first_rates = sorted(result["size"] / result["first_seconds"] / 1e6 for _, result in rounds)
    ratio = statistics.median(ratios)
    result = rounds[0][1]
    lines = result["lines"]
    growth = max(result["peak"] - result["baseline"] for _, result in rounds) / 1e6
    cpu_workers = statistics.median(result["cpu_workers"] for _, result in rounds)
    cpu_parent = statistics.median(result["cpu_parent"] for _, result in rounds)
    n = len(rounds)
    print(f"object            {result['size'] / 1e6:,.0f} MB, {lines:,} lines; {n} rounds of a raw download then "
          f"an export")
    print(f"raw download      {statistics.median(raw_rates):,.0f} MB/s (median of {n}: {raw_rates[0]:,.0f}-"
          f"{raw_rates[-1]:,.0f})")
    print(f"per-line export   {statistics.median(export_rates):,.0f} MB/s (median of {n}: {export_rates[0]:,.0f}-"
          f"{export_rates[-1]:,.0f}), {result['bytes'] / 1e6:,.0f} MB of JSON lines, {result['processes']} worker "
          f"processes")
    print(f"first export      {statistics.median(first_rates):,.0f} MB/s (median of {n}: {first_rates[0]:,.0f}-"
          f"{first_rates[-1]:,.0f}): each fresh process's first, its workers importing the export's code")
    print(f"CPU per line      {cpu_workers * 1e6 / lines:.1f} us in the workers + {cpu_parent * 1e6 / lines:.1f} us "
          f"in the export's own process (medians)")
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"export / raw      {ratio:.2f}, the median of each round's ratio ({ratios[0]:.2f}-{ratios[-1]:.2f}) "
          f"(target >= {TARGET_RATIO:.2f}: {verdict})")
    print(f"peak RSS growth   {growth:,.1f} MB, the largest of the rounds (target <= {TARGET_RSS_MB:.0f}: "
          f"{'met' if growth <= TARGET_RSS_MB else 'MISSED'})")
    agreement = "exact" if exact else "MISMATCH with the generated rows"
    print(f"lines' sum        {format_usd(result['cost'])} USD in every round: {agreement}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
