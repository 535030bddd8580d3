"""Helpers for the OpenAI and Azure stand-in tests: input lines, and a batch run to its end with the real SDK."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
from openai.types import Batch

ENDED = ("completed", "failed", "cancelled", "expired")
SYSTEM = "You are a helpful assistant."  # 6 tokens
USER = "Hello world!"                    # 3 tokens


def chat_lines(model: str, count: int, *, url: str = "/v1/chat/completions", max_tokens: int = 10) -> bytes:
    """`count` chat lines of 9 prompt tokens each; with max_tokens 10 each answers 10 tokens (the rule)."""
    return b"".join(json.dumps({
        "custom_id": f"req-{i}", "method": "POST", "url": url,
        "body": {"model": model, "max_tokens": max_tokens,
                 "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]},
    }).encode() + b"\n" for i in range(count))


def jsonl(records: list[Any]) -> bytes:
    return b"".join((r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in records)


def wait_ended(client: openai.OpenAI, batch_id: str, timeout: float = 20.0) -> Batch:
    deadline = time.monotonic() + timeout
    while (batch := client.batches.retrieve(batch_id)).status not in ENDED:
        assert time.monotonic() < deadline, batch.status
        time.sleep(0.05)
    return batch


def read_lines(client: openai.OpenAI, file_id: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def run_batch(client: openai.OpenAI, data: bytes, endpoint: str) -> Batch:
    """Upload, create, and wait for the end; the created batch must start `validating` with zero counts."""
    uploaded = client.files.create(file=("input.jsonl", data), purpose="batch")
    created = client.batches.create(input_file_id=uploaded.id, endpoint=endpoint,  # type: ignore[arg-type]
                                    completion_window="24h")
    assert created.status == "validating"
    assert created.request_counts is not None and created.request_counts.total == 0
    return wait_ended(client, created.id)
