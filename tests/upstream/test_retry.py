"""Which calls are tried again, how often and after how long."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from proxy.errors import Unavailable
from proxy.upstream import ConnectionLost, RetryPolicy, Upstream, retry_after
from tests.upstream.stub import HangUpServer, StubServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def hang_up() -> Iterator[HangUpServer]:
    server = HangUpServer()
    yield server
    server.close()


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    assert retry_after([("Retry-After", "7")], now=now) == 7.0
    assert retry_after([("retry-after", email.utils.formatdate(now + 12, usegmt=True))], now=now) == 12.0
    assert retry_after([("retry-after", email.utils.formatdate(now - 30, usegmt=True))], now=now) == 0.0
    assert retry_after([("retry-after", "soon")], now=now) is None
    assert retry_after([("retry-after", "\xb2")], now=now) is None  # "²": a digit to str.isdigit(), not to float()
    assert retry_after([("content-type", "text/plain")], now=now) is None


def test_backoff_doubles_within_jittered_bounds() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=0.5)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        delays = [policy.backoff(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered


@pytest.mark.parametrize("status", [503, 429])
async def test_get_is_retried_until_success(
        status: int, stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    reply = await upstream.send("GET", f"{stub.url}/v1/flaky/a?fail=2&status={status}", headers=[], body=None,
                                idempotent=True)
    assert reply.status == 200
    assert await reply.read() == b'{"ok": 3}'
    assert stub.counts["/v1/flaky/a"] == 3
    assert reply.attempts == 3


async def test_attempts_are_bounded_and_the_last_reply_returned(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream(retry=RetryPolicy(attempts=3, max_seconds=5, base_delay=0.01, max_delay=0.02))
    reply = await upstream.send("GET", f"{stub.url}/v1/flaky/b?fail=10", headers=[], body=None, idempotent=True)
    assert reply.status == 503
    assert await reply.read() == b'{"error": {"code": 503, "message": "try again (3)", "status": "X"}}'
    assert stub.counts["/v1/flaky/b"] == 3


async def test_retry_after_is_honoured(stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream(retry=RetryPolicy(attempts=3, max_seconds=5, base_delay=0.01, max_delay=0.02))
    reply = await upstream.send("GET", f"{stub.url}/v1/flaky/c?fail=1&status=429&retry_after=1", headers=[],
                                body=None, idempotent=True)
    assert reply.status == 200
    first, second = stub.hits
    assert 1.0 <= second.at - first.at < 2.5  # waited for Retry-After, not for anything much longer


async def test_retry_after_beyond_the_time_budget_returns_at_once(
        stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream(retry=RetryPolicy(attempts=4, max_seconds=2, base_delay=0.01, max_delay=0.02))
    reply = await upstream.send("GET", f"{stub.url}/v1/flaky/d?fail=1&retry_after=30", headers=[], body=None,
                                idempotent=True)
    assert reply.status == 503
    assert reply.header("retry-after") == "30"
    assert stub.counts["/v1/flaky/d"] == 1


async def test_total_backoff_is_bounded_in_time(stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    # Each pause is 0.3-0.6 s; a 1 s budget allows two pauses, three when all three fall near 0.3 s (under 1% of
    # runs): four hits at most of the ten allowed, and never past the budget.
    upstream = make_upstream(retry=RetryPolicy(attempts=10, max_seconds=1.0, base_delay=0.6, max_delay=0.6))
    reply = await upstream.send("GET", f"{stub.url}/v1/flaky/e?fail=20", headers=[], body=None, idempotent=True)
    assert reply.status == 503
    hits = stub.counts["/v1/flaky/e"]
    assert 2 <= hits <= 4
    assert stub.hits[-1].at - stub.hits[0].at <= 1.0 + 0.2


async def test_post_with_503_is_not_retried(stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    reply = await upstream.send("POST", f"{stub.url}/v1/flaky/f?fail=1", headers=[], body=b"{}", idempotent=False)
    assert reply.status == 503
    assert stub.counts["/v1/flaky/f"] == 1


async def test_streamed_body_is_never_replayed(stub: StubServer, make_upstream: Callable[..., Upstream]) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"{}"

    upstream = make_upstream()
    reply = await upstream.send("GET", f"{stub.url}/v1/flaky/g?fail=1", headers=[], body=body(), idempotent=True)
    assert reply.status == 503
    assert stub.counts["/v1/flaky/g"] == 1


async def test_post_is_not_resent_once_its_bytes_may_have_arrived(
        hang_up: HangUpServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream()
    with pytest.raises(ConnectionLost) as caught:
        await upstream.send("POST", f"{hang_up.url}/v1/echo", headers=[], body=b'{"displayName": "once"}',
                            idempotent=False)
    assert isinstance(caught.value, Unavailable) and caught.value.http_status == 503
    await asyncio.sleep(0.05)
    assert hang_up.connections == 1


async def test_get_is_resent_after_a_lost_connection(
        hang_up: HangUpServer, make_upstream: Callable[..., Upstream]) -> None:
    upstream = make_upstream(retry=RetryPolicy(attempts=3, max_seconds=5, base_delay=0.01, max_delay=0.02))
    with pytest.raises(ConnectionLost):
        await upstream.send("GET", f"{hang_up.url}/v1/echo", headers=[], body=None, idempotent=True)
    await asyncio.sleep(0.05)
    assert hang_up.connections == 3
