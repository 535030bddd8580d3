"""The proxy process seen from outside, once a minute: RSS, open file descriptors, threads, database connections
(PostgreSQL: its pg_stat_activity; SQLite: the process's open handles to the database file) and log growth."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.soak.stack import Stack


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the load started
    rss_mb: float
    fds: int
    threads: int
    db_connections: int
    log_bytes: int


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def _fd_targets(pid: int) -> list[str]:
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:  # closed since the listing
            continue
    return targets


def db_connections(stack: Stack, targets: list[str]) -> int:
    """Connections of the proxy to its ledger right now."""
    if stack.database_path is not None:
        return targets.count(str(stack.database_path.resolve()))
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={stack.postgres.port} user=postgres dbname=postgres",
                         autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'soak' "
                           "AND pid <> pg_backend_pid()").fetchone()
    return int(row[0]) if row else 0


def sample(stack: Stack, at: float) -> Sample:
    """The proxy's figures now (the database's, -1 while it cannot be asked)."""
    pid = stack.proxy.pid
    targets = _fd_targets(pid)
    try:
        connections = db_connections(stack, targets)
    except Exception:  # the database is down (the restart scenario): its figure is unknown, not zero
        connections = -1
    return Sample(at=at, rss_mb=_status_field(pid, "VmRSS") / 1024, fds=len(targets),
                  threads=_status_field(pid, "Threads"), db_connections=connections,
                  log_bytes=stack.log_path.stat().st_size)
