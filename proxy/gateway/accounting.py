"""Request accounting: exactly one request-log row and one metrics observation per request, on every route.

The middleware puts a `RequestRecord` in the scope before the route runs (the record lives in
`proxy.ledger.request_log`, where the lower layers can reach it); the route enriches it (its name, the key, the
team, the job, the upstream's status) and the error middleware notes the error. When the reply is
out, the record becomes the request log's row and the `vbp_requests_total` / `vbp_request_seconds` observation.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from proxy.gateway.request_id import request_id_of
from proxy.ledger.request_log import SCOPE_KEY, RequestRecord, record_of

if TYPE_CHECKING:
    from proxy.services import Services


class RequestAccounting:
    """ASGI middleware: log and count every request once, whatever route answered it and however."""

    def __init__(self, app: Any, *, services: Callable[[], Services | None]) -> None:
        self.app = app
        self._services = services

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        record = scope[SCOPE_KEY] = RequestRecord(request_id=request_id_of(scope), method=scope["method"])
        status = 500  # what the client is left with when no reply starts (the server closes the connection)

        async def send_counted(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            seconds = time.perf_counter() - started
            services = self._services()
            if services is not None:
                services.metrics.observe_request(record.route, status, seconds)
                services.request_log.add(record.row(status=status, seconds=seconds, at=services.now()))


def accounted_as(route: str, endpoint: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """A Starlette endpoint that names its route on the request's record (`vbp_requests_total{route=...}`)."""
    async def named(request: Any) -> Any:
        record_of(request.scope).route = route
        return await endpoint(request)
    return named
