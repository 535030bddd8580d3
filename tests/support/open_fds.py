"""What a process has open, read from /proc: its fds' targets and, for its TCP sockets, their ports and state
(shared by the soak's watch and the tests that count connections)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# /proc/net/tcp's state column (include/net/tcp_states.h)
_STATES = {"01": "established", "02": "syn-sent", "06": "time-wait", "07": "close", "08": "close-wait",
           "0A": "listen"}


@dataclass(frozen=True)
class TcpSocket:
    local_port: int
    remote_port: int
    state: str  # "established", "close-wait", "listen", ...


def fd_targets(pid: int | str = "self") -> list[str]:
    """Where each open fd of the process points: a path, `socket:[inode]`, `pipe:[inode]`, `anon_inode:...`."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:  # closed since the listing
            continue
    return targets


def tcp_sockets(pid: int | str = "self") -> dict[str, TcpSocket]:
    """`socket:[inode]` -> its ports and state, for every TCP socket of the process's network namespace."""
    found = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            found[f"socket:[{inode}]"] = TcpSocket(int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16),
                                                    _STATES.get(state, f"state {state}"))
    return found


def connections_to(port: int, pid: int | str = "self") -> int:
    """How many established TCP connections the process has open to `port` (as the client)."""
    sockets = tcp_sockets(pid)
    return sum(1 for target in fd_targets(pid) if (s := sockets.get(target)) is not None
               and s.remote_port == port and s.state == "established")
