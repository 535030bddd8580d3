"""The upstream's connection pool, counted in this process's own /proc: bounded by `max_connections`, and back
to one connection under a steady one-at-a-time load once the connections a burst opened have been idle for the
keep-alive time (aiohttp's own order, oldest first, kept all of them: the soak's fds grew in steps)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from proxy.upstream import AiohttpUpstream
from tests.support.open_fds import connections_to
from tests.upstream.conftest import FAST_RETRY
from tests.upstream.stub import StubServer

pytestmark = pytest.mark.anyio


async def _get(upstream: AiohttpUpstream, url: str) -> int:
    reply = await upstream.send("GET", url, headers=[], body=None, idempotent=True)
    await reply.read()
    return reply.status


@pytest.fixture
async def pooled(request: pytest.FixtureRequest) -> AsyncIterator[AiohttpUpstream]:
    max_connections, keepalive = request.param
    upstream = AiohttpUpstream(tokens=None, timeout=5, connect_timeout=2, retry=FAST_RETRY,
                               max_connections=max_connections, keepalive_seconds=keepalive)
    yield upstream
    await upstream.aclose()


@pytest.mark.parametrize("pooled", [(8, 15.0)], indirect=True)
async def test_thirty_concurrent_calls_share_at_most_eight_connections(
        stub: StubServer, pooled: AiohttpUpstream) -> None:
    statuses = await asyncio.gather(*(_get(pooled, f"{stub.url}/v1/slow?seconds=0.2") for _ in range(30)))
    assert statuses == [200] * 30
    assert len({hit.peer_port for hit in stub.hits}) == 8
    assert connections_to(stub.port) == 8  # all kept alive for reuse, none more


@pytest.mark.parametrize("pooled", [(100, 1.0)], indirect=True)
async def test_connections_a_burst_opened_close_under_a_steady_load(stub: StubServer, pooled: AiohttpUpstream) -> None:
    statuses = await asyncio.gather(*(_get(pooled, f"{stub.url}/v1/slow?seconds=0.2") for _ in range(20)))
    assert statuses == [200] * 20
    assert connections_to(stub.port) == 20
    stub.reset()
    # One call every 20 ms for 3 s: taken in turn, oldest first, each of the 20 would be reused every ~0.5 s and
    # never idle for the 1 s keep-alive.
    deadline = time.monotonic() + 3.0
    calls = 0
    while time.monotonic() < deadline:
        assert await _get(pooled, f"{stub.url}/v1/status/200") == 200
        calls += 1
        await asyncio.sleep(0.02)
    assert len(stub.hits) == calls
    assert len({hit.peer_port for hit in stub.hits}) == 1  # the newest connection served every call
    assert connections_to(stub.port) == 1
