"""What the soak runs against: `vbp emulator` and `vbp serve` as real processes, on SQLite or a throwaway PostgreSQL,
with a key per team and each team's input uploaded."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.apt import apt_install
from proxy.emulator.command import parse_export_line
from proxy.emulator.storage import free_port

ROOT = Path(__file__).resolve().parents[2]
VBP = Path(sys.executable).with_name("vbp")
BUCKET = "soak-bucket"
LOCATION = "us-central1"
UPSTREAM_TIMEOUT = 3.0  # the storm's held replies outlast it, so the proxy answers 504
INPUT_LINES = [{"request": {"contents": [{"role": "user", "parts": [{"text": f"Soak question {i}?"}]}]}}
               for i in range(3)]


@dataclass
class Team:
    name: str
    key: str
    project: str  # each team its own project: the emulator lists one project's jobs per call

    @property
    def collection(self) -> str:
        return f"/v1/projects/{self.project}/locations/{LOCATION}/batchPredictionJobs"

    def create_body(self, number: int) -> dict[str, Any]:
        folder = f"gs://{BUCKET}/{self.name}"
        return {"displayName": f"soak-{self.name}-{number}", "model": "publishers/google/models/gemini-2.5-flash-lite",
                "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [f"{folder}/input.jsonl"]}},
                "outputConfig": {"predictionsFormat": "jsonl",
                                 "gcsDestination": {"outputUriPrefix": f"{folder}/out/{number}"}},
                "labels": {"soak": "yes"}}


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    proxy_url: str
    emulator_url: str
    proxy: subprocess.Popen[bytes]
    emulator: subprocess.Popen[bytes]
    teams: list[Team]
    database_url: str
    database_path: Path | None  # the SQLite file, whose open handles are counted
    postgres: Any = None  # tests.support.postgres.LocalPostgres when on PostgreSQL
    log_path: Path = field(default_factory=Path)
    storage_url: str = ""

    @property
    def proxy_port(self) -> int:
        return _port(self.proxy_url)

    def peer_ports(self) -> dict[int, str]:
        """The port of each process the proxy connects to -> its name, for telling its sockets apart."""
        peers = {_port(self.emulator_url): "vertex", _port(self.storage_url): "cloud storage"}
        if self.postgres is not None:
            peers[self.postgres.port] = "postgresql"
        return peers


def _port(url: str) -> int:
    return urllib.parse.urlsplit(url if "//" in url else f"http://{url}").port or 80


def ensure_postgres() -> None:
    """The PostgreSQL server binaries, found as the tests find them, installed with apt-get as `.ci/run` does."""
    from tests.support import postgres

    try:
        postgres._bin("initdb")
    except RuntimeError:
        apt_install("postgresql")


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:g} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start_emulator(workdir: Path, env: dict[str, str], job_seconds: float, teams: list[str],
                    log: IO[bytes]) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    source = workdir / "input.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in INPUT_LINES))
    uploads = [arg for team in teams for arg in ("--upload", str(source), f"gs://{BUCKET}/{team}/input.jsonl")]
    process = subprocess.Popen([str(VBP), "emulator", "--port", "0", "--job-seconds", f"{job_seconds:g}",
                                "--storage-faults", "--workdir", str(workdir / "emulator"), *uploads],
                               env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
    assert process.stdout is not None
    found: dict[str, str] = {}
    while "STORAGE_EMULATOR_HOST" not in found or len(found) < 3:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"vbp emulator ended early with {process.wait()}")
        pair = parse_export_line(line.decode())
        if pair:
            found[pair[0]] = pair[1]
    return process, found


@contextlib.contextmanager
def running(workdir: Path, *, database: str, teams: int, job_seconds: float) -> Iterator[Stack]:
    """The emulator, the database and `vbp serve`, each stopped on the way out."""
    names = [f"team-{n}" for n in range(1, teams + 1)]
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    postgres = None
    with contextlib.ExitStack() as stack, open(workdir / "emulator.log", "wb") as emulator_log:
        emulator, emulator_env = _start_emulator(workdir, env, job_seconds, names, emulator_log)
        stack.callback(_stop, emulator)
        if database == "postgres":
            ensure_postgres()
            from tests.support.postgres import LocalPostgres

            postgres = LocalPostgres()
            postgres.start()
            stack.callback(postgres.stop)
            database_url, database_path = postgres.create_database("soak"), None
        else:
            database_path = workdir / "soak.db"
            database_url = f"sqlite:///{database_path}"
        env.update(emulator_env)
        env.update({
            "VBP_DATABASE_URL": database_url, "VBP_TEAM_GCS_PREFIXES": f"gs://{BUCKET}/{{team}}/",
            "VBP_POLL_INTERVAL": "1", "VBP_RECONCILE_INTERVAL": "10", "VBP_RECONCILE_MIN_AGE": "5",
            "VBP_UPSTREAM_TIMEOUT": f"{UPSTREAM_TIMEOUT:g}", "VBP_LOG_LEVEL": "info",
            # a claim whose figures met the database restart lapses within the drain, and is metered again
            "VBP_METERING_LEASE_SECONDS": "30",
        })
        subprocess.run([str(VBP), "db", "upgrade"], env=env, cwd=ROOT, capture_output=True, check=True)
        members = []
        for number, name in enumerate(names, start=1):
            created = subprocess.run([str(VBP), "keys", "create", "--team", name, "--json"], env=env, cwd=ROOT,
                                     capture_output=True, text=True, check=True)
            members.append(Team(name, json.loads(created.stdout)["key"], f"soak-project-{number}"))
        port = free_port()
        log_path = workdir / "proxy.log"
        with open(log_path, "wb") as log:
            proxy = subprocess.Popen([str(VBP), "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=log,
                                     stderr=subprocess.STDOUT)
        stack.callback(_stop, proxy)
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/readyz", proxy, log_path)
        yield Stack(workdir=workdir, env=env, proxy_url=url, emulator_url=emulator_env["VBP_VERTEX_BASE_URL"],
                    proxy=proxy, emulator=emulator, teams=members, database_url=database_url,
                    database_path=database_path, postgres=postgres, log_path=log_path,
                    storage_url=emulator_env["STORAGE_EMULATOR_HOST"])
