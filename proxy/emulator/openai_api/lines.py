"""Batch input lines: the checks that fail a whole batch (`errors.data`), and the answer to each line.

An output line is `{"id": "batch_req_...", "custom_id", "response": {"status_code", "request_id", "body"},
"error": null}` (Azure's lack `id` and carry content-filter results). A line the model refuses (a bad body)
goes to the error file with `response.status_code` 400 and OpenAI's error body, as OpenAI does.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from proxy.emulator.openai_api.flavor import EMBEDDING_DIMENSIONS, OPENAI_MODELS, Flavor, is_embedding
from proxy.emulator.openai_usage_rule import ChatUsage, chat_usage, embedding_inputs, message_tokens, output_cap
from proxy.emulator.predictions import response_text
from proxy.emulator.usage_rule import InvalidRequest

MAX_LINE_ERRORS = 1000
_SAFE = {"filtered": False, "severity": "safe"}
_UNDETECTED = {"filtered": False, "detected": False}


@dataclass(frozen=True)
class InputLine:
    """One well-formed request line (`number` counts from 1)."""

    number: int
    custom_id: str
    url: str
    body: dict[str, Any]


@dataclass(frozen=True)
class ReadInput:
    """What validation found: the well-formed lines, the batch's model name, and the errors that fail it."""

    lines: list[InputLine]
    model: str | None
    errors: list[dict[str, Any]]


def _error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def read_input(data: bytes, *, flavor: Flavor, endpoint: str) -> ReadInput:
    """Check an input file against a batch's endpoint, as the validating state does."""
    numbered = [(n, line) for n, line in enumerate(data.split(b"\n"), start=1) if line.strip()]
    if not numbered:
        return ReadInput([], None, [_error("empty_file", "The batch input file is empty. Please ensure that the "
                                                         "batch contains at least one request.")])
    errors: list[dict[str, Any]] = []
    lines: list[InputLine] = []
    seen: set[str] = set()
    model: str | None = None
    for number, raw in numbered:
        try:
            item = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            item = None
        if not isinstance(item, dict):
            errors.append(_error("invalid_json_line", "This line is not parseable as valid JSON.", number))
            continue
        custom_id, url, body = item.get("custom_id"), item.get("url"), item.get("body")
        if not isinstance(custom_id, str) or not custom_id:
            errors.append(_error("invalid_request", "Each request needs a non-empty string 'custom_id'.", number,
                                 "custom_id"))
            continue
        if item.get("method") != "POST":
            errors.append(_error("invalid_request", "The 'method' of each request must be 'POST'.", number, "method"))
            continue
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            errors.append(_error("invalid_request", "Each request needs a 'body' object with a string 'model'.",
                                 number, "body"))
            continue
        if not isinstance(url, str) or flavor.endpoint_kind(url) != flavor.endpoint_kind(endpoint):
            errors.append(_error("url_mismatch", f"The provided URL for this request does not match the endpoint "
                                                 f"of the batch ({endpoint}).", number, "url"))
            continue
        if custom_id in seen:
            errors.append(_error("duplicate_custom_id", "The custom_id for this request is a duplicate of another "
                                 "request. The custom_id parameter must be unique for each request in a batch.",
                                 number, "custom_id"))
            continue
        seen.add(custom_id)
        if model is None:
            model = body["model"]
            if flavor.model_behind(model) is None:
                what = "model deployment" if flavor.azure else "model"
                errors.append(_error("model_not_found", f"The provided {what} '{model}' does not exist or is not "
                                                        "supported by the Batch API.", number, "body.model"))
        elif body["model"] != model:
            errors.append(_error("model_mismatch", "The model of this request does not match the model of the other "
                                                   f"requests in the file ('{model}'). A batch file must use one "
                                                   "model.", number, "body.model"))
            continue
        lines.append(InputLine(number, custom_id, url, body))
    if len(numbered) > flavor.max_tasks:
        errors.append(_error("too_many_tasks", f"The batch input file has {len(numbered)} requests; a batch takes at "
                                               f"most {flavor.max_tasks}."))
    return ReadInput(lines, model, errors[:MAX_LINE_ERRORS])


def enqueued_tokens(read: ReadInput, model: str) -> int:
    """A file's enqueued tokens (Azure's quota rule): prompt tokens of each line + its max_tokens.

    Prompt tokens are counted as `proxy.emulator.openai_usage_rule` counts them (chat messages, embedding
    inputs); the output part is each line's `max_completion_tokens` or `max_tokens` (0 when it sets none).
    """
    total = 0
    for line in read.lines:
        try:
            if is_embedding(model):
                total += sum(embedding_inputs(line.body))
            else:
                total += message_tokens(line.body.get("messages")) + (output_cap(line.body) or 0)
        except InvalidRequest:
            continue
    return total


def _request_id() -> str:
    return uuid.uuid4().hex


def _envelope(line: InputLine, flavor: Flavor, status: int, body: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"id": f"batch_req_{secrets.token_hex(16)}"} if flavor.line_ids else {}
    record.update({"custom_id": line.custom_id,
                   "response": {"status_code": status, "request_id": _request_id(), "body": body}, "error": None})
    return record


def _refusal(message: str, param: str | None = None, *, kind: str = "invalid_request_error",
             code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True)
class Answer:
    """One line's output record, whether it succeeded, and its usage figures (prompt, cached, output, reasoning)."""

    record: dict[str, Any]
    ok: bool
    tokens: tuple[int, int, int, int] = (0, 0, 0, 0)


def answer(line: InputLine, *, model: str, flavor: Flavor, fail: bool = False) -> Answer:
    """The output or error record of one line; `fail` makes it a server error (the failed_row_share fault)."""
    if fail:
        body = _refusal("The server had an error while processing your request (injected by the emulator).",
                        kind="server_error")
        return Answer(_envelope(line, flavor, 500, body), False)
    kind = flavor.endpoint_kind(line.url)
    try:
        if kind == "embeddings":
            if not is_embedding(model):
                raise InvalidRequest(f"The model '{line.body['model']}' does not support embeddings.")
            return _embedding(line, model, flavor)
        if is_embedding(model):
            raise InvalidRequest(f"The model '{line.body['model']}' does not support chat completions.")
        return _chat(line, model, flavor)
    except InvalidRequest as refused:
        return Answer(_envelope(line, flavor, 400, _refusal(str(refused))), False)


def _chat(line: InputLine, model: str, flavor: Flavor) -> Answer:
    usage: ChatUsage = chat_usage(model, line.body)
    seed = int.from_bytes(hashlib.sha256(line.custom_id.encode()).digest()[:4], "big")
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": response_text(usage.answer, seed), "refusal": None,
                    "annotations": []},
        "logprobs": None,
        "finish_reason": usage.finish_reason,
    }
    body: dict[str, Any] = {
        "id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion", "created": int(time.time()),
        "model": OPENAI_MODELS.get(model, model), "choices": [choice], "usage": usage.to_json(),
        "service_tier": "default", "system_fingerprint": "fp_emulator",
    }
    if flavor.content_filter:
        choice["content_filter_results"] = {"hate": _SAFE, "protected_material_code": _UNDETECTED,
                                            "protected_material_text": _UNDETECTED, "self_harm": _SAFE,
                                            "sexual": _SAFE, "violence": _SAFE}
        body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": {
            "hate": _SAFE, "jailbreak": _UNDETECTED, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}}]
    tokens = (usage.prompt, usage.cached, usage.completion, usage.reasoning)
    return Answer(_envelope(line, flavor, 200, body), True, tokens)


def _embedding(line: InputLine, model: str, flavor: Flavor) -> Answer:
    counts = embedding_inputs(line.body)
    dimensions = line.body.get("dimensions")
    size = dimensions if isinstance(dimensions, int) and 0 < dimensions else EMBEDDING_DIMENSIONS.get(model, 1536)
    data = []
    for index in range(len(counts)):
        rng = random.Random(f"{line.custom_id}/{index}")
        data.append({"object": "embedding", "index": index,
                     "embedding": [round(rng.uniform(-1, 1), 6) for _ in range(size)]})
    prompt = sum(counts)
    body = {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}
    return Answer(_envelope(line, flavor, 200, body), True, (prompt, 0, 0, 0))
