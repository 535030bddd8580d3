"""A real HTTP receiver on loopback for webhook tests: records every request, and answers 500 to the first
`fail_first` tries of each webhook-id (or hangs on them, with `hang_first`)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    fail_first: int = 0
    hang_first: int = 0
    hang_seconds: float = 30.0
    received: list[Received] = field(default_factory=list)
    tries: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.tries[headers.get("webhook-id", "")] += 1
                    tries = receiver.tries[headers.get("webhook-id", "")]
                if tries <= receiver.hang_first:
                    time.sleep(receiver.hang_seconds)
                status = 500 if tries <= receiver.hang_first + receiver.fail_first else 204
                with receiver.lock:
                    receiver.received.append(Received(headers, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def delivered(self) -> list[Received]:
        """The requests answered with a 2xx."""
        with self.lock:
            return [r for r in self.received if r.status < 300]

    def verified(self, secret: str) -> list[dict[str, object]]:
        """The bodies of the delivered requests, each verified with the standardwebhooks library."""
        return [Webhook(secret).verify(r.body, r.headers) for r in self.delivered()]
