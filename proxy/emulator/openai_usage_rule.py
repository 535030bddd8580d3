"""The OpenAI and Azure OpenAI stand-ins' token rule: the `usage` of one batch line, computable from the line alone.

It extends the Vertex stand-in's rule (`proxy.emulator.usage_rule`): text is counted by the same
`text_tokens` (one token per run of letters/digits/underscores, one per other non-space character).

Chat completions (`/v1/chat/completions` bodies):
1. `prompt_tokens` = the text tokens of every message's `content`: a string, or the `text` of each
   `{"type": "text"}` part of a list; other parts count 0. Roles, names and tools count 0.
2. `cached_tokens` (`prompt_tokens_details`) = floor(3 * prompt_tokens / 4) when the body names a
   `prompt_cache_key`, else 0. Cached tokens are INCLUDED in prompt_tokens, as OpenAI reports them.
3. The answer's natural length is A = min(1000, 20 + prompt_tokens // 10) tokens.
4. Reasoning models (ids `o1`, `o3`, `o4-mini`, ... and `gpt-5*`) also reason R = 4 * A tokens; others 0.
5. The cap M is `max_completion_tokens`, else `max_tokens` (when > 0). `completion_tokens` INCLUDES
   `reasoning_tokens` (`completion_tokens_details`), as on OpenAI. Without a cap, or when A + R <= M:
   completion = A + R, finish_reason `stop`. Otherwise the cap is shared in the natural proportion:
   reasoning = floor(M * R / (A + R)) kept within [1, M - 1] (0 for a model that does not reason),
   completion = M, finish_reason `length`.
6. `total_tokens` = prompt_tokens + completion_tokens; audio and prediction figures are 0.

Embeddings (`/v1/embeddings` bodies): `prompt_tokens` = `total_tokens` = the text tokens of `input` (a string or
a list of strings; a list of token ids counts its length).

Example: messages "You are a helpful assistant." + "Hello world!" on gpt-4o-mini with max_tokens 10:
prompt 6 + 3 = 9, natural answer 20 + 0 = 20 > 10, so completion 10, finish `length`, total 19.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.emulator.usage_rule import MAX_NATURAL_ANSWER, THOUGHTS_PER_CANDIDATE, InvalidRequest, text_tokens

_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


@dataclass(frozen=True)
class ChatUsage:
    """The token figures of one answered chat line."""

    prompt: int
    cached: int
    completion: int
    reasoning: int
    finish_reason: str

    @property
    def answer(self) -> int:
        """The tokens of the visible answer (completion minus reasoning)."""
        return self.completion - self.reasoning

    def to_json(self) -> dict[str, Any]:
        """`usage` as a chat.completion carries it."""
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }


def reasons(model: str) -> bool:
    """Whether a model reports reasoning tokens (rule 4)."""
    return bool(_REASONING_MODEL.match(model))


def message_tokens(messages: Any) -> int:
    """Prompt tokens of a `messages` list (rule 1); InvalidRequest when it is not one."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array")
    total = 0
    for message in messages:
        if not isinstance(message, Mapping):
            raise InvalidRequest("each message must be an object")
        content = message.get("content")
        if isinstance(content, str):
            total += text_tokens(content)
        elif isinstance(content, list):
            texts = [part.get("text") for part in content if isinstance(part, Mapping) and part.get("type") == "text"]
            total += sum(text_tokens(text) for text in texts if isinstance(text, str))
    return total


def output_cap(body: Mapping[str, Any]) -> int | None:
    """`max_completion_tokens`, else `max_tokens`, when it is a positive integer."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def chat_usage(model: str, body: Mapping[str, Any]) -> ChatUsage:
    """The usage the stand-ins report for one chat completion body on `model`."""
    prompt = message_tokens(body.get("messages"))
    cached = 3 * prompt // 4 if body.get("prompt_cache_key") else 0
    answer = min(MAX_NATURAL_ANSWER, 20 + prompt // 10)
    reasoning = THOUGHTS_PER_CANDIDATE * answer if reasons(model) else 0
    cap = output_cap(body)
    if cap is None or answer + reasoning <= cap:
        return ChatUsage(prompt=prompt, cached=cached, completion=answer + reasoning, reasoning=reasoning,
                         finish_reason="stop")
    if reasoning:
        reasoning = min(cap - 1, max(1, cap * reasoning // (answer + reasoning)))
    return ChatUsage(prompt=prompt, cached=cached, completion=cap, reasoning=reasoning, finish_reason="length")


def embedding_inputs(body: Mapping[str, Any]) -> list[int]:
    """The token count of each embedding input; InvalidRequest when `input` is not a string or a list of them."""
    value = body.get("input")
    if isinstance(value, str):
        return [text_tokens(value)]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return [text_tokens(item) for item in value]
        if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            return [len(value)]
        if all(isinstance(item, list) and all(isinstance(i, int) for i in item) for item in value):
            return [len(item) for item in value]
    raise InvalidRequest("'input' must be a string, an array of strings or an array of token arrays")
