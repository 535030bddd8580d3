"""What placement adds to a create: native creates straight to one project vs. through a pool of three
(VBP_PROJECT_POOLS), alternating in the same run on the emulator through `vbp serve` (SQLite ledger); and the
placement loop alone (claim + outcome, two transactions) with a create that does nothing, on 1 and 3 targets.

    PYTHONPATH=. .venv/bin/python -m bench.placement [--creates 150]

A pool's create also estimates its input (one read of the gs:// file, as budgets do), which is part of what
placement adds when no budget already made the estimate. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from proxy.emulator.stack import EmulatorStack
from proxy.emulator.storage import free_port
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.placement.choice import Target
from proxy.placement.claims import Claim
from proxy.placement.placer import Outcome, Placer
from proxy.tenancy.keys import create_key

POOL = "pool-bench"
MEMBERS = ("bench-a/us-central1", "bench-b/us-central1", "bench-c/us-central1")
BUCKET = "bench-placement"


def _percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def _serve(env: dict[str, str], log: Path, port: int) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"vbp serve did not start: {log.read_text()[-2000:]}")


def creates(count: int) -> tuple[list[float], list[float]]:
    """Alternating creates, direct and pooled: their latencies in seconds."""
    stack = EmulatorStack(job_seconds=3600).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
            upgrade(url)
            with make_sessionmaker(make_engine(url)).begin() as session:
                secret = create_key(session, team="bench", name="bench")[1]
            stack.storage_client().create_bucket(BUCKET).blob("in.jsonl").upload_from_string(
                json.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": "Hello world!"}]}]}}) + "\n")
            env = {**os.environ, **stack.env, "VBP_DATABASE_URL": url, "VBP_POLLER": "false",
                   "VBP_RECONCILE_INTERVAL": "0", "VBP_TEAM_GCS_PREFIXES": f"gs://{BUCKET}/",
                   "VBP_PROJECT_POOLS": f"{POOL}={','.join(MEMBERS)}", "VBP_LOG_LEVEL": "WARNING"}
            port = free_port()
            process = _serve(env, Path(tmp) / "serve.log", port)
            try:
                body = {"displayName": "bench", "model": "publishers/google/models/gemini-2.5-flash",
                        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"gs://{BUCKET}/in.jsonl"]}},
                        "outputConfig": {"predictionsFormat": "jsonl",
                                         "gcsDestination": {"outputUriPrefix": f"gs://{BUCKET}/out/"}}}
                direct, pooled = [], []
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                  headers={"Authorization": f"Bearer {secret}"}) as client:
                    for i in range(count + 5):  # the first five of each warm up
                        for project, samples in (("bench-a", direct), (POOL, pooled)):
                            started = time.perf_counter()
                            reply = client.post(f"/v1/projects/{project}/locations/us-central1/batchPredictionJobs",
                                                json=body)
                            elapsed = time.perf_counter() - started
                            if reply.status_code != 200:
                                raise RuntimeError(f"create answered {reply.status_code}: {reply.text}")
                            if i >= 5:
                                samples.append(elapsed)
                return direct, pooled
            finally:
                process.terminate()
                process.wait(timeout=15)
    finally:
        stack.stop()


def loop_alone(count: int, targets: int) -> list[float]:
    """The placement loop with a create that does nothing, on a fresh SQLite ledger: seconds per placement."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'ledger.db'}"
        upgrade(url)
        placer = Placer(make_sessionmaker(make_engine(url)))
        chosen = [Target(f"deployment-{i}", quota=10**12) for i in range(targets)]

        async def nothing(claim: Claim) -> Outcome[None]:
            return Outcome(None)

        async def run() -> list[float]:
            samples = []
            for _ in range(count + 5):
                started = time.perf_counter()
                await placer.place(targets=chosen, tokens=1000, team="bench", model="m", create=nothing)
                samples.append(time.perf_counter() - started)
            return samples[5:]

        return anyio.run(run)


def main(argv: list[str] | None = None) -> int:
    """Print p50/p99 of direct and pooled creates, what placement added, and the loop alone."""
    parser = argparse.ArgumentParser(prog="bench.placement")
    parser.add_argument("--creates", type=int, default=150)
    args = parser.parse_args(argv)
    direct, pooled = creates(args.creates)
    (d50, d99), (p50, p99) = _percentiles(direct), _percentiles(pooled)
    print(f"{'native create':<34} {'p50':>9} {'p99':>9}   ({args.creates} each, alternating)")
    print(f"{'on one project (no placement)':<34} {d50:>7.2f}ms {d99:>7.2f}ms")
    print(f"{'through a pool of 3 (placement)':<34} {p50:>7.2f}ms {p99:>7.2f}ms")
    print(f"{'placement added':<34} {p50 - d50:>7.2f}ms {p99 - d99:>7.2f}ms")
    for targets in (1, 3):
        l50, l99 = _percentiles(loop_alone(args.creates, targets))
        print(f"{f'placement loop alone, {targets} target(s)':<34} {l50:>7.2f}ms {l99:>7.2f}ms   (SQLite: claim + "
              "outcome transactions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
