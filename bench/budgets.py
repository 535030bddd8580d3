"""What a budget adds to a create: the estimate (reading the whole input) and the reservation, for 10 MB and
200 MB inputs on fake-gcs-server, and the estimate's read rate as a ratio to a raw download of the same object
through the same reader (target >= 0.5); medians of 3 runs each, the pricing table loaded before (as in a running
proxy).

    PYTHONPATH=. .venv/bin/python -m bench.budgets
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from bench.metering import BUCKET, raw_download, upload
from proxy.budgets.admission import BudgetGate
from proxy.budgets.store import set_budget
from proxy.clock import utcnow
from proxy.emulator.storage import FakeGcsServer
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.settings import Settings
from proxy.tenancy.keys import Principal, create_key

SIZES_MB = (10, 200)
RUNS = 3  # medians of 3 runs each
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
        print(f"{'input':>8} {'raw download':>13} {'estimate':>9} {'reserve':>8} {'added to a create':>18} "
              f"{'read rate':>10}")
        worst = None
        for megabytes in SIZES_MB:
            name = f"input-{megabytes}mb.jsonl"
            upload(client, server.url, name, lines(megabytes * 1_000_000))
            job = {"model": "publishers/google/models/gemini-2.5-flash",
                   "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"gs://{BUCKET}/{name}"]}}}
            raws, estimates = [], []
            for _ in range(RUNS):  # interleaved, so that both see the same load on a shared machine
                size, seconds = raw_download(client, name, 2 * 1024 * 1024)
                raws.append(seconds)
                started = time.perf_counter()
                estimate = gate.estimate_job(job)
                estimates.append(time.perf_counter() - started)
            raw, estimated = statistics.median(raws), statistics.median(estimates)
            assert estimate.bytes_read == size and not estimate.bytes_bounded, estimate.to_json()
            started = time.perf_counter()
            gate.reserve(principal, estimate, project="bench", location="us-central1")
            reserved = time.perf_counter() - started
            ratio = raw / estimated
            worst = ratio if worst is None else min(worst, ratio)
            print(f"{size / 1e6:>6.0f}MB {raw:>12.2f}s {estimated:>8.2f}s {reserved * 1000:>6.1f}ms "
                  f"{estimated + reserved:>17.2f}s {ratio:>9.2f}x   ({estimate.lines:,} lines, "
                  f"{estimate.input_tokens:,} input tokens, high {estimate.to_json()['cost_usd']['high']} USD)")
        print(f"estimate read rate / raw download: worst {worst:.2f} (target >= {TARGET_RATIO}: "
              f"{'met' if worst is not None and worst >= TARGET_RATIO else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
