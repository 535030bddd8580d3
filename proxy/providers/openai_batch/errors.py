"""What a call to an OpenAI or Azure deployment can end in, short of an answer: one exception, `UpstreamRefused`.

    status = an HTTP status    the deployment answered with an error (429 carries `retry_after`)
    status = None             no answer: `reason` is "timeout", "connect" (nothing was sent) or "reset"

`retryable` says whether the same call may succeed later or elsewhere (429, 5xx, no answer), as opposed to a
refusal that will not change (400 `token_limit_exceeded` aside: another deployment may have room, so it is
retryable too). The door turns it into OpenAI's envelope (`proxy.openai_door.upstream_batches.as_api_error`).
"""

from __future__ import annotations

import json

RETRYABLE_CODES = frozenset({"token_limit_exceeded"})


class UpstreamRefused(Exception):
    """A call to a deployment that did not succeed (see the module docstring)."""

    def __init__(self, message: str, *, status: int | None, reason: str = "status", code: str | None = None,
                 retry_after: float | None = None, deployment: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.code = code
        self.retry_after = retry_after
        self.deployment = deployment

    @property
    def transient(self) -> bool:
        """Whether the same call to the same deployment may succeed in a moment (429, 5xx, no answer): what the
        client tries again by itself."""
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def retryable(self) -> bool:
        """Whether trying again (later, or on another deployment) may succeed."""
        if self.status is None:
            return True
        return self.status == 429 or self.status >= 500 or self.code in RETRYABLE_CODES


def error_of(data: bytes) -> tuple[str, str | None]:
    """(message, code) of OpenAI's or Azure's error envelope, else the start of the body."""
    try:
        error = json.loads(data)["error"]
        message = error.get("message")
        code = error.get("code")
        if isinstance(message, str) and message:
            return message, str(code) if code is not None else None
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return data[:200].decode("utf-8", "replace") or "no message", None
