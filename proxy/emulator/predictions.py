"""Output rows of a batch job, one per input line, shaped like Vertex's (see tests/data/vertex-predictions.jsonl)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from proxy.clock import format_rfc3339
from proxy.emulator.usage_rule import InvalidRequest, embedding_tokens, usage_for

VALID_ROLES = ("user", "model")
EMBEDDING_DIMENSIONS = {"text-embedding-005": 768, "gemini-embedding-001": 3072}
DEFAULT_EMBEDDING_DIMENSIONS = 768
# Vertex answers the short model aliases with the pinned version they point at.
MODEL_VERSIONS = {"gemini-2.0-flash": "gemini-2.0-flash-001", "gemini-2.0-flash-lite": "gemini-2.0-flash-lite-001"}
_VOCABULARY = ("emulated", "answer", "from", "the", "local", "vertex", "stand", "in", "with", "tokens",
               "counted", "by", "a", "documented", "rule", "so", "tests", "can", "check", "them")


def is_embedding_model(model: str) -> bool:
    """Embedding models take `{"content": ...}` lines and answer vectors."""
    return "embedding" in model


rfc3339 = format_rfc3339  # `2026-09-02T20:06:30.166279Z`: how Vertex writes job times


def processed_time(moment: datetime) -> str:
    """`2025-09-19T21:29:47.352+00:00`: how Vertex writes a row's processed_time."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def response_text(tokens: int, seed: int) -> str:
    """A deterministic answer of exactly `tokens` text tokens under the usage rule."""
    return " ".join(_VOCABULARY[(seed + i) % len(_VOCABULARY)] for i in range(tokens))


def failed_status(http_code: int, status: str, message: str) -> str:
    """A failed row's `status`: the reason phrase, then the Google error envelope as text."""
    phrase = {400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error"}.get(http_code, "Error")
    return f"{phrase}: " + json.dumps({"error": {"code": http_code, "message": message, "status": status}})


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def echoed_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request as Vertex re-serialises it: keys sorted, `system_instruction`, snake_case generation keys."""
    echoed: dict[str, Any] = {}
    for key, value in request.items():
        if key == "systemInstruction":
            key = "system_instruction"
        if key in ("generationConfig", "generation_config") and isinstance(value, Mapping):
            value = {_snake(k): v for k, v in value.items()}
        echoed[key] = value
    return _sorted(echoed)


def validate_request(request: Any) -> None:
    """Raise InvalidRequest with Vertex's message for a line it would answer with a failed row."""
    if not isinstance(request, Mapping):
        raise InvalidRequest("The request field must be a GenerateContentRequest object.")
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        raise InvalidRequest("Unable to submit request because it has an empty contents field.")
    for content in contents:
        if not isinstance(content, Mapping):
            raise InvalidRequest("Each contents entry must be a Content object.")
        role = content.get("role", "user")
        if role not in VALID_ROLES:
            raise InvalidRequest("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise InvalidRequest("Unable to submit request because it has an empty parts field.")


class RowMaker:
    """Turns input lines of one job into output rows (bytes, newline-terminated)."""

    def __init__(self, *, model: str, job_id: str, echo_keys: bool = True) -> None:
        self.model = model
        self.job_id = job_id
        # Whether sibling keys of an input line (e.g. `custom_id`) are echoed into its row, which Vertex is said,
        # unconfirmed, to do; off, only `request` comes back.
        self.echo_keys = echo_keys
        self.model_version = MODEL_VERSIONS.get(model, model)
        self.embedding = is_embedding_model(model)

    def row(self, line: bytes, index: int, *, now: datetime, fail: bool = False) -> tuple[bytes, bool]:
        """The output row for one input line and whether it succeeded; `fail` forces a failed row."""
        try:
            item = json.loads(line)
        except (UnicodeDecodeError, ValueError):
            return self._failed({}, "Invalid JSON payload received: the line is not a JSON object.", now), False
        if not isinstance(item, dict):
            return self._failed({}, "Invalid JSON payload received: the line is not a JSON object.", now), False
        if self.embedding:
            return self._embedding(item, now, fail)
        return self._generate(item, index, now, fail)

    def _siblings(self, item: dict[str, Any]) -> dict[str, Any]:
        """The input line's keys besides `request`, as echoed into its row (none when echoing is off)."""
        return {key: value for key, value in item.items() if key != "request"} if self.echo_keys else {}

    def _failed(self, item: dict[str, Any], message: str, now: datetime, *, http_code: int = 400,
                status: str = "INVALID_ARGUMENT") -> bytes:
        row = self._siblings(item)
        row["status"] = failed_status(http_code, status, message)
        row["processed_time"] = processed_time(now)
        if "request" in item:
            request = item["request"]
            row["request"] = echoed_request(request) if isinstance(request, Mapping) else request
        return _line(row)

    def _generate(self, item: dict[str, Any], index: int, now: datetime, fail: bool) -> tuple[bytes, bool]:
        request = item.get("request")
        try:
            validate_request(request)
            assert isinstance(request, Mapping)
            usage = usage_for(self.model, request)
        except InvalidRequest as exc:
            return self._failed(item, str(exc), now), False
        if fail:
            return self._failed(item, "Resource exhausted. Please try again later.", now, http_code=429,
                                status="RESOURCE_EXHAUSTED"), False
        digest = _digest(self.job_id, str(index), json.dumps(request, sort_keys=True))
        seed = int.from_bytes(digest[:4], "big")
        response = {
            "candidates": [{
                "avgLogprobs": -round(0.05 + (seed % 9000) / 10000, 6),
                "content": {"parts": [{"text": response_text(usage.candidates, seed)}], "role": "model"},
                "finishReason": usage.finish_reason,
            }],
            "createTime": rfc3339(now),
            "modelVersion": self.model_version,
            "responseId": base64.urlsafe_b64encode(digest[4:21]).decode().rstrip("="),
            "usageMetadata": usage.metadata(),
        }
        row = self._siblings(item)
        row.update({"status": "", "processed_time": processed_time(now), "request": echoed_request(request),
                    "response": response})
        return _line(row), True

    def _embedding(self, item: dict[str, Any], now: datetime, fail: bool) -> tuple[bytes, bool]:
        content = item.get("content")
        if not isinstance(content, str) or not content:
            row = {"instance": item, "status": failed_status(400, "INVALID_ARGUMENT",
                                                             "The instance needs a non-empty content string.")}
            return _line(row), False
        if fail:
            row = {"instance": item, "status": failed_status(429, "RESOURCE_EXHAUSTED",
                                                             "Resource exhausted. Please try again later.")}
            return _line(row), False
        count, truncated = embedding_tokens(content)
        prediction = {"embeddings": {"statistics": {"token_count": count, "truncated": truncated},
                                     "values": embedding_values(self.model, content)}}
        return _line({"instance": item, "predictions": [prediction], "status": ""}), True


def embedding_values(model: str, content: str) -> list[float]:
    """A deterministic unit vector for a text."""
    rng = random.Random(_digest(model, content))
    values = [rng.uniform(-1.0, 1.0) for _ in range(EMBEDDING_DIMENSIONS.get(model, DEFAULT_EMBEDDING_DIMENSIONS))]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 7) for v in values]


def _line(row: Mapping[str, Any]) -> bytes:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
