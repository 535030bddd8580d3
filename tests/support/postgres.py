"""A throwaway PostgreSQL server on loopback for the test run and the benchmarks."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from proxy.emulator.storage import free_port


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (.ci/run installs the postgresql package)")
    return candidates[-1]


class LocalPostgres:
    """initdb + pg_ctl in a temporary folder, trust auth on 127.0.0.1 only.

    PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user
    (or `nobody`) through runuser.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._tmp = tempfile.mkdtemp(prefix="vbp-pg-")
        self.data = Path(self._tmp) / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = "postgres"
            try:
                pwd.getpwnam(user)
            except KeyError:
                user = "nobody"
            shutil.chown(self._tmp, user=user)
            os.chmod(self._tmp, 0o755)
            self._as = ["runuser", "-u", user, "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, cwd=self._tmp)

    def start(self) -> None:
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self.resume()

    def resume(self) -> None:
        """Start the server on its data folder (again, after `pause`), on the same port."""
        options = (f"-p {self.port} -h 127.0.0.1 -k {self._tmp} -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(Path(self._tmp) / "pg.log"),
                  "-w", "-t", "60", "start")

    def pause(self) -> None:
        """Stop the server, keeping its data, as an outage would (open connections are cut); `resume` restarts it."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self._tmp, ignore_errors=True)

