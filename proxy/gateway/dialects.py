"""Error dialects: how an `ApiError` is written for the door a request came in by.

Google's envelope `{"error": {code, message, status}}` is the only dialect today (the native door, the admin
and report routes, health, metrics). The OpenAI door adds its renderer and its path prefix to `_BY_PREFIX`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy.errors import ApiError

# A renderer: the error -> (content type, body).
Renderer = Callable[[ApiError], tuple[str, bytes]]


def google(error: ApiError) -> tuple[str, bytes]:
    """Google's envelope, which the Google SDKs map to their own exception classes."""
    return "application/json; charset=UTF-8", error.body()


# (raw path prefix, renderer), first match wins; anything else speaks Google's dialect.
_BY_PREFIX: tuple[tuple[bytes, Renderer], ...] = ()


def dialect_for(scope: dict[str, Any]) -> Renderer:
    """The renderer for this request's route."""
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    for prefix, renderer in _BY_PREFIX:
        if path.startswith(prefix):
            return renderer
    return google


def error_reply(scope: dict[str, Any], error: ApiError) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two ASGI messages that answer `error` in the request's dialect."""
    content_type, body = dialect_for(scope)(error)
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
               *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.headers.items())]
    return ({"type": "http.response.start", "status": error.http_status, "headers": headers},
            {"type": "http.response.body", "body": body})
