"""The proxy process seen from outside, once a minute: RSS, open file descriptors, threads, database connections
(PostgreSQL: its pg_stat_activity; SQLite: the process's open handles to the database file) and log growth; and the
CPU time of every process of the soak (the proxy, the emulator, its fake-gcs-server, the load generator), so that
the printout says who saturates."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.soak.stack import Stack
from tests.support.open_fds import fd_targets, tcp_sockets


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the load started
    rss_mb: float
    fds: int
    threads: int
    db_connections: int
    log_bytes: int
    cpu_seconds: dict[str, float]  # process -> user + system CPU time so far (see `cpu_times`)
    fd_kinds: dict[str, int] = field(default_factory=dict)  # what the open fds are (see `fd_kinds`)


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def fd_kinds(stack: Stack, pid: int, targets: list[str]) -> dict[str, int]:
    """How many of the proxy's fds are of each kind: TCP connections named by their peer (a client of the proxy,
    Vertex (the emulator), Cloud Storage, the database) and their state when not established, listening sockets,
    the ledger's files, other files, pipes, epoll and other anonymous inodes."""
    sockets = tcp_sockets(pid)
    peers = stack.peer_ports()
    kinds: Counter[str] = Counter()
    for target in targets:
        if target in sockets:
            tcp = sockets[target]
            if tcp.state == "listen":
                kind = "listening"
            elif tcp.local_port == stack.proxy_port:
                kind = "client"
            else:
                kind = peers.get(tcp.remote_port, f"tcp to :{tcp.remote_port}")
            kinds[kind if tcp.state == "established" else f"{kind} ({tcp.state})"] += 1
        elif target.startswith("socket:"):
            kinds["other socket (unix, udp)"] += 1
        elif target.startswith("anon_inode:"):
            kinds[target.removeprefix("anon_inode:").strip("[]")] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif stack.database_path is not None and target.startswith(str(stack.database_path.resolve())):
            kinds["ledger file" + target.removeprefix(str(stack.database_path.resolve()))] += 1
        else:
            kinds["file " + target if target.startswith("/dev/") else "other file"] += 1
    return dict(kinds)


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads included (its reaped children's not)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": the comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime: fields 14 and 15 of proc(5)


def _children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(entry))
    return found


MACHINE = "whole machine"


def _machine_busy_seconds() -> float:
    """CPU time every core of the machine has spent busy (not idle nor waiting on I/O) since boot."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    return (user + nice + system + irq + softirq + steal) / _TICKS


def cpu_times(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of each process of the soak, and the whole machine's busy time under MACHINE (the
    difference is other work on a shared machine); a process gone since is left out."""
    pids = {"proxy": stack.proxy.pid, "emulator": stack.emulator.pid, "load generator": os.getpid()}
    for child in _children(stack.emulator.pid):
        pids["fake-gcs-server"] = child
    found = {MACHINE: _machine_busy_seconds()}
    for name, pid in pids.items():
        try:
            found[name] = _cpu_seconds(pid)
        except OSError:
            continue
    return found


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


def fd_count(pid: int) -> int:
    """How many fds the process has open now (cheap enough to ask every second)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def sample(stack: Stack, at: float) -> Sample:
    """The proxy's figures now (the database's, -1 while it cannot be asked)."""
    pid = stack.proxy.pid
    targets = fd_targets(pid)
    try:
        connections = db_connections(stack, targets)
    except Exception:  # the database is down (the restart scenario): its figure is unknown, not zero
        connections = -1
    return Sample(at=at, rss_mb=_status_field(pid, "VmRSS") / 1024, fds=len(targets),
                  threads=_status_field(pid, "Threads"), db_connections=connections,
                  log_bytes=stack.log_path.stat().st_size, cpu_seconds=cpu_times(stack),
                  fd_kinds=fd_kinds(stack, pid, targets))
