"""The queued-token estimate of a batch: what it will hold on an upstream's enqueued-token quota.

OpenAI-format lines (OpenAI and Azure deployments): each line's prompt tokens plus its output cap, the rule Azure's
quota follows (input tokens and the `max_tokens` the line allows; a line without a cap counts its prompt only):
- chat (`body.messages`): the text of every message's `content` (a string, or the `text` of each `{"type": "text"}`
  part), counted by the budgets' rule (`proxy.budgets.tokens.text_tokens`: one token per run of word characters,
  one per other non-space character), plus `max_completion_tokens`, else `max_tokens`, when positive;
- embeddings (`body.input`): the text tokens of each string, or the length of each token array.
The budgets' rule counts common English words one token each, as real tokenizers do; it errs low on rare words
and high on long numbers, and the upstream's own enqueued-token figure (`proxy.placement.claims`) corrects what
drifts. Lines that are not JSON objects of that shape count 0 (the upstream fails them; they hold no queue).

Vertex lines (Gemini deployments, native pools): the budgets' estimate (`proxy.budgets.estimate`) reads them;
its `input_tokens` is the figure (Vertex queues requests, not a declared output budget).
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.budgets.tokens import text_tokens


class _Message(msgspec.Struct):
    content: Any = None


class _Body(msgspec.Struct):
    messages: list[_Message] | None = None
    input: Any = None
    max_completion_tokens: Any = None
    max_tokens: Any = None


class _Line(msgspec.Struct):
    body: _Body | None = None


_DECODER = msgspec.json.Decoder(_Line)


def _cap(body: _Body) -> int:
    for value in (body.max_completion_tokens, body.max_tokens):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def _input_tokens(value: Any) -> int:
    if isinstance(value, str):
        return text_tokens(value)
    if not isinstance(value, list) or not value:
        return 0
    if all(isinstance(item, str) for item in value):
        return sum(text_tokens(item) for item in value)
    if all(isinstance(item, list) for item in value):
        return sum(len(item) for item in value)
    return len(value)  # one array of token ids


def line_parts(body: _Body | None) -> tuple[int, int | None]:
    """`(prompt tokens, output cap)` of one decoded line body: the cap is None for a line that produces no output
    (an embedding, or a line the upstream will fail), 0 for a chat line that sets none."""
    if body is None:
        return 0, None
    if body.messages is not None:
        prompt = 0
        for message in body.messages:
            content = message.content
            if isinstance(content, str):
                prompt += text_tokens(content)
            elif isinstance(content, list):
                prompt += sum(text_tokens(part["text"]) for part in content
                              if isinstance(part, dict) and part.get("type") == "text"
                              and isinstance(part.get("text"), str))
        return prompt, _cap(body)
    return _input_tokens(body.input), None


def line_tokens(body: _Body | None) -> int:
    """Queued tokens of one decoded line body (0 for a line the upstream will fail)."""
    prompt, cap = line_parts(body)
    return prompt + (cap or 0)


class QueuedTokens:
    """Feeds OpenAI-format JSONL in chunks of any size (lines may straddle chunks); `close` returns the total.

    Besides the queued total it keeps what a budget estimate reads (`proxy.budgets.openai_estimate`): the lines,
    those that are not requests (`malformed`), the prompt tokens, and the output bound, each chat line's cap or,
    when it sets none, `default_output` (capped at it too).
    """

    def __init__(self, *, default_output: int = 0) -> None:
        self.tokens = 0
        self.lines = 0
        self.malformed = 0
        self.prompt_tokens = 0
        self.output_bound = 0
        self.default_output = default_output
        self._rest = b""

    def feed(self, chunk: bytes) -> None:
        """Count every whole line of what came so far; keep the unfinished tail."""
        data = self._rest + chunk if self._rest else chunk
        end = data.rfind(b"\n") + 1
        self._rest = data[end:]
        for raw in data[:end].splitlines():
            self._line(raw)

    def close(self) -> int:
        """Count the last line (one without a newline) and return the total."""
        if self._rest:
            self._line(self._rest)
            self._rest = b""
        return self.tokens

    def _line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        self.lines += 1
        try:
            line = _DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.malformed += 1
            return
        if line.body is None:
            self.malformed += 1
        prompt, cap = line_parts(line.body)
        self.tokens += prompt + (cap or 0)
        self.prompt_tokens += prompt
        if cap is not None:
            limit = self.default_output
            self.output_bound += min(cap, limit) if cap and limit else cap or limit


def openai_queued_tokens(data: bytes) -> int:
    """Queued tokens of a whole OpenAI-format JSONL file held in memory."""
    counter = QueuedTokens()
    counter.feed(data)
    return counter.close()
