"""Errors of the OpenAI and Azure stand-ins, in OpenAI's envelope (`{"error": {message, type, param, code}}`) or,
for the few Azure answers that lack type and param, Azure's (`{"error": {"code", "message"}}`)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from proxy.errors import ApiError

_INJECTED = {
    429: ("rate_limit_exceeded", "requests", "Rate limit reached for requests (injected by the emulator)."),
    500: (None, "server_error", "The server had an error while processing your request. Sorry about that! "
                                "(injected by the emulator)"),
    503: (None, "server_error", "The server is overloaded or not ready yet (injected by the emulator)."),
    504: (None, "server_error", "The server did not answer in time (injected by the emulator)."),
}


class OpenAIError(Exception):
    """An error answer; `azure_shape` drops `type` and `param`, as Azure's front end does."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None, azure_shape: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers
        self.azure_shape = azure_shape

    def envelope(self) -> dict[str, Any]:
        if self.azure_shape:
            return {"error": {"code": self.code, "message": self.message}}
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.envelope(), status_code=self.status, headers=self.headers)


def not_found(kind: str, object_id: str) -> OpenAIError:
    """OpenAI's answer for an id it does not have (`No such File object: file-...`)."""
    return OpenAIError(404, f"No such {kind} object: {object_id}", param="id")


def invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def injected(error: ApiError, *, azure: bool = False) -> OpenAIError:
    """An injected fault (a Google-flavoured ApiError from `faults.py`) as OpenAI or Azure would answer it."""
    code, kind, message = _INJECTED.get(error.http_status, (None, "server_error", error.message))
    if azure:
        return OpenAIError(error.http_status, message, code=str(error.http_status), headers=error.headers,
                           azure_shape=True)
    return OpenAIError(error.http_status, message, type=kind, code=code, headers=error.headers)
