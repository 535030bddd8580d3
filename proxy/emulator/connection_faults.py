"""Network faults the emulator can play on one call: a reply held past the client's deadline, or a connection cut
with a TCP RST. The reset needs the call's transport, which ASGI does not expose: the emulator's HTTP protocol
puts it in the scope."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TRANSPORT_KEY = "vbp.emulator.transport"


class TransportInScope(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the connection's transport in each request's scope."""

    def on_headers_complete(self) -> None:
        self.scope[TRANSPORT_KEY] = self.transport  # type: ignore[literal-required]
        super().on_headers_complete()


class ConnectionReset(Response):
    """A 'reply' that cuts the connection with a TCP RST, as a broken network path or a crashed front end does."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        transport = scope.get(TRANSPORT_KEY)
        if transport is None:
            raise RuntimeError("a reset needs the emulator's own HTTP protocol (TransportInScope)")
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: close() sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        for _ in range(3):  # let uvicorn see the disconnect, so it does not try to answer a 500 itself
            await asyncio.sleep(0)
