"""The OpenAI door's conversions against fake-gcs-server: upload + conversion of a caller's file, and output conversion.

    PYTHONPATH=. .venv/bin/python -m bench.openai_door [--lines 50000] [--line-bytes 3900] [--output-mb 1024]
                                                       [--parts a,b,c] [--rounds 5]

(a) A caller's 200 MB, 50,000-line chat file (system + user text, ~4 KB a line), spooled to disk as the door
    receives it, is converted (`convert_file` into a temporary file: the door refuses a bad file before anything
    reaches Cloud Storage) and the converted file uploaded (`blob.upload_from_file`, 32 MiB chunks); against a
    raw upload of the caller's bytes the same way. Target: ratio >= 0.5.
(b) A ~1 GB Vertex output object of rows made by the emulator's own row maker (`RowMaker`, from converted lines
    of varied length) is turned into OpenAI output lines (`OutputLines` through `output_ranges.converted_blocks`:
    by byte range over --processes worker processes, default one per core, as the metering reads it); against the
    raw download (`iter_chunks`, 2 MiB chunks), in --rounds rounds of a raw download then a conversion (the second
    in a fresh process: the first, printed apart, is where the workers import their code), the ratio the median of
    each round's. Peak RSS growth counts the workers. Target: ratio >= 0.5.
(c) End to end: the same caller file sent to a `vbp serve` on the emulator (SQLite ledger, poller off) as the
    `openai` SDK sends it (`POST /v1/files`, multipart, streamed from disk by httpx), which converts it as it
    arrives (`upload`: no spool) while the caller's bytes and the converted lines upload (`file_store`) and
    records the file; against a raw
    upload of the same bytes to the same fake-gcs-server in the door's own resumable chunks (8 MiB: the transfer the
    door rides on; fake-gcs-server spends time per chunk, so it uploads 200 MB in 8 MiB chunks at about half the
    rate of 32 MiB ones), and, printed beside it, as (a) does it (32 MiB chunks). Peak RSS growth is the `vbp serve`
    process's own. Target: ratio >= 0.5.
Both conversions run in a fresh subprocess so that their peak RSS growth is their own (target <= 100 MB). Rates
are the median of RUNS runs, with their range. Figures are printed, never asserted; a wrong result (a line count
that does not match) fails the run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from bench.line_costs import worker_pids
from bench.metering import _reset_peak, _text, _vm
from bench.overhead import VBP, _process
from proxy.emulator.predictions import RowMaker
from proxy.emulator.stack import EmulatorStack
from proxy.emulator.storage import FakeGcsServer, free_port
from proxy.metering.objects import DEFAULT_CHUNK_BYTES, iter_chunks
from proxy.metering.ranges import RangeMeter
from proxy.openai_door.bucket import UPLOAD_CHUNK_BYTES
from proxy.openai_door.file_conversion import convert_file
from proxy.openai_door.line_index import LineIndexBuilder
from proxy.openai_door.output_conversion import OutputLines
from proxy.openai_door.output_ranges import converted_blocks
from proxy.providers.base import OutputObject

MODEL = "gemini-2.5-flash-lite"
BUCKET = "bench-openai-door"
OUTPUT = "batches/batch_bench/prediction-model-2026-01-01T00:00:00.000000Z/predictions.jsonl"
UPLOAD_CHUNK = 32 << 20  # blob.chunk_size of both uploads: bounded memory, few requests
POOL = 2048  # distinct output rows, repeated (with their own line label and custom_id) to fill the object
RUNS = 3
TARGET_RATIO = 0.5
TARGET_RSS_MB = 100.0


def chat_line(rng: random.Random, number: int, line_bytes: int) -> bytes:
    """One realistic caller line: a system prompt and a user text, ~line_bytes long on average."""
    body = {"model": MODEL, "messages": [
        {"role": "system", "content": _text(rng, 250)},
        {"role": "user", "content": _text(rng, int((line_bytes - 450) * rng.uniform(0.5, 1.5)))}],
        "max_tokens": rng.choice([256, 1024]), "temperature": 0.2}
    return json.dumps({"custom_id": f"request-{number}", "method": "POST", "url": "/v1/chat/completions",
                       "body": body}, ensure_ascii=False).encode() + b"\n"


def output_rows(rng: random.Random, line_bytes: int) -> list[tuple[bytes, bytes, bytes]]:
    """POOL emulator rows, each split around its custom_id and line label so that any line can wear them."""
    caller = b"".join(chat_line(rng, n, line_bytes) for n in range(1, POOL + 1))
    converted = io.BytesIO()
    convert_file(io.BytesIO(caller), converted, max_lines=POOL, max_bytes=len(caller))
    maker = RowMaker(model=MODEL, job_id="projects/1/locations/us-central1/batchPredictionJobs/1")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    pool = []
    for at, line in enumerate(converted.getvalue().splitlines()):
        row, _ = maker.row(line, at, now=now)
        head, _, rest = row.partition(f'"custom_id":"request-{at + 1}"'.encode())
        middle, _, tail = rest.partition(f'"vbp_line":"{at + 1}"'.encode())
        assert tail, "the emulator's row lost the line label"
        pool.append((head, middle, tail))
    return pool


def upload(client: storage.Client, name: str, source: Any, size: int, chunk: int = UPLOAD_CHUNK) -> None:
    """The one upload both sides of (a) use (and the raw uploads of (c))."""
    blob = client.bucket(BUCKET).blob(name)
    blob.chunk_size = chunk
    source.seek(0)
    blob.upload_from_file(source, size=size, content_type="application/x-ndjson")


def child_convert(path: str) -> dict[str, Any]:
    """(a) in this fresh process: convert the caller's file into a temporary file and upload that, RUNS times."""
    client = storage.Client(project="bench", credentials=AnonymousCredentials())
    list(client.list_blobs(BUCKET, max_results=1))  # open the connection before the baseline
    _reset_peak("self")
    baseline = _vm("VmRSS")
    runs, lines = [], 0
    for run in range(RUNS):
        started = time.perf_counter()
        with open(path, "rb") as source, tempfile.TemporaryFile() as converted:
            result = convert_file(source, converted, max_lines=50_000, max_bytes=200 * 1024 * 1024)
            upload(client, f"files/file-{run}/vertex.jsonl", converted, converted.tell())
        runs.append(time.perf_counter() - started)
        lines = result.lines
    return {"seconds": runs, "baseline": baseline, "peak": _vm("VmHWM"), "lines": lines}


def child_output(lines: int, processes: int, runs: int = RUNS) -> dict[str, Any]:
    """(b) in this fresh process: stream the Vertex output and convert it (by byte range over `processes` worker
    processes when more than one), `runs` times."""
    client = storage.Client(project="bench", credentials=AnonymousCredentials())
    blob = client.bucket(BUCKET).get_blob(OUTPUT)
    assert blob is not None and blob.generation is not None and blob.size is not None
    obj = OutputObject(BUCKET, OUTPUT, int(blob.generation), int(blob.size))
    builder = LineIndexBuilder("chat")
    for number in range(1, lines + 1):
        builder.add(f"request-{number}")
    index = builder.build()
    ranges = RangeMeter(processes=processes)
    ranges.start()  # workers are spawned before the clock starts, as a running proxy's are
    pids: list[int | str] = ["self", *worker_pids(ranges)]
    for pid in pids:
        _reset_peak(pid)
    baseline = sum(_vm("VmRSS", pid) for pid in pids)
    seconds, written, answered = [], 0, 0
    for _ in range(runs):
        started = time.perf_counter()
        converter = OutputLines(index, model=MODEL, batch_id="batch_bench", which="output", unanswered="batch_failed")
        written = answered = 0
        for out in converted_blocks(client, [obj], converter, ranges=ranges):
            written += len(out)
            answered += out.count(b"\n")
        seconds.append(time.perf_counter() - started)
    peak = sum(_vm("VmHWM", pid) for pid in pids)
    ranges.close()
    return {"seconds": seconds, "baseline": baseline, "peak": peak, "bytes": obj.size, "written": written,
            "answered": answered, "processes": processes}


def _child(arguments: list[str]) -> dict[str, Any]:
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    reply = subprocess.run([sys.executable, "-m", "bench.openai_door", *arguments], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": path}, cwd=root, check=False)
    if reply.returncode != 0:
        raise RuntimeError(reply.stderr)
    result: dict[str, Any] = json.loads(reply.stdout)
    return result


def end_to_end(caller: Path, work: Path) -> dict[str, Any]:
    """(c): RUNS uploads of the caller's file through `vbp serve`'s POST /v1/files, and RUNS raw uploads of it."""
    size = caller.stat().st_size
    stack = EmulatorStack().start()
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, **stack.env, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get(
               "PYTHONPATH")])), "VBP_DATABASE_URL": f"sqlite:///{work / 'vbp.db'}", "VBP_POLLER": "false",
               "VBP_LOG_LEVEL": "warning"}
        subprocess.run([str(VBP), "db", "upgrade"], env=env, cwd=root, capture_output=True, check=True)
        created = subprocess.run([str(VBP), "keys", "create", "--team", "bench", "--json"], env=env, cwd=root,
                                 capture_output=True, text=True, check=True)
        key = json.loads(created.stdout)["key"]
        os.environ["STORAGE_EMULATOR_HOST"] = stack.storage_url
        client = storage.Client(project="bench", credentials=AnonymousCredentials())
        client.create_bucket(BUCKET)
        raw, raw_door_chunks, proxied, growth, lines = [], [], [], [], 0
        with _process([str(VBP), "serve", "--port", str(port)], env, f"{url}/healthz", work / "serve.log") as serve, \
                httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as http:
            for run in range(RUNS):
                with caller.open("rb") as source:
                    started = time.perf_counter()
                    upload(client, f"raw/file-{run}/input.jsonl", source, size)
                    raw.append(time.perf_counter() - started)
                with caller.open("rb") as source:
                    started = time.perf_counter()
                    upload(client, f"raw/file-{run}/door-chunks.jsonl", source, size, UPLOAD_CHUNK_BYTES)
                    raw_door_chunks.append(time.perf_counter() - started)
                _reset_peak(serve.pid)
                baseline = _vm("VmRSS", serve.pid)
                with caller.open("rb") as source:
                    started = time.perf_counter()
                    reply = http.post("/v1/files", data={"purpose": "batch"},
                                      files={"file": ("input.jsonl", source, "application/jsonl")})
                    proxied.append(time.perf_counter() - started)
                if reply.status_code != 200:
                    raise RuntimeError(f"POST /v1/files answered {reply.status_code}: {reply.text[:300]}")
                growth.append((_vm("VmHWM", serve.pid) - baseline) / 1e6)
                lines = int(stack.storage_client().bucket(stack.files_bucket).get_blob(
                    f"bench/openai/files/{reply.json()['id']}/vertex.jsonl").download_as_bytes().count(b"\n"))
        return {"raw": raw, "raw_door_chunks": raw_door_chunks, "proxied": proxied, "growth": growth, "lines": lines}
    finally:
        stack.stop()


def _rates(size: int, seconds: list[float]) -> tuple[float, list[float]]:
    rates = sorted(size / s / 1e6 for s in seconds)
    return statistics.median(rates), rates


def _verdicts(ratio: float, growth_mb: float) -> None:
    print(f"    ratio          {ratio:.2f} (target >= {TARGET_RATIO:.2f}: "
          f"{'met' if ratio >= TARGET_RATIO else 'MISSED'})")
    print(f"    peak RSS growth {growth_mb:,.1f} MB (target <= {TARGET_RSS_MB:.0f}: "
          f"{'met' if growth_mb <= TARGET_RSS_MB else 'MISSED'})")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="bench.openai_door", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000, help="caller lines of (a) (default 50,000)")
    parser.add_argument("--line-bytes", type=int, default=3900, help="mean caller line size (default 3,900: ~200 MB)")
    parser.add_argument("--output-mb", type=int, default=1024, help="size of the Vertex output of (b) in MB")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--parts", default="a,b,c", help="which of (a), (b), (c) to run (default all)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="worker processes of (b) (default: cores; 1: in one process)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of (b): a raw download, then a conversion in a fresh process (default 5)")
    parser.add_argument("--child", choices=["convert", "output"], help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "convert":
        print(json.dumps(child_convert(args.path)))
        return 0
    if args.child == "output":
        print(json.dumps(child_output(args.lines, args.processes, args.runs)))
        return 0

    parts = set(args.parts.split(","))
    rng = random.Random(args.seed)
    exact = True
    with tempfile.TemporaryDirectory() as folder:
        caller = Path(folder) / "input.jsonl"
        with caller.open("wb") as file:
            for number in range(1, args.lines + 1):
                file.write(chat_line(rng, number, args.line_bytes))
        size = caller.stat().st_size
        print(f"caller file {size / 1e6:,.0f} MB, {args.lines:,} chat lines (mean {size / args.lines:,.0f} B)")
        if "c" in parts:
            e2e = end_to_end(caller, Path(folder))
            raw_rate, raw_range = _rates(size, e2e["raw"])
            chunked_rate, chunked_range = _rates(size, e2e["raw_door_chunks"])
            rate, rate_range = _rates(size, e2e["proxied"])
            print(f"(c) raw upload     {raw_rate:,.1f} MB/s (median of {RUNS}: {raw_range[0]:,.1f}-"
                  f"{raw_range[-1]:,.1f}; {UPLOAD_CHUNK >> 20} MiB chunks, as (a) uploads)")
            print(f"    raw upload     {chunked_rate:,.1f} MB/s (median of {RUNS}: {chunked_range[0]:,.1f}-"
                  f"{chunked_range[-1]:,.1f}; {UPLOAD_CHUNK_BYTES >> 20} MiB chunks, as the door uploads each object)")
            print(f"    POST /v1/files {rate:,.1f} MB/s (median of {RUNS}: {rate_range[0]:,.1f}-"
                  f"{rate_range[-1]:,.1f}; vbp serve on the emulator: receive, convert while uploading, record)")
            print(f"    ratio to the {UPLOAD_CHUNK >> 20} MiB raw upload {rate / raw_rate:.2f}; to the raw upload in "
                  f"the door's chunks:")
            _verdicts(rate / chunked_rate, max(e2e["growth"]))
            exact = exact and e2e["lines"] == args.lines
        if parts & {"a", "b"}:
            exact = _conversions(args, rng, caller, parts) and exact
    return 0 if exact else 1


def _conversions(args: argparse.Namespace, rng: random.Random, caller: Path, parts: set[str]) -> bool:
    """(a) and (b), on a fake-gcs-server of their own."""
    size = caller.stat().st_size
    exact = True
    with FakeGcsServer() as server:
        os.environ["STORAGE_EMULATOR_HOST"] = server.url
        client = storage.Client(project="bench", credentials=AnonymousCredentials())
        client.create_bucket(BUCKET)
        if "a" in parts:
            raw_upload = []
            for run in range(RUNS):
                with caller.open("rb") as source:
                    started = time.perf_counter()
                    upload(client, f"files/file-{run}/input.jsonl", source, size)
                    raw_upload.append(time.perf_counter() - started)
            converted = _child(["--child", "convert", "--path", str(caller)])
            raw_rate, raw_range = _rates(size, raw_upload)
            convert_rate, convert_range = _rates(size, converted["seconds"])
            print(f"(a) raw upload     {raw_rate:,.1f} MB/s (median of {RUNS}: {raw_range[0]:,.1f}-"
                  f"{raw_range[-1]:,.1f})")
            print(f"    convert+upload {convert_rate:,.1f} MB/s (median of {RUNS}: {convert_range[0]:,.1f}-"
                  f"{convert_range[-1]:,.1f}; converted into a temporary file, then uploaded)")
            _verdicts(convert_rate / raw_rate, (converted["peak"] - converted["baseline"]) / 1e6)
            exact = converted["lines"] == args.lines
            print(f"    lines          {'exact' if exact else 'MISMATCH'}: {converted['lines']:,} converted")
        if "b" not in parts:
            return exact
        pool = output_rows(rng, args.line_bytes)
        target = args.output_mb * 1_000_000
        with tempfile.TemporaryFile() as rows:
            written = lines = 0
            while written < target:
                lines += 1
                head, middle, tail = pool[rng.randrange(POOL)]
                row = b"".join((head, f'"custom_id":"request-{lines}"'.encode(), middle,
                                f'"vbp_line":"{lines}"'.encode(), tail))
                rows.write(row)
                written += len(row)
            upload(client, OUTPUT, rows, written)
        blob = client.bucket(BUCKET).get_blob(OUTPUT)
        assert blob is not None and blob.generation is not None and blob.size is not None
        obj = OutputObject(BUCKET, OUTPUT, int(blob.generation), int(blob.size))
        # Rounds of a raw download then a conversion, each ratio against its own round's download: the raw rate of
        # this machine swings by half from one minute to the next, so ratios of medians taken minutes apart said
        # more about the minute than about the conversion.
        rounds = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for _chunk in iter_chunks(client, obj, chunk_bytes=DEFAULT_CHUNK_BYTES):
                pass
            raw_rate = obj.size / (time.perf_counter() - started) / 1e6
            # Two conversions in the fresh process: the first (its workers importing the conversion's code and
            # growing their heaps, once in a running proxy's life) is printed apart; the round's is the second.
            rounds.append((raw_rate, _child(["--child", "output", "--lines", str(lines), "--processes",
                                             str(args.processes), "--runs", "2"])))
    output = rounds[0][1]
    raw_rates = sorted(raw for raw, _ in rounds)
    out_rates = sorted(result["bytes"] / result["seconds"][-1] / 1e6 for _, result in rounds)
    first_rates = sorted(result["bytes"] / result["seconds"][0] / 1e6 for _, result in rounds)
    ratios = sorted(result["bytes"] / result["seconds"][-1] / 1e6 / raw for raw, result in rounds)
    n = len(rounds)
    print(f"(b) Vertex output  {output['bytes'] / 1e6:,.0f} MB, {lines:,} emulator rows (mean "
          f"{output['bytes'] / lines:,.0f} B) -> {output['written'] / 1e6:,.0f} MB of OpenAI output lines; {n} rounds "
          f"of a raw download then a conversion")
    print(f"    raw download   {statistics.median(raw_rates):,.0f} MB/s (median of {n}: {raw_rates[0]:,.0f}-"
          f"{raw_rates[-1]:,.0f})")
    print(f"    OutputLines    {statistics.median(out_rates):,.0f} MB/s (median of {n}: {out_rates[0]:,.0f}-"
          f"{out_rates[-1]:,.0f}), {lines * statistics.median(out_rates) * 1e6 / output['bytes']:,.0f} rows/s, "
          f"{output['processes']} worker processes")
    print(f"    first          {statistics.median(first_rates):,.0f} MB/s (median of {n}: {first_rates[0]:,.0f}-"
          f"{first_rates[-1]:,.0f}): each fresh process's first conversion")
    print(f"    each round's ratio {ratios[0]:.2f}-{ratios[-1]:.2f}")
    _verdicts(statistics.median(ratios), max(result["peak"] - result["baseline"] for _, result in rounds) / 1e6)
    answered = all(result["answered"] == lines for _, result in rounds)
    print(f"    lines          {'exact' if answered else 'MISMATCH'}: {output['answered']:,} answered of "
          f"{lines:,} rows ({'in every round' if answered else 'NOT in every round'})")
    return exact and answered


if __name__ == "__main__":
    sys.exit(main())
