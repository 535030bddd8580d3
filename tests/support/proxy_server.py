"""`vbp serve`'s app under a real uvicorn server on loopback, in a background thread."""

from __future__ import annotations

import threading
import time

import uvicorn

from proxy.app import ProxyApp, create_app
from proxy.emulator.storage import free_port
from proxy.serving.server import StrictHttpToolsProtocol
from proxy.settings import Settings
from proxy.upstream import Upstream


class ProxyServer:
    def __init__(self, settings: Settings, *, upstream: Upstream | None = None) -> None:
        self.port = free_port()
        self.app: ProxyApp = create_app(settings, upstream=upstream)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, http=StrictHttpToolsProtocol,
                                loop="asyncio", lifespan="on", access_log=False, log_level="warning",
                                proxy_headers=False)  # as `vbp serve`: X-Forwarded-* is the app's to judge
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="vbp-test-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ProxyServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the proxy did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
