"""The site's last line: an exception no route turned into a reply is logged once, with its traceback, and
answered `500 INTERNAL` in Google's envelope instead of Starlette's plain-text page.

(The passthrough and the admin API catch their own, log them the same way and answer the same envelope.)
"""

from __future__ import annotations

import logging
from typing import Any

from proxy.errors import Internal

log = logging.getLogger("proxy.site")


class UnexpectedErrors:
    """ASGI middleware; listed in `create_app`'s site, inside Starlette's own error middleware."""

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
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if started:
                raise  # half a reply is out: only the server can end it, by closing the connection
            error = Internal("The proxy failed to handle this request.")
            body = error.body()
            await send({"type": "http.response.start", "status": error.http_status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
