"""The one error tree of the project, and Google's error envelope.

    ApiError                      an error answered to a client, in `{"error": {code, message, status}}`
    ├── InvalidArgument           400 INVALID_ARGUMENT
    ├── FailedPrecondition        400 FAILED_PRECONDITION
    ├── Unauthenticated           401 UNAUTHENTICATED
    ├── PermissionDenied          403 PERMISSION_DENIED
    ├── NotFound                  404 NOT_FOUND
    ├── MethodNotAllowed          405 UNIMPLEMENTED (the path exists, the verb does not)
    ├── PayloadTooLarge           413 (status name INVALID_ARGUMENT, as Google's front end says)
    ├── ResourceExhausted         429 RESOURCE_EXHAUSTED
    ├── Internal                  500 INTERNAL
    ├── Unavailable               503 UNAVAILABLE
    └── DeadlineExceeded          504 DEADLINE_EXCEEDED

Foreign exceptions are translated into these where they enter, one table per library: httpx and aiohttp in
their upstreams (`proxy/upstream/httpx_upstream.py`, `aiohttp_upstream.py`: connect failures, timeouts, broken
connections), google-auth in `proxy/upstream/google_credentials.py` (`_translate`), SQLAlchemy in
`proxy/ledger/db_errors.py` (the database out of reach: 503), applied by the gateway's one error handler
(`proxy/gateway/error_replies.py`), which answers every `ApiError` in the route's dialect.
"""

from __future__ import annotations

import json
from typing import Any

# google.rpc.Code numbers, for the `error.code` of a failed job (not the HTTP status).
RPC_CODES: dict[str, int] = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}


class ApiError(Exception):
    """An error the client sees, with its HTTP status and Google status name."""

    http_status = 500
    status = "INTERNAL"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        # What OpenAI's envelope adds (the OpenAI door's dialect): the offending field, and a machine-readable code.
        self.param = param
        self.code = code

    def envelope(self) -> dict[str, Any]:
        """The body Google answers with, which the SDKs map to their own exception classes."""
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}

    def body(self) -> bytes:
        return json.dumps(self.envelope()).encode()


class InvalidArgument(ApiError):
    http_status, status = 400, "INVALID_ARGUMENT"


class FailedPrecondition(ApiError):
    http_status, status = 400, "FAILED_PRECONDITION"


class Unauthenticated(ApiError):
    http_status, status = 401, "UNAUTHENTICATED"


class PermissionDenied(ApiError):
    http_status, status = 403, "PERMISSION_DENIED"


class NotFound(ApiError):
    http_status, status = 404, "NOT_FOUND"


class MethodNotAllowed(ApiError):
    http_status, status = 405, "UNIMPLEMENTED"


class PayloadTooLarge(ApiError):
    http_status, status = 413, "INVALID_ARGUMENT"


class ResourceExhausted(ApiError):
    http_status, status = 429, "RESOURCE_EXHAUSTED"


class Internal(ApiError):
    http_status, status = 500, "INTERNAL"


class Unavailable(ApiError):
    http_status, status = 503, "UNAVAILABLE"


class DeadlineExceeded(ApiError):
    http_status, status = 504, "DEADLINE_EXCEEDED"
