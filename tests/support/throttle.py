"""A slow TCP relay on loopback: lets a test stop a process in the middle of a download, deterministically."""

from __future__ import annotations

import socket
import threading
import time


class ThrottledRelay:
    """Forwards connections to `target_port`, sending replies at about `bytes_per_second`; counts bytes relayed."""

    def __init__(self, target_port: int, *, bytes_per_second: int) -> None:
        self.target_port = target_port
        self.rate = bytes_per_second
        self.relayed = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="throttle-accept").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.rate), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, rate: int | None) -> None:
        piece = 16384
        try:
            while not self._stop.is_set():
                data = source.recv(piece)
                if not data:
                    break
                sink.sendall(data)
                if rate is not None:
                    self.relayed += len(data)
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
