"""Both upstreams against real loopback servers: bodies, errors, pooling."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections.abc import AsyncIterator, Callable

import pytest

from proxy.emulator.storage import free_port
from proxy.errors import DeadlineExceeded, Unavailable
from proxy.upstream import AiohttpUpstream, ConnectFailed, HttpxUpstream, RetryPolicy, Upstream
from tests.upstream.stub import StubServer, stream_body

pytestmark = pytest.mark.anyio


async def _chunked(parts: int, size: int) -> AsyncIterator[bytes]:
    for i in range(parts):
        await asyncio.sleep(0)
        yield bytes([i % 251]) * size


def test_both_upstreams_satisfy_the_protocol() -> None:
    assert isinstance(AiohttpUpstream(tokens=None, timeout=1, connect_timeout=1, retry=RetryPolicy()), Upstream)
    assert isinstance(HttpxUpstream(auth=None, timeout=1, connect_timeout=1, retry=RetryPolicy()), Upstream)


async def test_streaming_request_body_reaches_upstream_intact(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    expected = b"".join(bytes([i % 251]) * 4096 for i in range(64))
    reply = await upstream.send("POST", f"{stub.url}/v1/echo", headers=[("content-type", "application/json")],
                                body=_chunked(64, 4096), idempotent=False)
    assert reply.status == 200
    assert json.loads(await reply.read()) == {"length": 64 * 4096, "sha256": hashlib.sha256(expected).hexdigest()}
    (hit,) = stub.hits
    assert hit.body == expected
    # Sent as it was produced, not gathered first.
    assert hit.header("transfer-encoding") == "chunked" and hit.header("content-length") is None


async def test_streamed_reply_passes_through_unchanged(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    reply = await upstream.send("GET", f"{stub.url}/v1/stream?chunks=40&size=1000&status=203", headers=[],
                                body=None, idempotent=True)
    assert reply.status == 203
    assert reply.header("x-goog-stub") == "stream"
    received = [chunk async for chunk in reply.aiter_bytes()]
    assert b"".join(received) == stream_body(40, 1000)
    assert sum(map(len, received)) == 40_000


async def test_error_reply_is_returned_not_raised(stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    reply = await upstream.send("GET", f"{stub.url}/v1/status/404", headers=[], body=None, idempotent=True)
    assert reply.status == 404
    assert json.loads(await reply.read()) == {"error": {"code": 404, "message": "as asked", "status": "NOT_FOUND"}}
    assert len(stub.hits) == 1


async def test_compressed_reply_passes_through_undecoded(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    reply = await upstream.send("GET", f"{stub.url}/v1/gzip", headers=[], body=None, idempotent=True)
    body = await reply.read()
    assert reply.header("content-encoding") == "gzip"
    assert reply.header("content-length") == str(len(body))
    assert gzip.decompress(body) == b'{"compressed": true}'


async def test_read_body_releases_the_connection_for_reuse(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    for _ in range(3):
        reply = await upstream.send("GET", f"{stub.url}/v1/stream?chunks=5&size=100", headers=[], body=None,
                                    idempotent=True)
        async for _chunk in reply.aiter_bytes():
            pass
    # One kept-alive connection served all three: each finished body went back to the pool.
    assert len({hit.peer_port for hit in stub.hits}) == 1


async def test_closing_a_half_read_reply_drops_its_connection(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    reply = await upstream.send("GET", f"{stub.url}/v1/stream?chunks=200&size=1000", headers=[], body=None,
                                idempotent=True)
    stream = reply.aiter_bytes()
    assert await anext(stream)
    await reply.aclose()  # what the proxy does when its client disconnects
    second = await upstream.send("GET", f"{stub.url}/v1/stream?chunks=3&size=10", headers=[], body=None,
                                 idempotent=True)
    assert await second.read() == stream_body(3, 10)
    assert stub.hits[0].peer_port != stub.hits[1].peer_port
    await stream.aclose()


async def test_timeout_raises_deadline_exceeded_without_retry(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream(timeout=0.3)
    with pytest.raises(DeadlineExceeded) as caught:
        await upstream.send("GET", f"{stub.url}/v1/slow?seconds=1.5", headers=[], body=None, idempotent=True)
    assert caught.value.http_status == 504 and caught.value.status == "DEADLINE_EXCEEDED"
    assert len(stub.hits) == 1


async def test_reply_that_stalls_midway_raises_deadline_exceeded(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream(timeout=0.3)
    reply = await upstream.send("GET", f"{stub.url}/v1/stall?seconds=1.5", headers=[], body=None, idempotent=True)
    received = b""
    with pytest.raises(DeadlineExceeded):
        async for chunk in reply.aiter_bytes():
            received += chunk
    assert received == b"first"


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_refused_connection_raises_unavailable(method: str, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    with pytest.raises(Unavailable) as caught:
        await upstream.send(method, f"http://127.0.0.1:{free_port()}/v1/echo", headers=[], body=b"{}",
                            idempotent=method == "GET")
    assert isinstance(caught.value, ConnectFailed)
    assert caught.value.http_status == 503 and caught.value.status == "UNAVAILABLE"


async def test_upstream_is_bound_to_one_event_loop(stub: StubServer) -> None:
    upstream = AiohttpUpstream(tokens=None, timeout=2, connect_timeout=2, retry=RetryPolicy())
    reply = await upstream.send("GET", f"{stub.url}/v1/status/200", headers=[], body=None, idempotent=True)
    await reply.read()

    def elsewhere() -> None:
        with pytest.raises(RuntimeError, match="event loop"):
            asyncio.run(upstream.send("GET", f"{stub.url}/v1/status/200", headers=[], body=None, idempotent=True))

    await asyncio.to_thread(elsewhere)
    await upstream.aclose()
    assert len(stub.hits) == 1
