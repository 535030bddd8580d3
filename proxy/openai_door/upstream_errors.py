"""Vertex's error replies, translated for the OpenAI door: never passed on raw, each given the status the `openai`
SDK maps to the right exception.

    Vertex             OpenAI door
    400                400 invalid_request_error
    404                400 invalid_request_error (on a create: code model_not_found, the model is unknown)
    409                409
    429                429 with Retry-After (Vertex's, else 30 s)
    401, 403           500 server_error: the proxy's own credentials were refused, nothing the caller can fix
    503 / 504          503 / 504
    anything else      500 server_error
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from proxy.errors import (
    ApiError,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)


class Conflict(ApiError):
    http_status, status = 409, "ABORTED"


def upstream_message(data: bytes) -> str:
    """The message of Google's error envelope, else the start of the body."""
    try:
        parsed = json.loads(data)
        message = parsed["error"]["message"]
        if isinstance(message, str) and message:
            return message
    except (ValueError, KeyError, TypeError):
        pass
    return data[:200].decode("utf-8", "replace") or "no message"


def translate(status: int, data: bytes, headers: Iterable[tuple[str, str]], *, doing: str,
              create: bool = False) -> ApiError:
    """The ApiError to answer for a Vertex error reply to `doing` (e.g. "create the batch's job")."""
    message = f"Vertex AI could not {doing}: {upstream_message(data)}"
    if status == 400:
        return InvalidArgument(message)
    if status == 404:
        return InvalidArgument(message, param="model" if create else None, code="model_not_found" if create else None)
    if status == 409:
        return Conflict(message)
    if status == 429:
        retry = next((value for name, value in headers if name.lower() == "retry-after"), "30")
        return ResourceExhausted(message, headers={"retry-after": retry})
    if status == 503:
        return Unavailable(message)
    if status == 504:
        return DeadlineExceeded(message)
    return Internal(message)
