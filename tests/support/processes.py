"""Child processes that may start their own (a shell's background job, the demo's servers): each runs as the
leader of its own process group, and the whole group is ended, so nothing outlives the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import httpx


def start_group(args: Sequence[str], *, cwd: Path | str, env: dict[str, str],
                stderr: int | IO[Any] = subprocess.PIPE) -> subprocess.Popen[str]:
    """Start `args` as the leader of a new process group, its stdout (and by default stderr) piped as text."""
    return subprocess.Popen(list(args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)


def finish(process: subprocess.Popen[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Wait for the leader's end and its output; on a timeout (or anything else) end its whole group first."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        end_group(process)
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_group(args: Sequence[str], *, cwd: Path | str, env: dict[str, str],
              timeout: float) -> subprocess.CompletedProcess[str]:
    """`subprocess.run` with captured output, and nothing it started left running afterwards."""
    process = start_group(args, cwd=cwd, env=env)
    try:
        return finish(process, timeout)
    finally:
        end_group(process)


def end_group(process: subprocess.Popen[str], timeout: float = 20.0, *, close_streams: bool = True) -> None:
    """SIGTERM to the process's whole group, then SIGKILL to whatever is left after `timeout` seconds; then its
    pipes are closed (unless a reader thread of the caller's still has to reach their end)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is None:
            time.sleep(0.1)
        else:
            try:
                os.killpg(process.pid, 0)  # background children outlive their shell
            except ProcessLookupError:
                break
            time.sleep(0.1)
        if time.monotonic() > deadline:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)
            break
    for stream in (process.stdout, process.stderr) if close_streams else ():
        if stream is not None:
            stream.close()


def wait_until_serving(process: subprocess.Popen[Any], url: str, *, timeout: float = 30.0,
                       explain: Any = lambda: "") -> None:
    """Poll `url` (a `vbp serve` health route) until it answers 200; fail at once if the process ends, and after
    `timeout` seconds; `explain()` (e.g. the server's log) goes into the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert process.poll() is None, f"the server ended: {explain()}"
        assert time.monotonic() < deadline, f"the server did not answer {url} within {timeout} s: {explain()}"
        time.sleep(0.1)


def serve(env: dict[str, str], log: Path, *, port: int) -> subprocess.Popen[bytes]:
    """Start `vbp serve --port PORT` (its output to `log`) as the leader of its own process group, so that
    `os.killpg` reaches its metering workers too; returns once its /healthz answers."""
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    wait_until_serving(process, f"http://127.0.0.1:{port}/healthz", explain=log.read_text)
    return process
