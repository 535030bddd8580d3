"""The forwarding hot path: one long-lived aiohttp session (several times httpx's throughput, see README)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import yarl

from proxy.errors import DeadlineExceeded
from proxy.upstream.base import Body, is_replayable, logged, without_authorization
from proxy.upstream.google_credentials import TokenSource
from proxy.upstream.pool import NewestFirstConnector
from proxy.upstream.response import UpstreamResponse
from proxy.upstream.retry import ConnectFailed, ConnectionLost, RetryPolicy, with_retries

# Headers aiohttp would add on its own; only the caller's (filtered) ones should reach Vertex.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class AiohttpUpstream:
    """Upstream over one aiohttp.ClientSession: keep-alive, no cookie jar, bodies passed through undecoded."""

    def __init__(self, *, tokens: TokenSource | None, timeout: float, connect_timeout: float,
                 retry: RetryPolicy, max_connections: int = 100, keepalive_seconds: float = 15.0) -> None:
        self._tokens = tokens
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._retry = retry
        self._max_connections = max_connections
        self._keepalive = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return (f"AiohttpUpstream(timeout={self._timeout}, connect_timeout={self._connect_timeout}, "
                f"tokens={self._tokens!r})")

    async def send(self, method: str, url: str, *, headers: list[tuple[str, str]],
                   body: Body, idempotent: bool) -> UpstreamResponse:
        """Send one call (retried as the policy allows); any HTTP status is a reply, not an error."""
        replayable = is_replayable(body)
        headers = without_authorization(headers)

        async def attempts() -> UpstreamResponse:
            return await with_retries(lambda: self._once(method, url, headers, body, replayable), policy=self._retry,
                                      retry_statuses=idempotent, retry_lost=idempotent, replayable=replayable)

        return await logged(method, url, headers, attempts)

    async def aclose(self) -> None:
        """Close the session and its pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _session_here(self) -> aiohttp.ClientSession:
        # Created lazily: an aiohttp session belongs to the event loop it was created in.
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed:
            # At most `max_connections` at once (more calls wait for one); an idle one closes after `keepalive`.
            connector = NewestFirstConnector(limit=self._max_connections, keepalive_timeout=self._keepalive,
                                             ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # a shared client must never replay one caller's cookies
                auto_decompress=False,  # bytes pass through as sent, so Content-Encoding/-Length stay true
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout, sock_read=self._timeout),
                trust_env=False,
            )
            # aiohttp silently resends GET/PUT/DELETE once when a connection breaks; our RetryPolicy already
            # decides that (by the caller's `idempotent`), and two layers would double the attempts. aiohttp's
            # own test client turns it off the same way; the attribute is absent in older versions.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("AiohttpUpstream is bound to the event loop that first used it")
        return self._session

    async def _once(self, method: str, url: str, headers: list[tuple[str, str]], body: Body,
                    replayable: bool) -> UpstreamResponse:
        token = await self._tokens.token() if self._tokens is not None else None
        reply = await self._request(method, url, headers, body, token)
        if reply.status == 401 and token is not None and replayable and self._tokens is not None:
            # Google refused our token (revoked or rotated early): refresh once and resend.
            await _drain(reply)
            self._tokens.invalidate(token)
            reply = await self._request(method, url, headers, body, await self._tokens.token())
        return UpstreamResponse(reply.status, list(reply.headers.items()), _chunks(reply), _releaser(reply))

    async def _request(self, method: str, url: str, headers: list[tuple[str, str]], body: Body,
                       token: str | None) -> aiohttp.ClientResponse:
        session = self._session_here()
        if token is not None:
            headers = [*headers, ("authorization", f"Bearer {token}")]
        try:
            # The whole exchange up to the reply's headers must fit in `timeout`; body reads have sock_read.
            async with asyncio.timeout(self._timeout):
                return await session.request(method, yarl.URL(url, encoded=True), headers=headers, data=body,
                                             allow_redirects=False)
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            raise ConnectFailed("cannot connect to Vertex") from exc
        except TimeoutError as exc:
            raise DeadlineExceeded(f"Vertex did not answer within {self._timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            raise ConnectionLost("the connection to Vertex broke before its reply") from exc


async def _chunks(reply: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in reply.content.iter_any():
            yield chunk
    except TimeoutError as exc:
        raise DeadlineExceeded("Vertex stopped sending its reply") from exc
    except aiohttp.ClientError as exc:
        raise ConnectionLost("the connection to Vertex broke during its reply") from exc


def _releaser(reply: aiohttp.ClientResponse) -> Callable[[bool], Awaitable[None]]:
    async def release(complete: bool) -> None:
        if complete:
            reply.release()  # body fully read: the connection goes back to the pool
        else:
            reply.close()  # unread bytes would corrupt the next exchange on this connection

    return release


async def _drain(reply: aiohttp.ClientResponse) -> None:
    """Read a small error reply to the end so its connection can be reused."""
    try:
        await reply.read()
    except (aiohttp.ClientError, TimeoutError):
        reply.close()
    else:
        reply.release()
