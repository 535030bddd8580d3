"""One error handler for every route: an `ApiError` (or a foreign exception translated into one) is answered in
the route's dialect; anything else is logged once, with its traceback, and answered `500 INTERNAL`.

The error's status name goes on the request's accounting record. When half a reply is already out, no error
reply can follow: an `ApiError` ends the request there, an unexpected error is re-raised for the server to
close the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from proxy.errors import ApiError, Internal
from proxy.gateway.dialects import error_reply
from proxy.gateway.request_id import SCOPE_KEY as REQUEST_ID_KEY
from proxy.ledger import db_errors
from proxy.ledger.request_log import record_of

log = logging.getLogger("proxy.gateway")

# One table per foreign library whose exceptions reach a route unhandled. (httpx, aiohttp and google-auth are
# translated where they enter, in `proxy.upstream`: they never get this far.)
TRANSLATORS: tuple[Callable[[BaseException], ApiError | None], ...] = (db_errors.translate,)


def translated(exc: BaseException) -> ApiError | None:
    """The `ApiError` a foreign exception stands for, or None for an unexpected one."""
    for translate in TRANSLATORS:
        error = translate(exc)
        if error is not None:
            return error
    return None


class ErrorReplies:
    """ASGI middleware; the innermost of the gateway's stack, just outside the routes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:
            error = exc if isinstance(exc, ApiError) else translated(exc)
            if error is None:
                log.exception("%s %s (request %s) failed", scope.get("method"), scope.get("path"),
                              scope.get(REQUEST_ID_KEY))
                if started:
                    raise  # half a reply is out: only the server can end it, by closing the connection
                error = Internal("The proxy failed to handle this request.")
            elif not isinstance(exc, ApiError):
                log.warning("%s %s (request %s): %s", scope.get("method"), scope.get("path"),
                            scope.get(REQUEST_ID_KEY), exc.__class__.__name__)
            record_of(scope).error = error.status
            if not started:
                start, body = error_reply(scope, error)
                await send(start)
                await send(body)
