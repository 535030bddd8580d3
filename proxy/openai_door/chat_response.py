"""One Vertex GenerateContentResponse -> the body of an OpenAI chat.completion.

- one choice per candidate: `message.content` is the candidate's text parts joined (thought parts left out; null
  when there is no text), `message.tool_calls` one per functionCall part (ids derived from the batch, the line and
  the part, so every read gives the same bytes; `arguments` the call's args as a JSON string), `refusal` null,
  `logprobs` null;
- finish_reason: STOP -> stop (tool_calls when the candidate calls a function), MAX_TOKENS -> length, the safety
  reasons (SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, IMAGE_SAFETY) -> content_filter, anything else
  -> stop. A response without candidates (a blocked prompt) answers one empty choice with content_filter;
- usage, from the Vertex usage reader's reading of the same row: prompt_tokens = promptTokenCount (cached
  included) + toolUsePromptTokenCount, completion_tokens = candidatesTokenCount + thoughtsTokenCount,
  prompt_tokens_details.cached_tokens = cachedContentTokenCount (audio_tokens: the AUDIO prompt tokens),
  completion_tokens_details.reasoning_tokens = thoughtsTokenCount.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import msgspec

from proxy.openai_door.vertex_rows import Candidate, Response
from proxy.providers.base import RowUsage
from proxy.providers.vertex import usage as vertex_usage

FINISH_REASONS = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def row_usage(response: Response) -> RowUsage:
    """The usage metering reads from this response (the Vertex usage reader's own mapping)."""
    return vertex_usage.usage_of(vertex_usage.Response(modelVersion=response.modelVersion,
                                                       usageMetadata=response.usageMetadata))


def chat_usage(usage: RowUsage) -> dict[str, Any]:
    """OpenAI's CompletionUsage for one row's usage."""
    prompt = usage.input + usage.tool_use_input
    completion = usage.output + usage.reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input, "audio_tokens": usage.audio_input},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
    }


def unix_time(*moments: str | None) -> int:
    """Seconds since the epoch of the first RFC 3339 time given that parses (0 when none does)."""
    for moment in moments:
        if moment:
            try:
                return int(datetime.fromisoformat(moment).timestamp())
            except ValueError:
                continue
    return 0


def chat_completion(response: Response, *, model: str, seed: str, created: int) -> dict[str, Any]:
    """The chat.completion body for one response; `seed` makes its derived ids (unique per batch line).

    The definition of the body: the conversion writes it with `chat_completion_json`, held to this byte for byte."""
    candidates = response.candidates or []
    choices = [_choice(candidate, at, seed) for at, candidate in enumerate(candidates)]
    if not choices:
        choices = [{"index": 0, "message": {"role": "assistant", "content": None, "refusal": None},
                    "finish_reason": "content_filter", "logprobs": None}]
    return {
        "id": "chatcmpl-" + (response.responseId or _digest(seed, "completion")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": chat_usage(row_usage(response)),
    }


# The bytes msgspec writes for `chat_completion(...)`, assembled from templates: the fast path of the output
# conversion (tests/openai_door/test_output_fast_path.py holds the two equal, byte for byte).
_encode = msgspec.json.Encoder().encode
_COMPLETION = b'{"id":%s,"object":"chat.completion","created":%d,"model":%s,"choices":[%s],"usage":%s}'
_USAGE = (b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":%d,'
          b'"audio_tokens":%d},"completion_tokens_details":{"reasoning_tokens":%d}}')
_TEXT_CHOICE = (b'{"index":%d,"message":{"role":"assistant","content":%s,"refusal":null},"finish_reason":"%s",'
                b'"logprobs":null}')
_BLOCKED_CHOICE = (b'{"index":0,"message":{"role":"assistant","content":null,"refusal":null},'
                   b'"finish_reason":"content_filter","logprobs":null}')


def chat_completion_json(response: Response, *, model_json: bytes, seed: str, created: int) -> bytes:
    """`chat_completion(...)` as msgspec encodes it (`model_json`: the model's JSON string), without the dicts."""
    candidates = response.candidates
    if candidates:
        choices = b",".join([_choice_json(candidate, at, seed) for at, candidate in enumerate(candidates)])
    else:
        choices = _BLOCKED_CHOICE
    usage = row_usage(response)
    prompt = usage.input + usage.tool_use_input
    completion = usage.output + usage.reasoning
    return _COMPLETION % (
        _encode("chatcmpl-" + (response.responseId or _digest(seed, "completion"))), created, model_json, choices,
        _USAGE % (prompt, completion, prompt + completion, usage.cached_input, usage.audio_input, usage.reasoning))


def _choice_json(candidate: Candidate, at: int, seed: str) -> bytes:
    parts = candidate.content.parts if candidate.content is not None else None
    texts: list[str] = []
    for part in parts or ():
        if part.functionCall is not None:
            return _encode(_choice(candidate, at, seed))  # tool calls: rare enough to build as a dict
        if part.text is not None and not part.thought:
            texts.append(part.text)
    index = candidate.index if candidate.index is not None else at
    finish = FINISH_REASONS.get(candidate.finishReason or "STOP", "stop")
    content = _encode(texts[0] if len(texts) == 1 else "".join(texts)) if texts else b"null"
    return _TEXT_CHOICE % (index, content, finish.encode())


def _choice(candidate: Candidate, at: int, seed: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    parts = candidate.content.parts if candidate.content is not None else None
    index = candidate.index if candidate.index is not None else at
    for number, part in enumerate(parts or ()):
        if part.thought:
            continue
        if part.text is not None:
            texts.append(part.text)
        if part.functionCall is not None:
            args = bytes(part.functionCall.args).decode() if part.functionCall.args else "{}"
            calls.append({"id": "call_" + _digest(seed, str(index), str(number))[:24], "type": "function",
                          "function": {"name": part.functionCall.name, "arguments": args}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    finish = FINISH_REASONS.get(candidate.finishReason or "STOP", "stop")
    if calls:
        message["tool_calls"] = calls
        if finish == "stop":
            finish = "tool_calls"
    return {"index": index, "message": message, "finish_reason": finish, "logprobs": None}


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()
