"""Passthrough overhead: GET of one job straight from a minimal upstream vs. through `vbp serve`, with wrk.

    PYTHONPATH=. .venv/bin/python -m bench.overhead [--seconds 5] [--rounds 3] [--connections 1,32]

The upstream stub (a raw ASGI app under uvicorn in its own process, or with `--stub-server asyncio` a raw asyncio
HTTP/1.1 keep-alive server) answers every job call with the same ~1 KB RUNNING job and serves the OAuth2 token
endpoint of a generated service account. The proxy is the real
thing: `vbp serve` in a subprocess on SQLite, with a key from `vbp keys create` and the job created through it (so
the GET is of an owned job). Direct and proxied runs alternate, round after round; the table shows medians.
Targets (2 cores): at concurrency 1 the proxy adds at most 0.5 ms at p50 and 2 ms at p99; at concurrency 32 it
sustains at least 12% of the direct requests/s. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from bench.apt import apt_install
from proxy.emulator.oauth import ServiceAccount
from proxy.emulator.storage import free_port

ROOT = Path(__file__).resolve().parents[1]
VBP = Path(sys.executable).with_name("vbp")
PROJECT = "bench-project"
PROJECT_NUMBER = "510528649030"
LOCATION = "us-central1"
JOB_ID = "3814889423749775360"
JOB_NAME = f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/batchPredictionJobs/{JOB_ID}"
PROXY_PATH = f"/v1/projects/{PROJECT}/locations/{LOCATION}/batchPredictionJobs/{JOB_ID}"
MAX_ADDED_P50_MS = 0.5
MAX_ADDED_P99_MS = 2.0
MIN_THROUGHPUT_RATIO = 0.12
MODEL = "publishers/google/models/gemini-2.5-flash"


def job_json() -> bytes:
    """The job every stub call answers: ~1 KB, shaped like a real RUNNING BatchPredictionJob."""
    job = {
        "name": JOB_NAME,
        "displayName": "bench-nightly-invoice-extraction",
        "model": MODEL,
        "modelVersionId": "1",
        "inputConfig": {"instancesFormat": "jsonl",
                        "gcsSource": {"uris": ["gs://bench-bucket/inputs/2026-01-01/requests-00000-of-00001.jsonl"]}},
        "outputConfig": {"predictionsFormat": "jsonl",
                         "gcsDestination": {"outputUriPrefix": "gs://bench-bucket/outputs/2026-01-01/"}},
        "state": "JOB_STATE_RUNNING",
        "createTime": "2026-01-01T00:00:00.123456Z",
        "startTime": "2026-01-01T00:00:05.654321Z",
        "updateTime": "2026-01-01T00:00:05.654321Z",
        "labels": {"vbp-team": "bench", "vbp-key": "key_0123456789ab", "pipeline": "invoices", "env": "bench"},
        "modelParameters": {},
        "manualBatchTuningParameters": {},
        "completionStats": {"successfulCount": "1200", "incompleteCount": "18800"},
        "resourcesConsumed": {},
        "disableContainerLogging": False,
        "partialFailures": [{"code": 8, "message": "Quota exceeded for aiplatform.googleapis.com/"
                             "generate_content_requests_per_minute_per_project_per_base_model; retried."}],
    }
    return json.dumps(job, separators=(",", ":")).encode()


# --- the upstream stub (runs in its own process) -------------------------------------------------------------


def _http_reply(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class _StubProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive with Content-Length bodies only (all that wrk, aiohttp and google-auth send here)."""

    def __init__(self, job: bytes, token: bytes, missing: bytes) -> None:
        self._job, self._token, self._missing = job, token, missing
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buffer[:end]).lower()
            length = 0
            at = head.find(b"\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r", at + 1)
                length = int(head[at + 16:stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(buffer) < total:
                break
            del buffer[:total]
            target = head.split(b" ", 2)[1]
            if b"/batchpredictionjobs" in target:
                out.append(self._job)
            elif target == b"/token":
                out.append(self._token)
            else:
                out.append(self._missing)
            close = close or b"\nconnection: close" in head
        if out and self._transport is not None:
            self._transport.write(b"".join(out))
            if close:
                self._transport.close()


_TOKEN = json.dumps({"access_token": "ya29.bench-token", "expires_in": 3600, "token_type": "Bearer"}).encode()
_MISSING = b'{"error":{"code":404,"message":"not here","status":"NOT_FOUND"}}'


def serve_stub(port: int) -> None:
    """Serve the stub on 127.0.0.1:`port` until killed (uvloop when installed)."""
    replies = (_http_reply("200 OK", job_json()), _http_reply("200 OK", _TOKEN), _http_reply("404 Not Found", _MISSING))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _StubProtocol(*replies), "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())


def serve_uvicorn_stub(port: int) -> None:
    """The same answers from a raw ASGI app under uvicorn (httptools, uvloop): a slower, more common server."""
    import uvicorn

    job = job_json()
    headers = [(b"content-type", b"application/json; charset=UTF-8")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        status, body = (200, job) if "/batchPredictionJobs" in path else (200, _TOKEN) if path == "/token" \
            else (404, _MISSING)
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop="auto", lifespan="off", access_log=False,
                log_level="warning", backlog=1024)


# --- processes ----------------------------------------------------------------------------------------------


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:g} s") from None
            time.sleep(0.05)


@contextmanager
def _process(args: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_http(ready_url, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _call(method: str, url: str, key: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- wrk ----------------------------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int  # non-2xx replies, socket errors and timeouts
    cpu_us: float = 0.0  # CPU time (user + system) of the server under test per request, when known


def _duration_ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if found is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found[1]) * _UNITS_MS[found[2]]


def parse_wrk(output: str) -> WrkRun:
    """Requests/s, p50/p99 (from `--latency`), request count and failures from wrk's report."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    count = re.search(r"^\s+(\d+) requests in", output, re.M)
    if not (rps and p50 and p99 and count):
        raise ValueError(f"unexpected wrk output:\n{output}")
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors:
        bad += sum(int(n) for n in errors.groups())
    return WrkRun(float(rps[1]), _duration_ms(p50[1]), _duration_ms(p99[1]), int(count[1]), bad)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, *, connections: int, seconds: float, key: str, pid: int | None = None) -> WrkRun:
    """One wrk run (one thread: the machine's cores are better spent on the servers under test)."""
    before = cpu_seconds(pid) if pid else 0.0
    reply = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "5s",
                            "-H", f"Authorization: Bearer {key}", url],
                           capture_output=True, text=True, check=True)
    run = parse_wrk(reply.stdout)
    if pid and run.requests:
        run = dataclasses.replace(run, cpu_us=(cpu_seconds(pid) - before) / run.requests * 1e6)
    return run


def ensure_wrk() -> None:
    """Install wrk with apt-get when it is missing (the bench set-up; needs root or sudo)."""
    if not shutil.which("wrk"):
        apt_install("wrk")


# --- the benchmark ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    connections: int
    direct: list[WrkRun]
    proxied: list[WrkRun]

    @staticmethod
    def median(runs: list[WrkRun], field: str) -> float:
        return statistics.median(getattr(run, field) for run in runs)


def measure(direct_url: str, proxied_url: str, *, key: str, connections: int, rounds: int, seconds: float,
            stub_pid: int, proxy_pid: int) -> Summary:
    """Alternate direct and proxied runs (swapping which goes first each round) after a short warm-up of each."""
    for url in (direct_url, proxied_url):
        wrk(url, connections=connections, seconds=1, key=key)
    direct: list[WrkRun] = []
    proxied: list[WrkRun] = []
    for round_no in range(rounds):
        order = [(direct_url, direct, stub_pid), (proxied_url, proxied, proxy_pid)]
        for url, runs, pid in order if round_no % 2 == 0 else reversed(order):
            runs.append(wrk(url, connections=connections, seconds=seconds, key=key, pid=pid))
    return Summary(connections, direct, proxied)


def report(summaries: list[Summary]) -> bool:
    """Print the table, the ratios and the verdicts; True when every target is met."""
    print(f"{'GET one job':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU us/req':>12}{'requests':>11}"
          f"{'failed':>8}")
    for summary in summaries:
        for label, runs in (("direct", summary.direct), ("proxied", summary.proxied)):
            med = Summary.median
            print(f"{label + f', c={summary.connections}':<22}{med(runs, 'rps'):>10,.0f}{med(runs, 'p50_ms'):>10.3f}"
                  f"{med(runs, 'p99_ms'):>10.3f}{med(runs, 'cpu_us'):>12.0f}{sum(r.requests for r in runs):>11,}"
                  f"{sum(r.bad for r in runs):>8,}")
    print("(medians of the rounds; requests and failed are totals; CPU: the server process answering wrk)")
    ok = True
    for summary in summaries:
        med = Summary.median
        direct_rps, proxied_rps = med(summary.direct, "rps"), med(summary.proxied, "rps")
        added50 = med(summary.proxied, "p50_ms") - med(summary.direct, "p50_ms")
        added99 = med(summary.proxied, "p99_ms") - med(summary.direct, "p99_ms")
        ratio = proxied_rps / direct_rps if direct_rps else 0.0
        print(f"c={summary.connections:<3} proxied/direct req/s {ratio:.3f}, "
              f"p50 x{med(summary.proxied, 'p50_ms') / med(summary.direct, 'p50_ms'):.2f} (+{added50:.3f} ms), "
              f"p99 x{med(summary.proxied, 'p99_ms') / med(summary.direct, 'p99_ms'):.2f} (+{added99:.3f} ms)")
        checks: list[tuple[str, bool]] = []
        if summary.connections == 1:
            checks += [(f"added p50 {added50:.3f} ms <= {MAX_ADDED_P50_MS} ms", added50 <= MAX_ADDED_P50_MS),
                       (f"added p99 {added99:.3f} ms <= {MAX_ADDED_P99_MS} ms", added99 <= MAX_ADDED_P99_MS)]
        if summary.connections == 32:
            checks.append((f"req/s ratio {ratio:.3f} >= {MIN_THROUGHPUT_RATIO}", ratio >= MIN_THROUGHPUT_RATIO))
        failures = sum(r.bad for r in summary.direct + summary.proxied)
        if failures:
            checks.append((f"{failures} failed requests", False))
        for text, met in checks:
            print(f"      target: {text}: {'met' if met else 'MISSED'}")
            ok = ok and met
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="bench.overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="direct/proxied pairs per concurrency (default 3)")
    parser.add_argument("--connections", default="1,32", help="comma-separated wrk concurrencies (default 1,32)")
    parser.add_argument("--stub-server", choices=["asyncio", "uvicorn"], default="uvicorn",
                        help="the upstream stub: an ASGI app under uvicorn (default: the 12-23k req/s stub the "
                             "targets were set against) or a raw asyncio protocol (50-80k req/s)")
    parser.add_argument("--stub", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--keep-proxy", action="store_true",
                        help="after the runs, keep the stack up until Ctrl-C (for profiling)")
    args = parser.parse_args(argv)
    if args.stub:
        (serve_uvicorn_stub if args.stub_server == "uvicorn" else serve_stub)(args.stub)
        return 0
    try:
        ensure_wrk()
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"wrk is not installed and could not be installed ({exc}); install the Debian package wrk",
              file=sys.stderr)
        return 1
    concurrencies = [int(c) for c in args.connections.split(",")]

    with tempfile.TemporaryDirectory(prefix="vbp-bench-") as tmp:
        work = Path(tmp)
        stub_port, proxy_port = free_port(), free_port()
        stub_url, proxy_url = f"http://127.0.0.1:{stub_port}", f"http://127.0.0.1:{proxy_port}"
        ServiceAccount.generate(token_uri=f"{stub_url}/token").write(work / "service-account.json")
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": pythonpath, "VBP_DATABASE_URL": f"sqlite:///{work / 'vbp.db'}",
               "VBP_VERTEX_BASE_URL": stub_url, "VBP_POLLER": "false", "VBP_LOG_LEVEL": "warning",
               "VBP_TEAM_GCS_PREFIXES": "gs://bench-bucket/{team}/",
               "GOOGLE_APPLICATION_CREDENTIALS": str(work / "service-account.json")}
        # only `vbp serve` and `vbp db upgrade` create a ledger: the key needs one first
        subprocess.run([str(VBP), "db", "upgrade"], env=env, cwd=ROOT, capture_output=True, check=True)
        created = subprocess.run([str(VBP), "keys", "create", "--team", "bench", "--json"], env=env, cwd=ROOT,
                                 capture_output=True, text=True, check=True)
        key = json.loads(created.stdout)["key"]
        with _process([sys.executable, "-m", "bench.overhead", "--stub", str(stub_port),
                       "--stub-server", args.stub_server], env,
                      f"{stub_url}/healthz", work / "stub.log") as stub, \
                _process([str(VBP), "serve", "--port", str(proxy_port)], env, f"{proxy_url}/healthz",
                         work / "proxy.log") as proxy:
            body = json.dumps({"displayName": "bench", "model": MODEL,
                               "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://bench-bucket/bench/in.jsonl"]}},
                               "outputConfig": {"predictionsFormat": "jsonl",
                                                "gcsDestination": {"outputUriPrefix": "gs://bench-bucket/bench/out/"}}}).encode()
            create_url = f"{proxy_url}/v1/projects/{PROJECT}/locations/{LOCATION}/batchPredictionJobs"
            status, reply = _call("POST", create_url, key, body)
            if status != 200:
                print(f"creating the job through the proxy failed: {status} {reply[:300]!r}", file=sys.stderr)
                return 1
            status, reply = _call("GET", proxy_url + PROXY_PATH, key)
            if status != 200 or json.loads(reply)["name"] != JOB_NAME:
                print(f"the proxied GET failed: {status} {reply[:300]!r}", file=sys.stderr)
                return 1
            direct_url = stub_url + f"/v1/projects/{PROJECT_NUMBER}/locations/{LOCATION}/batchPredictionJobs/{JOB_ID}"
            print(f"GET of one owned job ({len(job_json())} B reply) from a {args.stub_server} stub, wrk -t1, "
                  f"{args.rounds} rounds of {args.seconds:g} s per side, direct and proxied alternating; "
                  f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before", flush=True)
            summaries = [measure(direct_url, proxy_url + PROXY_PATH, key=key, connections=c, rounds=args.rounds,
                                 seconds=args.seconds, stub_pid=stub.pid, proxy_pid=proxy.pid) for c in concurrencies]
            report(summaries)
            print(f"load average {os.getloadavg()[0]:.1f} after (other work on the machine shows up in p99)")
            if args.keep_proxy:
                print(f"proxy pid {proxy.pid} at {proxy_url + PROXY_PATH}, key {key}; Ctrl-C to stop", flush=True)
                signal.signal(signal.SIGTERM, signal.default_int_handler)  # a background job ignores SIGINT
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
