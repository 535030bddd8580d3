"""The Cloud Storage front: an HTTP pass-through to fake-gcs-server that can stall object reads on demand.

fake-gcs-server has no fault injection of its own, so `vbp emulator --storage-faults` (or
`EmulatorStack(storage_faults=True)`) points `STORAGE_EMULATOR_HOST` here instead. Every call is passed on as it
came; an object read (a media download) picked by the `storage_stall` fault sends its status, headers and first
bytes, then pauses, as a congested or throttled Cloud Storage read does, and then delivers the rest.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from proxy.emulator.faults import FaultState

# Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the message's; httpx sets Host and the length.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
                         b"upgrade"})
_SET_BY_CLIENT = _HOP_BY_HOP | {b"host", b"content-length"}


def is_object_read(method: str, path: str, query: bytes) -> bool:
    """A media download: `GET /download/storage/v1/b/B/o/O` or `GET /storage/v1/b/B/o/O?alt=media`."""
    if method != "GET":
        return False
    return path.startswith("/download/") or b"alt=media" in query.split(b"&")


class StorageFront:
    """A raw ASGI app passing every call to `target` (fake-gcs-server) and stalling reads as `faults` say."""

    def __init__(self, target: str, faults: FaultState) -> None:
        self.target = target
        self.faults = faults
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self._client is None:  # made in the server's own event loop
            self._client = httpx.AsyncClient(base_url=self.target, timeout=None, follow_redirects=False)
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _SET_BY_CLIENT]
        request = self._client.build_request(scope["method"], target, headers=headers, content=bytes(body))
        reply = await self._client.send(request, stream=True)
        stall = self.faults.storage_stall() if is_object_read(scope["method"], scope["path"],
                                                             scope["query_string"]) else 0.0
        try:
            await send({"type": "http.response.start", "status": reply.status_code,
                        "headers": [(k, v) for k, v in reply.headers.raw if k.lower() not in _HOP_BY_HOP]})
            async for chunk in reply.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if stall:
                    await asyncio.sleep(stall)
                    stall = 0.0
            await send({"type": "http.response.body", "body": b""})
        finally:
            await reply.aclose()

    async def _lifespan(self, receive: Any, send: Any) -> None:
        """Close the pooled connections to fake-gcs-server when the server stops."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
