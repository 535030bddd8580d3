"""`vbp serve` replicas on one PostgreSQL ledger, in front of one emulator: what the multi-replica tests run."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from proxy.emulator.stack import EmulatorStack
from proxy.emulator.storage import free_port
from proxy.ledger.engine import upgrade
from tests.support.postgres import LocalPostgres
from tests.support.processes import serve


@dataclass(frozen=True)
class Replicas:
    """The emulator, the ledger's URL and the replicas' ports."""

    stack: EmulatorStack
    url: str
    ports: list[int]


@contextmanager
def running_replicas(postgres: LocalPostgres, tmp: Path, *, bucket: str, count: int = 2,
                     job_seconds: float = 1.0) -> Iterator[Replicas]:
    """`count` replicas on a fresh database, `gs://bucket/` open to every team; all stopped afterwards."""
    url = postgres.create_database(f"replicas_{os.getpid()}_{time.monotonic_ns()}")
    upgrade(url)
    stack = EmulatorStack(job_seconds=job_seconds).start()
    env = {**os.environ, **stack.env, "VBP_DATABASE_URL": url, "VBP_POLL_INTERVAL": "0.3",
           "VBP_TEAM_GCS_PREFIXES": f"gs://{bucket}/"}
    ports = [free_port() for _ in range(count)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for i, port in enumerate(ports):
            processes.append(serve(env, tmp / f"replica-{i}.log", port=port))
        yield Replicas(stack, url, ports)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)
        stack.stop()
