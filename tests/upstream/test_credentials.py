"""TokenSource and GoogleAuth with real google-auth service-account flows against a loopback token endpoint."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from proxy.errors import Internal, Unavailable
from proxy.upstream import Upstream
from proxy.upstream.google_credentials import CLOUD_PLATFORM, GoogleAuth, TokenSource
from proxy.upstream.headers import request_headers
from tests.upstream.stub import StubServer

pytestmark = pytest.mark.anyio


async def test_first_call_fetches_a_token_with_the_cloud_platform_scope(
        stub: StubServer, make_tokens: Callable[..., TokenSource]) -> None:
    source = make_tokens()
    token = await source.token()
    assert token == stub.issued[0]
    assert source.refresh_count == 1
    (claims,) = stub.token_claims
    assert claims["scope"] == CLOUD_PLATFORM
    assert claims["iss"] == "vbp-proxy@stub-project.iam.gserviceaccount.com"
    # Cached: no second trip to the token endpoint.
    assert await source.token() == token
    assert len(stub.issued) == 1


async def test_from_environment_reads_google_application_credentials(
        stub: StubServer, service_account_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account_file))
    source = TokenSource.from_environment()
    try:
        assert await source.token() == stub.issued[0]
        assert stub.token_claims[0]["scope"] == CLOUD_PLATFORM
    finally:
        source.close()


async def test_concurrent_callers_share_one_refresh(stub: StubServer, make_tokens: Callable[..., TokenSource]) -> None:
    stub.token_delay = 0.2  # every caller arrives while the one refresh is in flight
    source = make_tokens()
    tokens = await asyncio.gather(*(source.token() for _ in range(100)))
    assert set(tokens) == {stub.issued[0]}
    assert source.refresh_count == 1
    assert len(stub.issued) == 1


async def test_expired_token_is_refreshed(stub: StubServer, make_tokens: Callable[..., TokenSource]) -> None:
    stub.expires_in = 0
    source = make_tokens(margin=0)
    first = await source.token()
    second = await source.token()
    assert (first, second) == tuple(stub.issued)
    assert source.refresh_count == 2


async def test_token_is_refreshed_before_it_expires(
        stub: StubServer, make_tokens: Callable[..., TokenSource]) -> None:
    # A 2 s token with a 300 s margin is refreshed at half its life: 1 s in, while still valid.
    stub.expires_in = 2
    source = make_tokens(margin=300)
    first = await source.token()
    await asyncio.sleep(0.5)
    assert await source.token() == first
    await asyncio.sleep(0.7)
    issued_at = time.monotonic()
    second = await source.token()
    assert second != first and second == stub.issued[1]
    assert source.refresh_count == 2
    assert time.monotonic() - issued_at < 1.0  # the refresh happened well before the old token's end


async def test_refresh_runs_off_the_event_loop(stub: StubServer, make_tokens: Callable[..., TokenSource]) -> None:
    stub.token_delay = 0.6
    source = make_tokens()
    ticks: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(heartbeat())
    await source.token()
    done.set()
    await beat
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert len(ticks) > 20  # the loop kept running through the 0.6 s refresh
    assert max(gaps) < 0.2


async def test_invalidate_forces_one_refresh(stub: StubServer, make_tokens: Callable[..., TokenSource]) -> None:
    source = make_tokens()
    first = await source.token()
    source.invalidate("some-older-token")  # not the current one: nothing to do
    assert await source.token() == first
    source.invalidate(first)
    source.invalidate(first)
    second, third = await asyncio.gather(source.token(), source.token())
    assert second == third == stub.issued[1]
    assert source.refresh_count == 2


async def test_token_endpoint_down_is_unavailable(service_account_info: dict[str, str], stub: StubServer) -> None:
    from google.oauth2 import service_account

    from proxy.emulator.storage import free_port

    info = {**service_account_info, "token_uri": f"http://127.0.0.1:{free_port()}/token"}
    source = TokenSource(service_account.Credentials.from_service_account_info(info, scopes=[CLOUD_PLATFORM]))
    try:
        with pytest.raises(Unavailable):
            await source.token()
    finally:
        source.close()


async def test_refused_credentials_are_internal(service_account_info: dict[str, str], stub: StubServer) -> None:
    from google.oauth2 import service_account

    info = {**service_account_info, "token_uri": f"{stub.url}/v1/status/400"}
    source = TokenSource(service_account.Credentials.from_service_account_info(info, scopes=[CLOUD_PLATFORM]))
    try:
        with pytest.raises(Internal):
            await source.token()
    finally:
        source.close()


async def test_upstream_on_401_refreshes_once_and_resends(
        stub: StubServer, make_tokens: Callable[..., TokenSource], make_upstream: Callable[..., Upstream]) -> None:
    source = make_tokens()
    upstream = make_upstream(tokens=source)
    first = await upstream.send("GET", f"{stub.url}/v1/protected", headers=[], body=None, idempotent=True)
    assert first.status == 200 and await first.read() == b'{"ok": true}'
    stub.accepted = "rotated-away"  # Google stops accepting the cached token
    second = await upstream.send("POST", f"{stub.url}/v1/protected", headers=[], body=b"{}", idempotent=False)
    assert second.status == 200 and await second.read() == b'{"ok": true}'
    assert source.refresh_count == 2
    assert [hit.header("authorization") for hit in stub.hits_on("/v1/protected")] == [
        f"Bearer {stub.issued[0]}", f"Bearer {stub.issued[0]}", f"Bearer {stub.issued[1]}"]


async def test_upstream_returns_a_second_401_without_looping(
        stub: StubServer, make_tokens: Callable[..., TokenSource], make_upstream: Callable[..., Upstream]) -> None:
    source = make_tokens()
    upstream = make_upstream(tokens=source)
    await source.token()
    stub.reject_all = True
    reply = await upstream.send("GET", f"{stub.url}/v1/protected", headers=[], body=None, idempotent=True)
    assert reply.status == 401
    assert b"bad token" in await reply.read()
    assert source.refresh_count == 2
    assert len(stub.hits_on("/v1/protected")) == 2


async def test_google_auth_with_a_plain_httpx_client(stub: StubServer, make_tokens: Callable[..., TokenSource]) -> None:
    auth = GoogleAuth(make_tokens())
    async with httpx.AsyncClient(auth=auth) as client:
        reply = await client.get(f"{stub.url}/v1/protected")
        assert reply.status_code == 200
        stub.accepted = "rotated-away"
        reply = await client.post(f"{stub.url}/v1/protected", content=b"{}")
        assert reply.status_code == 200
    assert auth.source.refresh_count == 2


def test_google_auth_with_a_sync_httpx_client(stub: StubServer, make_tokens: Callable[..., TokenSource]) -> None:
    auth = GoogleAuth(make_tokens())
    with httpx.Client(auth=auth) as client:
        assert client.get(f"{stub.url}/v1/protected").status_code == 200
        stub.accepted = "rotated-away"
        assert client.get(f"{stub.url}/v1/protected").status_code == 200
    assert auth.source.refresh_count == 2


async def test_tokens_never_reach_reprs_or_logs(
        stub: StubServer, make_tokens: Callable[..., TokenSource], make_upstream: Callable[..., Upstream],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    source = make_tokens()
    upstream = make_upstream(tokens=source)
    headers = request_headers([("Authorization", "Bearer caller-secret-key")], request_id="req-logged-0001")
    reply = await upstream.send("GET", f"{stub.url}/v1/protected", headers=headers, body=None, idempotent=True)
    await reply.read()
    stub.accepted = "rotated-away"
    reply = await upstream.send("GET", f"{stub.url}/v1/protected", headers=headers, body=None, idempotent=True)
    await reply.read()
    assert len(stub.issued) == 2
    texts = [repr(source), repr(GoogleAuth(source)), repr(upstream), repr(reply)]
    texts += [record.getMessage() for record in caplog.records]
    for token in stub.issued:
        assert not any(token in text for text in texts)
    assert not any("caller-secret-key" in text for text in texts)
    # The request id is what ties the proxy's log to the upstream call.
    assert any("req-logged-0001" in record.getMessage() and record.name == "proxy.upstream"
               for record in caplog.records)
    assert any(record.name == "proxy.upstream.google_credentials" for record in caplog.records)


async def test_streamed_body_is_not_resent_after_401(
        stub: StubServer, make_tokens: Callable[..., TokenSource], make_upstream: Callable[..., Upstream]) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"displayName": "streamed"}'

    source = make_tokens()
    upstream = make_upstream(tokens=source)
    await source.token()
    stub.reject_all = True
    reply = await upstream.send("POST", f"{stub.url}/v1/protected", headers=[], body=body(), idempotent=False)
    assert reply.status == 401
    await reply.aclose()
    assert len(stub.hits_on("/v1/protected")) == 1
    assert source.refresh_count == 1
