"""The queued-token estimate against the Azure stand-in's documented enqueued-token count (its quota rule)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.emulator.openai_api.flavor import azure_flavor
from proxy.emulator.openai_api.lines import enqueued_tokens, read_input
from proxy.placement.queued_tokens import QueuedTokens, openai_queued_tokens


def _chat(custom_id: str, *texts: Any, **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": text} for text in texts]
    return {"custom_id": custom_id, "method": "POST", "url": "/chat/completions",
            "body": {"model": "gpt-4o-mini-batch", "messages": messages, **body}}


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


CHAT_FILES = {
    "capped": [_chat("a", "You are a helpful assistant.", "Hello world!", max_tokens=10),
               _chat("b", "Summarise: the quick brown fox jumps over the lazy dog.", max_completion_tokens=200)],
    "uncapped": [_chat("a", "Tell me about Paris, France; in 3 lines."), _chat("b", "Why?")],
    "parts": [_chat("a", [{"type": "text", "text": "Describe this"}, {"type": "image_url", "image_url": {"url": "x"}},
                          {"type": "text", "text": "in detail, please."}], max_tokens=50)],
    "unicode": [_chat("a", "Grüße aus Köln — 東京 にて!", max_tokens=5)],
}


@pytest.mark.parametrize("name", sorted(CHAT_FILES))
def test_chat_lines_match_the_stand_in_count(name: str) -> None:
    data = _jsonl(CHAT_FILES[name])
    stand_in = enqueued_tokens(read_input(data, flavor=azure_flavor("eastus"), endpoint="/chat/completions"),
                               "gpt-4o-mini")
    ours = openai_queued_tokens(data)
    assert stand_in <= ours <= 2 * stand_in
    assert ours == stand_in  # the same text rule: the estimate is exact for the stand-in's lines


def test_exact_figures_of_a_capped_file() -> None:
    # "You are a helpful assistant." 6 + "Hello world!" 3 + max_tokens 10; 12 tokens of text + 200
    assert openai_queued_tokens(_jsonl(CHAT_FILES["capped"])) == 19 + 212


def test_embedding_lines_match_the_stand_in_count() -> None:
    lines = [{"custom_id": "a", "method": "POST", "url": "/embeddings",
              "body": {"model": "text-embedding-3-small-batch", "input": ["Hello world!", "two words"]}},
             {"custom_id": "b", "method": "POST", "url": "/embeddings",
              "body": {"model": "text-embedding-3-small-batch", "input": "one more line."}}]
    data = _jsonl(lines)
    stand_in = enqueued_tokens(read_input(data, flavor=azure_flavor("eastus"), endpoint="/embeddings"),
                               "text-embedding-3-small")
    assert stand_in == 3 + 2 + 4
    assert openai_queued_tokens(data) == stand_in


def test_lines_straddling_chunks_and_a_last_line_without_newline() -> None:
    data = _jsonl(CHAT_FILES["capped"]).rstrip(b"\n")
    counter = QueuedTokens()
    for i in range(0, len(data), 7):
        counter.feed(data[i:i + 7])
    assert counter.close() == 231
    assert counter.lines == 2


def test_lines_the_upstream_fails_hold_nothing() -> None:
    data = b'not json\n{"custom_id": "x", "body": 3}\n[1, 2]\n' + _jsonl([_chat("a", "Hi", max_tokens=4)])
    assert openai_queued_tokens(data) == 1 + 4
