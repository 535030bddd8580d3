"""The same Upstream over httpx: an injectable transport (tests, ASGI apps) and GoogleAuth as an httpx.Auth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx

from proxy.errors import DeadlineExceeded
from proxy.upstream.base import Body, is_replayable, logged, without_authorization
from proxy.upstream.response import UpstreamResponse
from proxy.upstream.retry import ConnectFailed, ConnectionLost, RetryPolicy, with_retries


class _NoCookies(CookieJar):
    """A jar that keeps nothing: a shared client must never replay one caller's cookies to another."""

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class HttpxUpstream:
    """Upstream over one httpx.AsyncClient (keep-alive, no cookies, redirects not followed)."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None, auth: httpx.Auth | None,
                 timeout: float, connect_timeout: float, retry: RetryPolicy, max_connections: int = 100) -> None:
        self._timeout = timeout
        self._retry = retry
        self._client = httpx.AsyncClient(
            transport=transport,
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            cookies=_NoCookies(),
            follow_redirects=False,
            trust_env=False,
        )
        # httpx's default headers would override what the caller asked for; only the filtered headers go out.
        for name in ("accept", "accept-encoding", "user-agent"):
            del self._client.headers[name]

    def __repr__(self) -> str:
        return f"HttpxUpstream(timeout={self._timeout}, auth={self._client.auth!r})"

    async def send(self, method: str, url: str, *, headers: list[tuple[str, str]],
                   body: Body, idempotent: bool) -> UpstreamResponse:
        """Send one call (retried as the policy allows); any HTTP status is a reply, not an error."""
        replayable = is_replayable(body)
        headers = without_authorization(headers)  # only the proxy's own credentials (the auth) go upstream

        async def attempts() -> UpstreamResponse:
            return await with_retries(lambda: self._once(method, url, headers, body), policy=self._retry,
                                      retry_statuses=idempotent, retry_lost=idempotent, replayable=replayable)

        return await logged(method, url, headers, attempts)

    async def aclose(self) -> None:
        """Close the client and its pooled connections."""
        await self._client.aclose()

    async def _once(self, method: str, url: str, headers: list[tuple[str, str]], body: Body) -> UpstreamResponse:
        content: Any = bytes(body) if isinstance(body, bytearray | memoryview) else body
        request = self._client.build_request(method, url, headers=headers, content=content)
        try:
            # The whole exchange up to the reply's headers must fit in `timeout`; body reads have the read timeout.
            async with asyncio.timeout(self._timeout):
                reply = await self._client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ConnectFailed("cannot connect to Vertex") from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise DeadlineExceeded(f"Vertex did not answer within {self._timeout:g} s") from exc
        except httpx.TransportError as exc:
            raise ConnectionLost("the connection to Vertex broke before its reply") from exc
        return UpstreamResponse(reply.status_code, reply.headers.multi_items(), _chunks(reply), _releaser(reply))


async def _chunks(reply: httpx.Response) -> AsyncIterator[bytes]:
    try:
        # aiter_raw, not aiter_bytes: the body passes through undecoded, so Content-Encoding/-Length stay true.
        async for chunk in reply.aiter_raw():
            yield chunk
    except httpx.TimeoutException as exc:
        raise DeadlineExceeded("Vertex stopped sending its reply") from exc
    except httpx.TransportError as exc:
        raise ConnectionLost("the connection to Vertex broke during its reply") from exc


def _releaser(reply: httpx.Response) -> Callable[[bool], Awaitable[None]]:
    async def release(complete: bool) -> None:
        # httpx returns a fully read connection to the pool and drops a half-read one on its own.
        await reply.aclose()

    return release
