"""Running the proxy under uvicorn, with an HTTP protocol that tells the app what the request target really was."""

from __future__ import annotations

import gc
import logging
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.serving.heap_trim import HeapTrimmer
from proxy.settings import Settings


class StrictHttpToolsProtocol(HttpToolsProtocol):
    """httptools drops the scheme, host and fragment of a request target before the app sees it.

    The proxy refuses absolute-form targets (`GET http://host/path`) and raw `#`, so it marks them in the
    scope here, where the original target is still known.
    """

    def on_headers_complete(self) -> None:
        target = bytes(self.url)
        if not target.startswith(b"/") or b"#" in target:
            self.scope["vbp.absolute_form"] = True  # type: ignore[typeddict-unknown-key]
        super().on_headers_complete()


SWITCH_INTERVAL = 0.001  # seconds; see run()


class FreezeAfterStartup:
    """Once the app has started, move every object then alive to the garbage collector's permanent generation.

    The libraries, the database engine and the caches make a heap of several hundred thousand objects; without
    this, each full collection walks all of it and stalls the event loop for 50-150 ms, several times a
    minute under load (the proxy's p99). Frozen objects are never scanned again.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_and_freeze(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            await send(message)

        await self.app(scope, receive, send_and_freeze)


STARTUP_FAILURE = 3  # uvicorn's exit status when the app's lifespan did not start


def run(settings: Settings, *, host: str, port: int, sock: socket.socket | None = None) -> None:
    """Serve the proxy until stopped, on `sock` when the caller bound it already (`vbp serve` does, to find a port
    in use before it creates anything)."""
    from proxy.app import create_app

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Background threads (the request log writer, the poller's metering of large outputs) hold the GIL for up to
    # the switch interval each time the event loop wants it back: 5 ms by default, which is the proxy's p99.
    sys.setswitchinterval(SWITCH_INTERVAL)
    config = uvicorn.Config(FreezeAfterStartup(create_app(settings)), host=host, port=port,
                            http=StrictHttpToolsProtocol, loop="auto", access_log=False, log_level=settings.log_level,
                            proxy_headers=False, server_header=False)
    server = uvicorn.Server(config)
    trimmer = HeapTrimmer().start()
    try:
        server.run(sockets=[sock] if sock is not None else None)
    except KeyboardInterrupt:
        pass
    finally:
        trimmer.stop()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
