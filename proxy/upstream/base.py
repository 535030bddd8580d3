"""What the proxy needs from an HTTP client to talk to Vertex, whichever library is underneath."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from proxy.errors import ApiError
from proxy.upstream.headers import REQUEST_ID
from proxy.upstream.response import UpstreamResponse

log = logging.getLogger("proxy.upstream")

Body = bytes | AsyncIterable[bytes] | None


@runtime_checkable
class Upstream(Protocol):
    """Sends one call to Vertex: a reply of any status comes back; timeouts and connect failures raise ApiError."""

    async def send(self, method: str, url: str, *, headers: list[tuple[str, str]],
                   body: Body, idempotent: bool) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


def is_replayable(body: Body) -> bool:
    """A body held in memory can be sent again; a stream is gone once read."""
    return body is None or isinstance(body, bytes | bytearray | memoryview)


def without_authorization(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers minus any Authorization: the upstream sets the proxy's own."""
    return [(name, value) for name, value in headers if name.lower() != "authorization"]


async def logged(method: str, url: str, headers: list[tuple[str, str]],
                 call: Callable[[], Awaitable[UpstreamResponse]]) -> UpstreamResponse:
    """Run one exchange (retries included) and log its outcome with the request id; never headers or bodies."""
    request_id = next((value for name, value in headers if name.lower() == REQUEST_ID), "")
    started = time.monotonic()
    try:
        response = await call()
    except ApiError as exc:
        log.warning("upstream %s %s failed after %.1f ms: %s %s (request_id=%s)", method, urlsplit(url).path,
                    (time.monotonic() - started) * 1000, exc.status, exc.message, request_id)
        raise
    response.request_id = request_id
    # The proxy's access log already has every request; only retried exchanges are news at INFO.
    level = logging.INFO if response.attempts > 1 else logging.DEBUG
    if log.isEnabledFor(level):  # the URL is split only for a line that is written: this runs on every call
        log.log(level, "upstream %s %s -> %d in %.1f ms, %d attempt(s) (request_id=%s)", method, urlsplit(url).path,
                response.status, (time.monotonic() - started) * 1000, response.attempts, request_id)
    return response
