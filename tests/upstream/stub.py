"""Loopback stand-ins for what the upstream layer talks to: a Vertex-like HTTP stub and Google's token endpoint.

Both run in an aiohttp.web app on their own event loop in a background thread, so a slow stub never
blocks the loop of the test that calls it, and a blocked test loop would show up as a stalled test.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from proxy.emulator.storage import free_port


@dataclass
class Hit:
    """One request the stub received."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    at: float  # time.monotonic() when the handler started
    peer_port: int

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


def stream_body(chunks: int, size: int) -> bytes:
    """The bytes `/v1/stream` sends, computed independently of the transfer."""
    return b"".join(hashlib.sha256(str(i).encode()).hexdigest().encode()[:1] * size for i in range(chunks))


@dataclass
class StubServer:
    """The upstream stub and token endpoint, on 127.0.0.1; `reset()` between tests."""

    port: int = field(default_factory=free_port)
    hits: list[Hit] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    token_delay: float = 0.0
    expires_in: int = 3600
    issued: list[str] = field(default_factory=list)
    token_claims: list[dict[str, Any]] = field(default_factory=list)
    accepted: str | None = None  # the token /v1/protected accepts: the last one issued
    reject_all: bool = False  # /v1/protected refuses every token

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.hits.clear()
        self.counts.clear()
        self.token_delay, self.expires_in = 0.0, 3600
        self.issued.clear()
        self.token_claims.clear()
        self.accepted = None
        self.reject_all = False

    def hits_on(self, path: str) -> list[Hit]:
        """The requests to `path` (query ignored), in arrival order."""
        return [hit for hit in self.hits if hit.path.split("?")[0] == path]

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="upstream-stub", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("stub server did not start")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        self._stopping = asyncio.Event()

        async def serve() -> None:
            runner = web.AppRunner(self._app(), shutdown_timeout=0.5, handler_cancellation=True)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            ready.set()
            await self._stopping.wait()
            await runner.cleanup()

        self._loop.run_until_complete(serve())
        self._loop.close()

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_route("*", "/v1/echo", self._echo)
        app.router.add_route("*", "/v1/flaky/{key}", self._flaky)
        app.router.add_get("/v1/slow", self._slow)
        app.router.add_get("/v1/stream", self._stream)
        app.router.add_get("/v1/stall", self._stall)
        app.router.add_get("/v1/gzip", self._gzip)
        app.router.add_get("/v1/cookie", self._cookie)
        app.router.add_route("*", "/v1/status/{code}", self._status)
        app.router.add_route("*", "/v1/protected", self._protected)
        app.router.add_post("/token", self._token)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        at = time.monotonic()
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.hits.append(Hit(request.method, request.path_qs,
                             [(k.decode(), v.decode()) for k, v in request.raw_headers], body, at,
                             peer[1] if peer else 0))
        self.counts[request.path] += 1
        return await handler(request)

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    async def _flaky(self, request: web.Request) -> web.Response:
        """The first `fail` hits answer `status` (with Retry-After when asked), then 200."""
        n = self.counts[request.path]
        if n <= int(request.query.get("fail", "0")):
            headers = {"retry-after": request.query["retry_after"]} if "retry_after" in request.query else {}
            status = int(request.query.get("status", "503"))
            return web.json_response({"error": {"code": status, "message": f"try again ({n})", "status": "X"}},
                                     status=status, headers=headers)
        return web.json_response({"ok": n})

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["seconds"]))
        return web.json_response({"slow": True})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        chunks, size = int(request.query["chunks"]), int(request.query["size"])
        reply = web.StreamResponse(status=int(request.query.get("status", "200")))
        reply.content_type = "application/octet-stream"
        reply.headers["x-goog-stub"] = "stream"
        await reply.prepare(request)
        body = stream_body(chunks, size)
        for i in range(chunks):
            await reply.write(body[i * size:(i + 1) * size])
            await asyncio.sleep(0.001)
        await reply.write_eof()
        return reply

    async def _stall(self, request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse()
        await reply.prepare(request)
        await reply.write(b"first")
        await asyncio.sleep(float(request.query["seconds"]))
        await reply.write_eof()
        return reply

    async def _gzip(self, request: web.Request) -> web.Response:
        packed = gzip.compress(b'{"compressed": true}')
        return web.Response(body=packed, headers={"content-encoding": "gzip", "content-type": "application/json"})

    async def _cookie(self, request: web.Request) -> web.Response:
        reply = web.json_response({"cookie": request.headers.get("cookie")})
        reply.headers["alt-svc"] = 'h3=":443"'
        reply.set_cookie("session", "upstream-secret")
        return reply

    async def _status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"error": {"code": code, "message": "as asked", "status": "NOT_FOUND"}}, status=code)

    async def _protected(self, request: web.Request) -> web.Response:
        good = self.accepted is not None and request.headers.get("authorization") == f"Bearer {self.accepted}"
        if self.reject_all or not good:
            return web.json_response({"error": {"code": 401, "message": "bad token", "status": "UNAUTHENTICATED"}},
                                     status=401, headers={"www-authenticate": "Bearer"})
        return web.json_response({"ok": True})

    async def _token(self, request: web.Request) -> web.Response:
        """Google's OAuth2 token endpoint, minus the checks: issue `tok-N` and note the JWT's claims."""
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        payload = str(form["assertion"]).split(".")[1]
        self.token_claims.append(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
        await asyncio.sleep(self.token_delay)
        token = f"tok-{len(self.issued) + 1}-{hashlib.sha256(str(time.time()).encode()).hexdigest()[:16]}"
        self.issued.append(token)
        self.accepted = token
        return web.json_response({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})


class HangUpServer:
    """Accepts a connection, reads the request head, and closes without answering; counts connections."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)  # so the loop notices close() promptly
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hang-up", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        part = conn.recv(65536)
                        if not part:
                            break
                        data += part
                except OSError:
                    pass

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._sock.close()
