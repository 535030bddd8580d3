"""The soak's printout: per operation, per minute, the fault windows, the ledger's end state, and the targets."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.soak import ledger_check
from bench.soak.load import EXPECTED, GOOGLE_STATUS, MIX, NATIVE, Call, percentile, status_counts
from bench.soak.stack import UPSTREAM_TIMEOUT
from bench.soak.watch import MACHINE, Sample
from proxy.settings import default

if TYPE_CHECKING:
    from bench.soak.run import Run

MAX_RSS_GROWTH_MB = 20.0
MAX_FD_GROWTH = 10  # "flat": what a few pooled connections coming and going make
MAX_THREAD_GROWTH = 4
MAX_GET_P99_MS = 50.0
MAX_LOG_BYTES_PER_MINUTE = 1_000_000  # more is a log flood
WARM_UP_SECONDS = 15.0  # shown apart (the p99 target still counts every get)
# After a fault window closes, calls already under way (held replies, retries) may still end in its errors.
WINDOW_TAIL = UPSTREAM_TIMEOUT + default("retry_max_seconds") + 5.0


@dataclass
class Window:
    """When faults were on purpose: (name, start, end) in seconds since the load started."""

    name: str
    start: float
    end: float = float("inf")

    def holds(self, at: float) -> bool:
        return self.start <= at <= self.end + WINDOW_TAIL


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _statuses(calls: list[Call]) -> str:
    return " ".join(f"{status or 'none'}:{n}" for status, n in sorted(status_counts(calls).items()))


def _operations(run: Run) -> None:
    by_op = run.load.by_op()
    print(f"\n{'operation':<13}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}  statuses (expected: "
          "cancel 200/400, foreign_get 404, others 200)")
    for op in MIX:
        calls = by_op.get(op, [])
        seconds = [c.seconds for c in calls]
        print(f"{op:<13}{len(calls):>9,}{_ms(percentile(seconds, 0.5)):>9}{_ms(percentile(seconds, 0.99)):>9}  "
              f"{_statuses(calls)}")
    print(f"(latency from each request's scheduled start; {run.load.late} requests started over 100 ms late)")
    gets = by_op.get("get", [])
    first = [c.seconds for c in gets if c.at < WARM_UP_SECONDS]
    rest = [c.seconds for c in gets if c.at >= WARM_UP_SECONDS]
    print(f"(warm-up: p50/p99 of a get {_ms(percentile(first, 0.5))}/{_ms(percentile(first, 0.99))} ms in the first "
          f"{WARM_UP_SECONDS:g} s, {_ms(percentile(rest, 0.5))}/{_ms(percentile(rest, 0.99))} ms after)")


def _minutes(run: Run) -> None:
    print(f"\n{'at min':>6}{'RSS MB':>9}{'fds':>6}{'threads':>9}{'db conns':>10}{'log KB':>9}{'requests':>10}"
          f"{'unexpected':>12}{'p99 get ms':>12}")
    previous: Sample | None = None
    for s in run.samples:
        if previous is None:
            calls: list[Call] = []
        else:
            calls = [c for c in run.load.calls if previous.at <= c.at < s.at]
        gets = [c.seconds for c in calls if c.op == "get"]
        unexpected = sum(1 for c in calls if c.status not in EXPECTED[c.op])
        connections = "down" if s.db_connections < 0 else str(s.db_connections)
        print(f"{s.at / 60:>6.1f}{s.rss_mb:>9.1f}{s.fds:>6}{s.threads:>9}{connections:>10}"
              f"{(s.log_bytes - (previous.log_bytes if previous else 0)) / 1024:>9.0f}{len(calls):>10,}"
              f"{unexpected:>12,}{_ms(percentile(gets, 0.99)) if gets else '-':>12}")
        previous = s


def _fd_kinds(run: Run) -> None:
    """The proxy's open fds by kind at each sample (see watch.fd_kinds), so that a growth names its cause."""
    last = run.samples[-1].fd_kinds
    kinds = sorted({kind for s in run.samples for kind in s.fd_kinds}, key=lambda k: (-last.get(k, 0), k))
    if not kinds:
        return
    print(f"\nopen fds by kind: {'at min':>6}" + "".join(f"{s.at / 60:>7.1f}" for s in run.samples))
    for kind in kinds:
        print(f"  {kind:<32}" + "".join(f"{s.fd_kinds.get(kind, 0):>7}" for s in run.samples))


def _cpu(run: Run) -> None:
    """Each process's CPU use between samples, in % of one core (the machine has os.cpu_count() of them): the
    process near 100% is the one that saturates (Python runs one core's worth per process)."""
    samples = run.samples
    if len(samples) < 2:
        return
    names = [n for n in samples[-1].cpu_seconds if n != MACHINE] + ["other work", MACHINE]
    print(f"\nCPU, % of one core{'':>4}" + "".join(f"{n:>17}" for n in names))

    def shares(first: Sample, last: Sample) -> list[str]:
        wall = max(last.at - first.at, 1e-9)
        used = {n: last.cpu_seconds.get(n, 0.0) - first.cpu_seconds.get(n, 0.0) for n in last.cpu_seconds}
        used["other work"] = used.get(MACHINE, 0.0) - sum(v for n, v in used.items() if n != MACHINE)
        return [f"{100 * used.get(n, 0.0) / wall:>17.0f}" for n in names]

    for previous, s in zip(samples, samples[1:], strict=False):
        print(f"{'min ' + format(previous.at / 60, '.1f') + '-' + format(s.at / 60, '.1f'):<22}"
              + "".join(shares(previous, s)))
    print(f"{'whole load':<22}" + "".join(shares(samples[0], samples[-1])))


def _baseline(samples: list[Sample]) -> Sample:
    """The first sample a minute or more in (the warm-up is over), else the last one."""
    return next((s for s in samples if s.at >= 60), samples[-1])


def _median_fds(counts: list[tuple[float, int]], start: float, stop: float) -> int | None:
    """The median of the per-second fd counts taken from `start` to `stop` seconds in (None when there are none).
    A leak raises it minute after minute; a burst's connections, closed after their keep-alive, do not."""
    window = sorted(count for at, count in counts if start <= at <= stop)
    return window[len(window) // 2] if window else None


def _fault_calls(run: Run) -> tuple[list[Call], list[Call]]:
    """(calls inside a fault window, calls outside every window)."""
    inside: list[Call] = []
    outside: list[Call] = []
    for call in run.load.calls:
        (inside if any(w.holds(call.at) for w in run.windows) else outside).append(call)
    return inside, outside


def _windows(run: Run, inside: list[Call]) -> list[tuple[str, bool]]:
    """Print what each fault window did; the storm's and the outage's own targets."""
    checks: list[tuple[str, bool]] = []
    def owner(call: Call) -> Window:  # overlapping windows: the call belongs to the one that began last
        return max((w for w in run.windows if w.holds(call.at)), key=lambda w: w.start)

    for window in run.windows:
        calls = [c for c in inside if owner(c) is window]
        failed = [c for c in calls if c.status not in EXPECTED[c.op]]
        shown = Counter(f"{c.op} {c.status or 'none'} {c.error}".strip() for c in failed)
        print(f"\n{window.name} from {window.start:.0f} s to {window.end:.0f} s (+{WINDOW_TAIL:.0f} s tail): "
              f"{len(calls):,} requests, {len(failed):,} failed as injected:")
        for text, n in shown.most_common():
            print(f"  {n:>6,}  {text}")
        if window.name == "storm":
            wrong = [c for c in failed if c.op not in NATIVE or c.status == 0
                     or GOOGLE_STATUS.get(c.status) != c.error]
            checks.append((f"storm: every upstream failure mapped to its Google status on the native door, reports "
                           f"untouched ({len(wrong)} not)", not wrong))
        else:
            # A create Vertex made before its ledger write met the outage is the documented 500 naming the job.
            wrong = [c for c in failed if (c.status, c.error) != (503, "UNAVAILABLE")
                     and (c.op, c.status, c.error) != ("create", 500, "INTERNAL")]
            checks.append((f"database down: every failure a 503 UNAVAILABLE, or for a create made upstream the 500 "
                           f"naming it ({len(failed):,} of them, {len(wrong)} other)", bool(failed) and not wrong))
    return checks


def print_all(run: Run, upstream: ledger_check.Upstream, ledger: ledger_check.Ledger, waited: float) -> bool:
    """Print everything; True when every target is met."""
    _operations(run)
    _minutes(run)
    _fd_kinds(run)
    _cpu(run)
    inside, outside = _fault_calls(run)
    checks = _windows(run, inside)
    print(f"\nat the end (after {waited:.0f} s of draining): {len(upstream.jobs):,} jobs upstream, "
          f"{len(ledger.jobs):,} in the ledger ({sum(1 for _, _, o in ledger.jobs.values() if o == 'reconcile')} "
          f"adopted by reconciliation), {len(run.load.created):,} creates answered 200 of "
          f"{len(run.load.create_attempts):,}")
    for what, count in ledger_check.findings(run.load, upstream, ledger):
        checks.append((f"{what}: {count}", count == 0))

    stray = [c for c in outside if c.status >= 500 or c.status == 0]
    wrong = [c for c in outside if c.status not in EXPECTED[c.op]]
    base, last = _baseline(run.samples), run.samples[-1]
    fds_before = _median_fds(run.fd_counts, base.at - 60, base.at) or base.fds
    fds_after = _median_fds(run.fd_counts, last.at - 60, last.at) or last.fds
    clean_gets = [c.seconds for c in outside if c.op == "get"]
    p99 = percentile(clean_gets, 0.99) * 1000
    log_rate = (last.log_bytes - run.samples[0].log_bytes) / max(last.at / 60, 1e-9)
    checks[:0] = [
        (f"5xx or no reply outside the fault windows: {len(stray)}", not stray),
        (f"other unexpected statuses outside the fault windows: {len(wrong) - len(stray)}", len(wrong) == len(stray)),
        (f"RSS growth after minute {base.at / 60:.1f}: {last.rss_mb - base.rss_mb:+.1f} MB <= "
         f"{MAX_RSS_GROWTH_MB:g} MB", last.rss_mb - base.rss_mb <= MAX_RSS_GROWTH_MB),
        (f"open fds flat: median of the per-second counts {fds_before} in the minute to {base.at / 60:.1f} -> "
         f"{fds_after} in the last minute (<= +{MAX_FD_GROWTH}; the once-a-minute samples: {base.fds} -> {last.fds})",
         fds_after - fds_before <= MAX_FD_GROWTH),
        (f"threads flat: {base.threads} -> {last.threads} (<= +{MAX_THREAD_GROWTH})",
         last.threads - base.threads <= MAX_THREAD_GROWTH),
        (f"p99 of a GET of an owned job at {run.args.rate:g} requests/s: {p99:.1f} ms < {MAX_GET_P99_MS:g} ms",
         p99 < MAX_GET_P99_MS),
        (f"proxy log growth {log_rate / 1024:.0f} KB/min <= {MAX_LOG_BYTES_PER_MINUTE // 1024} KB/min",
         log_rate <= MAX_LOG_BYTES_PER_MINUTE),
    ]
    print()
    for text, met in checks:
        print(f"target: {text}: {'met' if met else 'MISSED'}")
    return all(met for _, met in checks)
