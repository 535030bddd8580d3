"""The usage of one OpenAI-format batch output row, in the seam's provider-neutral kinds (`RowUsage`).

    {"id", "custom_id", "response": {"status_code": 200, "request_id", "body": {..., "usage": {...}}}, "error": null}

A row answered with status 200 is SUCCEEDED and billed from `response.body.usage`: `input` = prompt_tokens
(cached included), `cached_input` = prompt_tokens_details.cached_tokens, `reasoning` =
completion_tokens_details.reasoning_tokens and `output` = completion_tokens minus the reasoning part (the seam
bills reasoning as output apart, as Vertex's thoughts). An embedding row's prompt_tokens are its input too.
A row with a top-level `error`, or with a status other than 200 (a 4xx-rejected request: `error` null, the reason
in `response.body.error`), is FAILED and not billed. A 200 row without `usage` is NO_USAGE; anything unreadable is
MALFORMED, with the reason.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.metering.totals import JobTotals
from proxy.providers.base import FAILED, MALFORMED, NO_USAGE, SUCCEEDED, RowUsage

_decode = msgspec.json.Decoder().decode
_FAILED = RowUsage(FAILED)
_NO_USAGE = RowUsage(NO_USAGE)
_CR = 13


def _count(value: Any) -> int | None:
    """A token count: a non-negative int (None when it is anything else)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _malformed(reason: str) -> RowUsage:
    return RowUsage(MALFORMED, error=reason)


def openai_row_usage(line: bytes) -> RowUsage:
    """The usage of one output or error row (one line, without its newline); never raises."""
    try:
        row = _decode(line)
    except msgspec.DecodeError as exc:
        return _malformed(f"not JSON ({exc})")
    if not isinstance(row, dict):
        return _malformed("not a JSON object")
    if row.get("error") is not None:
        return _FAILED
    response = row.get("response")
    if not isinstance(response, dict):
        return _malformed("neither a response nor an error")
    if response.get("status_code") != 200:
        return _FAILED
    body = response.get("body")
    if not isinstance(body, dict):
        return _malformed("response.body is not an object")
    usage = body.get("usage")
    if usage is None:
        return _NO_USAGE
    if not isinstance(usage, dict):
        return _malformed("response.body.usage is not an object")
    return _usage(usage, model=body.get("model"))


def _usage(usage: dict[str, Any], *, model: Any) -> RowUsage:
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens", 0))
    if prompt is None or completion is None:
        return _malformed("usage.prompt_tokens / completion_tokens are not counts")
    details = usage.get("prompt_tokens_details") or {}
    out_details = usage.get("completion_tokens_details") or {}
    if not isinstance(details, dict) or not isinstance(out_details, dict):
        return _malformed("usage details are not objects")
    cached = _count(details.get("cached_tokens") or 0)
    reasoning = _count(out_details.get("reasoning_tokens") or 0)
    if cached is None or reasoning is None:
        return _malformed("usage.*_details counts are not counts")
    if cached > prompt:
        return _malformed(f"cached_tokens {cached} exceed prompt_tokens {prompt}")
    if reasoning > completion:
        return _malformed(f"reasoning_tokens {reasoning} exceed completion_tokens {completion}")
    return RowUsage(SUCCEEDED, input=prompt, cached_input=cached, output=completion - reasoning, reasoning=reasoning,
                    model_version=model if isinstance(model, str) and model else None)


class RowReader:
    """Feeds the rows of one stream of output bytes into a job's totals (`proxy.providers.base.RowReader`).

    Lines are split on LF (a CR before it is not part of the line); blank lines are skipped; a last line without
    a newline counts once `close()` is called.
    """

    MAX_KEPT = 20  # malformed rows remembered, at most

    def __init__(self, totals: JobTotals) -> None:
        self.totals = totals
        self.rows = 0
        self.malformed_rows: list[tuple[int, str]] = []
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk if self._pending else chunk
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._line(data[start:end])
            start = end + 1
        self._pending = data[start:]

    def close(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = b""

    def _line(self, line: bytes) -> None:
        if line and line[-1] == _CR:
            line = line[:-1]
        if not line.strip():
            return
        self.rows += 1
        usage = openai_row_usage(line)
        if usage.kind == MALFORMED and len(self.malformed_rows) < self.MAX_KEPT:
            self.malformed_rows.append((self.rows, usage.error or "malformed"))
        self.totals.add(usage, where=f"row {self.rows}")
