"""The request id: a caller's well-formed `x-request-id` is kept (so traces join up), otherwise a fresh one.

The `RequestIds` middleware puts it in the scope (for the accounting record and the upstream call) and echoes it
in every reply's headers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

REQUEST_ID = "x-request-id"
_RAW_NAME = REQUEST_ID.encode()
_SHAPE = re.compile(r"[A-Za-z0-9._:-]{8,40}")  # the request log keeps 40 characters
SCOPE_KEY = "vbp.request_id"


def new_request_id(incoming: Iterable[tuple[str, str]] = ()) -> str:
    """The caller's `x-request-id` when it looks like one, else a fresh random id (32 hex digits)."""
    for name, value in incoming:
        if name.lower() == REQUEST_ID and _SHAPE.fullmatch(value):
            return value
    return os.urandom(16).hex()  # as random as uuid4().hex, at a fraction of the cost


def _from_raw(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """`new_request_id` over the ASGI scope's raw headers, decoding only the one that matters."""
    for name, value in headers:
        if name.lower() == _RAW_NAME:
            return new_request_id([(REQUEST_ID, value.decode("latin-1"))])
    return os.urandom(16).hex()


def request_id_of(scope: dict[str, Any]) -> str:
    """The id `RequestIds` chose for this request."""
    return str(scope[SCOPE_KEY])


class RequestIds:
    """ASGI middleware: choose the request's id and add it to the reply's headers, on every route."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope[SCOPE_KEY] = _from_raw(scope["headers"])
        echoed = (_RAW_NAME, request_id.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _RAW_NAME]
                headers.append(echoed)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
