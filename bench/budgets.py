"""What a budget adds to a create: the estimate (reading the whole input) and the reservation, for 10 MB and
200 MB inputs on fake-gcs-server, and the estimate's read rate as a ratio to a raw download of the same object
(target >= 0.5). The pricing table is loaded before (as in a running proxy).

Fair, never flattering: each round downloads the object the plain ways first (`RAW_WAYS`: one streaming GET
through the storage client's own session, so the same library and pooled connection the estimate uses, in the
caller's thread at three chunk sizes, and through the estimate's read-ahead reader with nothing parsed) and takes
the FASTEST as that round's raw download; the estimate is `BudgetGate.estimate_job`, the whole of what a create
pays before its reservation (pricing look-up, the media GET, the scan). Rounds are interleaved (alternating which
goes first) so both see the same load; the figures are medians of `RUNS` rounds with their spread (min-max), and
the ratio is median raw / median estimate (the rounds' own ratios' spread printed beside it).

    PYTHONPATH=. .venv/bin/python -m bench.budgets
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from bench.metering import BUCKET, upload
from proxy.budgets.admission import BudgetGate
from proxy.budgets.store import set_budget
from proxy.clock import utcnow
from proxy.emulator.storage import FakeGcsServer
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.metering.objects import DEFAULT_CHUNK_BYTES, iter_chunks, media_url
from proxy.providers.base import OutputObject
from proxy.settings import Settings
from proxy.tenancy.keys import Principal, create_key

SIZES_MB = (10, 200)
RUNS = 7  # interleaved rounds; medians and spreads over them
TARGET_RATIO = 0.5
_WORDS = ("the quick brown fox jumps over a lazy dog while batch prediction jobs quietly spend money, "
          "so budgets hold before the money is gone!").split()


def lines(size: int, seed: int = 17) -> Iterator[bytes]:
    """About `size` bytes of Gemini batch input lines of 50-400 words, in blocks."""
    rng = random.Random(seed)
    written, block = 0, []
    while written < size:
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(50, 400)))
        line = json.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": text}]}],
                                       "generationConfig": {"maxOutputTokens": rng.choice([256, 1024, 8192])}}})
        block.append(line.encode() + b"\n")
        written += len(line) + 1
        if len(block) == 512:
            yield b"".join(block)
            block.clear()
    yield b"".join(block)


Download = Callable[[], int]


def raw_ways(client: storage.Client, gate: BudgetGate, obj: OutputObject) -> dict[str, Download]:
    """The plain downloads of `obj` a round tries (each returns the bytes received); the fastest one counts."""
    url = media_url(client, obj)

    def plain(chunk_bytes: int) -> Download:
        def download() -> int:
            received = 0
            with client._http.get(url, stream=True) as reply:
                reply.raise_for_status()
                for chunk in reply.iter_content(chunk_size=chunk_bytes):
                    received += len(chunk)
            return received
        return download

    def read_ahead() -> int:
        return sum(len(chunk) for chunk in iter_chunks(client, obj, pool=gate.readers()))

    return {"GET 256 KiB": plain(256 * 1024), "GET 2 MiB": plain(DEFAULT_CHUNK_BYTES), "GET 8 MiB": plain(8 << 20),
            "read-ahead 2 MiB": read_ahead}


def timed(work: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def spread(values: list[float], scale: float = 1000.0) -> str:
    """`median (min-max)` in milliseconds."""
    return (f"{statistics.median(values) * scale:.1f} ({min(values) * scale:.1f}-{max(values) * scale:.1f})")


def main(argv: list[str] | None = None) -> int:
    """Print, per input size: raw download, estimate and reservation times, and the read-rate ratio."""
    with FakeGcsServer() as server, tempfile.TemporaryDirectory() as tmp:
        os.environ["STORAGE_EMULATOR_HOST"] = server.url
        client = storage.Client(project="bench", credentials=AnonymousCredentials())
        client.create_bucket(BUCKET)
        url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        upgrade(url)
        sessions = make_sessionmaker(make_engine(url))
        with sessions.begin() as session:
            key, _ = create_key(session, team="bench", name="bench")
            set_budget(session, actor="bench", team="bench", key_id=None, limit_pico=10**18, period="month",
                       now=utcnow())
        principal = Principal(key_id=key.id, team="bench")
        gate = BudgetGate(Settings(database_url=url, estimate_seconds=600), sessions, storage_factory=lambda: client)
        gate.pricing()  # loaded once per process in `vbp serve`: not part of a create's cost
        print(f"medians of {RUNS} interleaved rounds, (min-max); raw = the fastest plain download of each round",
              flush=True)
        worst = None
        try:
            for megabytes in SIZES_MB:
                worst = min_ratio(worst, bench_size(client, server.url, gate, principal, megabytes))
        finally:
            gate.close()
        print(f"estimate read rate / raw download: worst {worst:.2f} (target >= {TARGET_RATIO}: "
              f"{'met' if worst is not None and worst >= TARGET_RATIO else 'NOT met'})")
    return 0


def min_ratio(worst: float | None, ratio: float) -> float:
    return ratio if worst is None else min(worst, ratio)


def bench_size(client: storage.Client, server_url: str, gate: BudgetGate, principal: Principal,
               megabytes: int) -> float:
    """One input size: print its figures and return the ratio of the median raw download to the median estimate."""
    name = f"input-{megabytes}mb.jsonl"
    upload(client, server_url, name, lines(megabytes * 1_000_000))
    blob = client.bucket(BUCKET).get_blob(name)
    assert blob is not None and blob.generation is not None and blob.size is not None
    obj = OutputObject(BUCKET, name, int(blob.generation), int(blob.size))
    job = {"model": "publishers/google/models/gemini-2.5-flash",
           "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"gs://{BUCKET}/{name}"]}}}
    ways = raw_ways(client, gate, obj)
    for way in ways.values():  # warm: the pooled connection, the reader threads, the page cache of the server
        assert way() == obj.size
    gate.estimate_job(job)
    by_way: dict[str, list[float]] = {way: [] for way in ways}
    raws, estimates, ratios = [], [], []
    for round_ in range(RUNS):
        def raw_round() -> float:
            fastest = None
            for way, download in ways.items():
                size, seconds = timed(download)
                assert size == obj.size, (way, size)
                by_way[way].append(seconds)
                fastest = seconds if fastest is None else min(fastest, seconds)
            assert fastest is not None
            return fastest

        if round_ % 2 == 0:
            raw = raw_round()
            estimate, seconds = timed(lambda: gate.estimate_job(job))
        else:
            estimate, seconds = timed(lambda: gate.estimate_job(job))
            raw = raw_round()
        raws.append(raw)
        estimates.append(seconds)
        ratios.append(raw / seconds)
    figures = estimate.to_json()  # type: ignore[attr-defined]
    assert figures["bytes_read"] == obj.size and not figures["bytes_bounded_by_size"], figures
    reserved = []
    for _ in range(RUNS):
        _, held = timed(lambda: gate.reserve(principal, estimate, project="bench",  # type: ignore[arg-type]
                                             location="us-central1"))
        reserved.append(held)
    ratio = statistics.median(raws) / statistics.median(estimates)
    added = statistics.median(estimates) + statistics.median(reserved)
    print(f"{obj.size / 1e6:.0f} MB ({figures['lines']:,} lines, {figures['input_tokens']:,} input tokens, high "
          f"{figures['cost_usd']['high']} USD)")
    print("  raw download ways, ms: " + "; ".join(f"{way} {spread(times)}" for way, times in by_way.items()))
    print(f"  raw download (fastest per round) {spread(raws)} ms | estimate {spread(estimates)} ms | "
          f"reservation {spread(reserved)} ms | added to a create {added * 1000:.1f} ms")
    print(f"  read rate / raw download: {ratio:.2f} (rounds: {min(ratios):.2f}-{max(ratios):.2f}; target >= "
          f"{TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'NOT met'})", flush=True)
    return ratio


if __name__ == "__main__":
    raise SystemExit(main())
