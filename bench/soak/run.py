"""`make soak`: `vbp serve` on the emulator under a steady mixed load, watched from outside, checked at the end.

    PYTHONPATH=. .venv/bin/python -m bench.soak [--minutes 10] [--rate 200] [--database sqlite|postgres]
                                                [--storm] [--db-restart] [--teams 4] [--job-seconds 2]

Prints, per operation, the requests, their statuses and p50/p99 latency; per minute the proxy's RSS, open file
descriptors, threads, database connections and log growth; then each target, met or MISSED. With `--storm`, for
a minute the emulator fails about a tenth of upstream calls (500, 503 and 429 with Retry-After, held replies past
the proxy's upstream timeout, TCP resets, some after the call took effect) and stalls Cloud Storage reads. With
`--db-restart` (PostgreSQL) the database is stopped for `--db-down-seconds` and started again under the load.
Like the benchmarks it never fails on a missed target: its exit status is non-zero only when it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import uvloop

from bench.soak import ledger_check, report
from bench.soak.load import Load, Traffic, open_loop
from bench.soak.report import Window
from bench.soak.stack import UPSTREAM_TIMEOUT, Stack, running
from bench.soak.watch import Sample, fd_count, sample
from proxy.upstream.pool import NewestFirstConnector

STORM = {
    "errors": [
        {"status": 500, "rate": 0.02},
        {"status": 503, "rate": 0.02, "retry_after": 1},
        {"status": 429, "rate": 0.02, "retry_after": 1},
        {"fault": "timeout", "seconds": UPSTREAM_TIMEOUT + 1, "rate": 0.02, "after_serving": True},
        {"fault": "reset", "rate": 0.01},
        {"fault": "reset", "rate": 0.01, "after_serving": True},
    ],
    "storage_stall": {"seconds": 3, "rate": 0.3},
}


@dataclass
class Run:
    args: argparse.Namespace
    stack: Stack
    load: Load = field(default_factory=Load)
    samples: list[Sample] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    fd_counts: list[tuple[float, int]] = field(default_factory=list)  # (seconds in, the proxy's open fds), each second


async def _watch(run: Run, started: float, seconds: float) -> None:
    """A sample at the start and every `--sample-seconds` until the load ends."""
    while True:
        at = time.monotonic() - started
        run.samples.append(await asyncio.to_thread(sample, run.stack, at))
        if at >= seconds:
            return
        await asyncio.sleep(min(run.args.sample_seconds, max(0.0, seconds - at)))


async def _count_fds(run: Run, started: float, seconds: float) -> None:
    """The proxy's open fds once a second: the "flat" target compares each minute's median of these, since one
    sample a minute lands now and then on a burst's connections, which close again after their keep-alive."""
    while (at := time.monotonic() - started) <= seconds:
        run.fd_counts.append((at, fd_count(run.stack.proxy.pid)))
        await asyncio.sleep(1.0)


async def _storm(run: Run, started: float) -> None:
    await asyncio.sleep(max(0.0, started + run.args.storm_at - time.monotonic()))
    async with httpx.AsyncClient(base_url=run.stack.emulator_url, timeout=10) as emulator:
        (await emulator.post("/_emulator/faults", json=STORM)).raise_for_status()
        window = Window("storm", time.monotonic() - started)
        run.windows.append(window)
        await asyncio.sleep(run.args.storm_seconds)
        (await emulator.post("/_emulator/faults", json={})).raise_for_status()
        window.end = time.monotonic() - started


async def _db_restart(run: Run, started: float) -> None:
    await asyncio.sleep(max(0.0, started + run.args.db_restart_at - time.monotonic()))
    window = Window("database down", time.monotonic() - started)
    run.windows.append(window)
    await asyncio.to_thread(run.stack.postgres.pause)
    await asyncio.sleep(run.args.db_down_seconds)
    await asyncio.to_thread(run.stack.postgres.resume)
    window.end = time.monotonic() - started


async def _drive(run: Run) -> None:
    seconds = run.args.minutes * 60
    # Like many clients, not one pool that never shrinks: aiohttp's own connector reuses its oldest idle
    # connection first, so at a steady rate it kept every connection a burst had opened busy in turn, and the
    # proxy's open fds counted the load generator's largest burst (uvicorn closes a connection only after 5 s
    # idle). Newest first, idle for 4 s (before uvicorn's 5 s, so none is reused as the proxy closes it).
    connector = NewestFirstConnector(limit=512, keepalive_timeout=4)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:
        traffic = Traffic(run.stack, session, run.load, time.monotonic())
        await traffic.prepare()
        # The seeded jobs end together 2 s after their creates: wait until they are metered, or their polling and
        # metering (a burst the steady mix never makes: it ends 2 jobs a second) lands in the load's first seconds.
        await asyncio.to_thread(ledger_check.drain, run.stack, timeout=run.args.drain_seconds)
        traffic.started = started = time.monotonic()
        jobs = [open_loop(traffic, rate=run.args.rate, seconds=seconds), _watch(run, started, seconds),
                _count_fds(run, started, seconds)]
        if run.args.storm:
            jobs.append(_storm(run, started))
        if run.args.db_restart:
            jobs.append(_db_restart(run, started))
        await asyncio.gather(*jobs)


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (default 10)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite",
                        help="the ledger: a SQLite file (default) or a throwaway PostgreSQL server")
    parser.add_argument("--teams", type=int, default=4, help="teams, each with its key and project (default 4)")
    parser.add_argument("--job-seconds", type=float, default=2.0, help="how long an emulated job runs (default 2)")
    parser.add_argument("--storm", action="store_true", help="a fault storm in the emulator (see above)")
    parser.add_argument("--storm-at", type=float, help="seconds into the load (default: a third of it)")
    parser.add_argument("--storm-seconds", type=float, default=60.0, help="length of the storm (default 60)")
    parser.add_argument("--db-restart", action="store_true", help="stop and restart PostgreSQL under the load")
    parser.add_argument("--db-restart-at", type=float, help="seconds into the load (default: two thirds of it)")
    parser.add_argument("--db-down-seconds", type=float, default=10.0, help="how long it stays down (default 10)")
    parser.add_argument("--sample-seconds", type=float, default=60.0, help="process figures every (default 60)")
    parser.add_argument("--drain-seconds", type=float, default=180.0,
                        help="after the load, how long to wait for every job to be metered (default 180)")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    args.storm_at = seconds / 3 if args.storm_at is None else args.storm_at
    args.db_restart_at = seconds * 2 / 3 if args.db_restart_at is None else args.db_restart_at
    if args.db_restart and args.database != "postgres":
        parser.error("--db-restart needs --database postgres")
    if args.teams < 2:
        parser.error("--teams must be at least 2 (foreign gets need another team)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print its figures and targets."""
    args = _options(argv)
    with tempfile.TemporaryDirectory(prefix="vbp-soak-") as tmp, \
            running(Path(tmp), database=args.database, teams=args.teams, job_seconds=args.job_seconds) as stack:
        run = Run(args, stack)
        print(f"soak: {args.rate:g} requests/s for {args.minutes:g} min on {args.database}, {args.teams} teams, "
              f"jobs of {args.job_seconds:g} s{', fault storm' if args.storm else ''}"
              f"{', database restart' if args.db_restart else ''}; {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} before", flush=True)
        # uvloop (uvicorn's own loop, installed with it): the load costs the shared cores less than asyncio's loop
        uvloop.run(_drive(run))
        print(f"load done ({len(run.load.calls):,} requests); load average {os.getloadavg()[0]:.1f}; waiting for "
              "every job to end, be adopted and be metered", flush=True)
        upstream, ledger, waited = ledger_check.drain(stack, timeout=args.drain_seconds)
        ok = report.print_all(run, upstream, ledger, waited)
        print(f"proxy log: {stack.log_path.stat().st_size:,} bytes")
    print("all targets met" if ok else "some targets MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
