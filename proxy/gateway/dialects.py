"""Error dialects: how an `ApiError` is written for the door a request came in by.

Google's envelope `{"error": {code, message, status}}` for the native door, the admin and report routes, health
and metrics; OpenAI's `{"error": {message, type, param, code}}` for the OpenAI door (`/v1/files*`, `/v1/batches*`,
and its Azure shapes `/openai/*`), so that each SDK raises its own right exception from the status.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from proxy.errors import ApiError

# A renderer: the error -> (content type, body).
Renderer = Callable[[ApiError], tuple[str, bytes]]


def google(error: ApiError) -> tuple[str, bytes]:
    """Google's envelope, which the Google SDKs map to their own exception classes."""
    return "application/json; charset=UTF-8", error.body()


# OpenAI's `type` by HTTP status (as its API answers them), and the `code` where OpenAI always sends one.
_OPENAI_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error"}
_OPENAI_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def openai(error: ApiError) -> tuple[str, bytes]:
    """OpenAI's envelope: every key present (`param` and `code` null when there is none)."""
    status = error.http_status
    kind = "server_error" if status >= 500 else _OPENAI_TYPES.get(status, "invalid_request_error")
    body = {"error": {"message": error.message, "type": kind, "param": error.param,
                      "code": error.code or _OPENAI_CODES.get(status)}}
    return "application/json", json.dumps(body).encode()


# (raw path prefix, renderer), first match wins; anything else speaks Google's dialect.
_BY_PREFIX: tuple[tuple[bytes, Renderer], ...] = ((b"/v1/files", openai), (b"/v1/batches", openai),
                                                  (b"/openai/", openai))  # the Azure-shaped routes


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
