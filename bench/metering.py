"""Metering throughput against fake-gcs-server: raw download rate vs list + read + parse + price + totals.

    PYTHONPATH=. .venv/bin/python -m bench.metering [--mb 1024] [--row-bytes 5400] [--chunk-mb 2]

The object is a realistic predictions file (rows shaped like the samples, with varied usageMetadata: cached,
thinking, audio and tool-use counts, some failed rows). The default mean row size, ~5.4 KB, is that of the
largest job Vertex accepts written out to ~1 GB: 200,000 requests (the per-job limit) in 1 GiB. Metering runs in
a fresh subprocess so that its peak RSS (VmHWM) is its own. Targets: metering >= 50% of the raw download
rate, peak RSS growth < 100 MB. Both rates are the median of RUNS runs of each (the machine's noise moves either
by a third from run to run), with their range. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from proxy.emulator.storage import FakeGcsServer
from proxy.metering.cost import price_row
from proxy.metering.objects import DEFAULT_CHUNK_BYTES, iter_chunks
from proxy.metering.pricing import PricingTable, Rates
from proxy.metering.totals import JobTotals
from proxy.money import format_usd
from proxy.providers.base import FAILED, SUCCEEDED, OutputObject, RowUsage
from proxy.providers.vertex.scanner import LineScanner

MODEL = "gemini-2.5-flash"
BUCKET = "bench-metering"
OUTPUT_DIR = "out/prediction-model-2026-01-01T00:00:00.000000Z"
POOL = 2048  # distinct rows, repeated in a random order to fill the object
TARGET_RATIO = 0.5
TARGET_RSS_MB = 100.0
RUNS = 3  # of the raw download and of the metering each; the median is reported
# Mostly plain English, as most prompts are, with the escapes JSON needs (quotes, newlines, tabs) and a
# little non-ASCII text (which makes decoding slower).
_WORDS = tuple(("the quick brown fox jumps over a lazy dog while an invoice number 4711 and the total of 12.50 "
                "EUR are extracted from the attached document; please answer with the fields only "
                "data: {\"k\": [1, 2]}\nnext line\tsee \"the quoted\" text below").split(" "))
_RARE_WORDS = ("résumé", "naïve", "café", "–", "“quoted”", "✓")


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(_RARE_WORDS) if rng.random() < 0.005 else rng.choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def make_row(rng: random.Random, row_bytes: int) -> tuple[bytes, RowUsage]:
    """One output line and the usage it carries (known here, not parsed back)."""
    request = {
        "contents": [{"parts": [{"text": _text(rng, int(row_bytes * rng.uniform(0.05, 1.35)))}], "role": "user"}],
        "generationConfig": {"max_output_tokens": rng.choice([256, 1024, 8192]), "temperature": 0.2},
        "system_instruction": {"parts": [{"text": "You are a careful assistant that extracts fields."}]},
    }
    processed = f"2026-01-01T00:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}+00:00"
    if rng.random() < 0.01:
        status = ('Bad Request: {"error": {"code": 400, "message": "Please use a valid role: user, model.", '
                  '"status": "INVALID_ARGUMENT"}}')
        row = {"status": status, "processed_time": processed, "request": request}
        return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode(), RowUsage(FAILED)
    prompt = rng.randrange(50, 60000)
    cached = rng.choice([0, 0, rng.randrange(0, prompt + 1)])
    audio = rng.choice([0, 0, 0, rng.randrange(0, prompt + 1)])
    audio_cached = min(audio, cached) if rng.random() < 0.5 else 0
    candidates = rng.randrange(1, 4000)
    thoughts = rng.choice([0, rng.randrange(0, 8000)])
    tool_use = rng.choice([0, 0, 0, rng.randrange(0, 500)])
    usage: dict[str, Any] = {
        "candidatesTokenCount": candidates,
        "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": candidates}],
        "promptTokenCount": prompt,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt - audio}]
        + ([{"modality": "AUDIO", "tokenCount": audio}] if audio else []),
        "totalTokenCount": prompt + candidates + thoughts + tool_use,
        "trafficType": "ON_DEMAND",
    }
    if cached:
        usage["cachedContentTokenCount"] = cached
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached - audio_cached}] + (
            [{"modality": "AUDIO", "tokenCount": audio_cached}] if audio_cached else [])
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    if tool_use:
        usage["toolUsePromptTokenCount"] = tool_use
    response = {
        "candidates": [{"avgLogprobs": -rng.random(), "content": {
            "parts": [{"text": _text(rng, int(row_bytes * rng.uniform(0.01, 0.3)))}], "role": "model"},
            "finishReason": "STOP"}],
        "createTime": "2026-01-01T00:00:00.000000Z",
        "modelVersion": MODEL,
        "responseId": f"{rng.getrandbits(64):016x}",
        "usageMetadata": usage,
    }
    row = {"status": "", "processed_time": processed, "request": request, "response": response}
    known = RowUsage(SUCCEEDED, input=prompt, cached_input=cached, output=candidates, reasoning=thoughts,
                     tool_use_input=tool_use, audio_input=audio, audio_cached_input=audio_cached, model_version=MODEL)
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode(), known


def upload(client: storage.Client, base_url: str, name: str, body: Iterator[bytes]) -> None:
    """One media upload whose body is a generator: the object is never held whole in this process."""
    url = f"{base_url}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={quote(name, safe='')}"
    reply = client._http.post(url, data=body, headers={"Content-Type": "application/x-ndjson"})
    reply.raise_for_status()


def object_body(pool: list[tuple[bytes, RowUsage]], rng: random.Random, target: int,
                picks: Counter[int]) -> Iterator[bytes]:
    """About `target` bytes of rows drawn from the pool (counted in `picks`), in blocks of 512 rows."""
    written = lines = 0
    batch: list[bytes] = []
    while written < target:
        index = rng.randrange(POOL)
        picks[index] += 1
        lines += 1
        line = pool[index][0]
        # Every 97th line ends in CRLF, as a file edited on another system might.
        batch.append(line + (b"\r\n" if lines % 97 == 0 else b"\n"))
        written += len(line) + 1
        if len(batch) == 512:
            yield b"".join(batch)
            batch.clear()
    yield b"".join(batch)


def raw_download(client: storage.Client, name: str, chunk_bytes: int) -> tuple[int, float]:
    """Stream the object through the metering's own download path (`iter_chunks`) and discard it: (bytes, seconds).

    The same GET, chunk size and read-ahead thread as the metering, so the ratio is the cost of parsing alone.
    """
    blob = client.bucket(BUCKET).get_blob(name)
    assert blob is not None and blob.generation is not None and blob.size is not None
    obj = OutputObject(BUCKET, name, int(blob.generation), int(blob.size))
    started = time.perf_counter()
    received = 0
    for chunk in iter_chunks(client, obj, chunk_bytes=chunk_bytes):
        received += len(chunk)
    return received, time.perf_counter() - started


def in_memory_rate(pool: list[tuple[bytes, RowUsage]], rates: Rates, rng: random.Random,
                   chunk_bytes: int) -> float:
    """MB/s of one process's scanning (split + parse + price + totals) of ~128 MB already in memory: its CPU ceiling."""
    data = b"".join(pool[rng.randrange(POOL)][0] + b"\n" for _ in range(128_000_000 // 5000))
    chunks = [data[at:at + chunk_bytes] for at in range(0, len(data), chunk_bytes)]
    scanner = LineScanner(JobTotals(rates))
    started = time.process_time()
    for chunk in chunks:
        scanner.feed(chunk)
    scanner.close()
    return len(data) / (time.process_time() - started) / 1e6


def _vm(field: str, pid: int | str = "self") -> int:
    """A /proc/<pid>/status memory figure in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _reset_peak(pid: int | str) -> None:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")  # reset VmHWM to the current RSS, so the peak is the metering's own
    except OSError:
        pass  # an older kernel: VmHWM then also covers the imports, which can only overstate the growth


def child(chunk_bytes: int, processes: int | None) -> None:
    """The metering run itself, in a fresh process (and its workers): print its figures as JSON.

    As in `vbp serve`, the worker processes are started before the metering (the proxy starts them once and
    keeps them); the time that takes is printed apart. Memory is that of this process AND its workers.
    """
    from proxy.metering.ranges import RangeMeter
    from proxy.providers.vertex.outputs import list_output_objects

    client = storage.Client(project="bench", credentials=AnonymousCredentials())
    rates = PricingTable.load().rates_for("vertex", MODEL, datetime.now(UTC))
    assert rates is not None
    list(client.list_blobs(BUCKET, max_results=1))  # open the connection before the baseline
    meter = RangeMeter(processes=processes)
    started = time.perf_counter()
    meter.start()
    start_seconds = time.perf_counter() - started
    pids: list[int | str] = ["self", *(meter._pool._processes if meter._pool is not None else {})]
    for pid in pids:
        _reset_peak(pid)
    baseline = sum(_vm("VmRSS", pid) for pid in pids)
    runs: list[float] = []
    results: list[dict[str, Any]] = []
    for _ in range(RUNS):
        started = time.perf_counter()
        objects = list_output_objects(client, f"gs://{BUCKET}/{OUTPUT_DIR}")
        totals = meter.meter(client, objects, rates=rates, chunk_bytes=chunk_bytes)
        runs.append(time.perf_counter() - started)
        results.append(totals.to_dict())
    assert all(result == results[0] for result in results), "the runs disagree"
    peak = sum(_vm("VmHWM", pid) for pid in pids)
    meter.close()
    print(json.dumps({"seconds": runs, "bytes": sum(obj.size for obj in objects), "baseline": baseline,
                      "peak": peak, "processes": meter.processes, "start_seconds": start_seconds,
                      "totals": totals.to_dict()}))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="bench.metering", description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the predictions object in MB (default 1024)")
    parser.add_argument("--row-bytes", type=int, default=5400, help="mean row size in bytes (default 5400)")
    parser.add_argument("--chunk-mb", type=int, default=DEFAULT_CHUNK_BYTES >> 20,
                        help=f"read chunk size in MiB (default {DEFAULT_CHUNK_BYTES >> 20}, as the proxy)")
    parser.add_argument("--processes", type=int, default=None,
                        help="metering worker processes (default: one per CPU, as VBP_METER_PROCESSES)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    chunk_bytes = args.chunk_mb * 1024 * 1024
    if args.child:
        child(chunk_bytes, args.processes)
        return 0

    rng = random.Random(args.seed)
    pool = [make_row(rng, args.row_bytes) for _ in range(POOL)]
    target = args.mb * 1_000_000
    picks: Counter[int] = Counter()

    with FakeGcsServer() as server:
        os.environ["STORAGE_EMULATOR_HOST"] = server.url
        client = storage.Client(project="bench", credentials=AnonymousCredentials())
        client.create_bucket(BUCKET)
        name = f"{OUTPUT_DIR}/predictions.jsonl"
        started = time.perf_counter()
        upload(client, server.url, name, object_body(pool, rng, target, picks))
        upload_seconds = time.perf_counter() - started
        # An incremental export beside it must be ignored by the metering.
        upload(client, server.url, f"{OUTPUT_DIR}/incremental_predictions/predictions.jsonl",
               iter([pool[0][0] + b"\n"]))
        raws = [raw_download(client, name, chunk_bytes) for _ in range(RUNS)]
        size = raws[0][0]
        raw_runs = [seconds for _, seconds in raws]
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "bench.metering", "--child", "--chunk-mb", str(args.chunk_mb)]
        if args.processes is not None:
            command += ["--processes", str(args.processes)]
        reply = subprocess.run(command,
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, cwd=root,
                               check=False)
        if reply.returncode != 0:
            print(reply.stderr, file=sys.stderr)
            return 1
        result = json.loads(reply.stdout)

    rates = PricingTable.load().rates_for("vertex", MODEL, datetime.now(UTC))
    assert rates is not None
    memory_rate = in_memory_rate(pool, rates, rng, chunk_bytes)
    rows = picks.total()
    expected_cost = sum(price_row(pool[index][1], rates) * count for index, count in picks.items())
    expected_ok = sum(count for index, count in picks.items() if pool[index][1].kind == SUCCEEDED)
    totals = result["totals"]
    exact = totals["cost_pico"] == expected_cost and totals["lines"]["succeeded"] == expected_ok \
        and totals["lines"]["failed"] == rows - expected_ok and totals["lines"]["malformed"] == 0
    raw_rates = sorted(size / seconds / 1e6 for seconds in raw_runs)
    meter_rates = sorted(result["bytes"] / seconds / 1e6 for seconds in result["seconds"])
    raw_rate, meter_rate = statistics.median(raw_rates), statistics.median(meter_rates)
    ratio = meter_rate / raw_rate
    growth_mb = (result["peak"] - result["baseline"]) / 1e6
    print(f"object            {size / 1e6:,.0f} MB, {rows:,} rows (mean {size / rows:,.0f} B), "
          f"uploaded in {upload_seconds:.1f} s")
    print(f"raw download      {raw_rate:,.0f} MB/s (median of {RUNS}: {raw_rates[0]:,.0f}-{raw_rates[-1]:,.0f}; "
          f"streamed and discarded)")
    seconds = statistics.median(result["seconds"])
    print(f"metering          {meter_rate:,.0f} MB/s (median of {RUNS}: {meter_rates[0]:,.0f}-{meter_rates[-1]:,.0f}), "
          f"{rows / seconds:,.0f} rows/s, {result['processes']} worker processes started beforehand in "
          f"{result['start_seconds']:.2f} s")
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"metering / raw    {ratio:.2f} (target >= {TARGET_RATIO:.2f}: {verdict})")
    print(f"in memory         {memory_rate:,.0f} MB/s (one process scanning chunks already in memory: CPU only)")
    print(f"peak RSS growth   {growth_mb:,.1f} MB, this process and its workers (target < {TARGET_RSS_MB:.0f}: "
          f"{'met' if growth_mb < TARGET_RSS_MB else 'MISSED'})")
    print(f"totals            {format_usd(totals['cost_pico'])} USD, {totals['lines']}: "
          f"{'exact' if exact else 'MISMATCH with the generated rows'}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
