"""OpenAI-format output rows -> RowUsage, and the row reader that feeds a job's totals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.metering.totals import JobTotals
from proxy.providers.base import FAILED, MALFORMED, NO_USAGE, SUCCEEDED, RowUsage
from proxy.providers.openai_batch.usage import RowReader, openai_row_usage


def row(usage: dict[str, Any] | None, *, status: int = 200, error: Any = None, model: str = "gpt-4o-mini") -> bytes:
    body: dict[str, Any] = {"object": "chat.completion", "model": model}
    if usage is not None:
        body["usage"] = usage
    return json.dumps({"id": "batch_req_1", "custom_id": "a",
                       "response": {"status_code": status, "request_id": "r", "body": body},
                       "error": error}).encode()


def test_a_chat_row_bills_prompt_cached_completion_and_reasoning_apart() -> None:
    usage = openai_row_usage(row({"prompt_tokens": 40, "completion_tokens": 90, "total_tokens": 130,
                                  "prompt_tokens_details": {"cached_tokens": 30},
                                  "completion_tokens_details": {"reasoning_tokens": 70}}, model="o4-mini"))
    assert usage == RowUsage(SUCCEEDED, input=40, cached_input=30, output=20, reasoning=70,
                             model_version="o4-mini")


def test_an_embedding_row_counts_its_prompt_tokens_as_input() -> None:
    usage = openai_row_usage(row({"prompt_tokens": 7, "total_tokens": 7}, model="text-embedding-3-small"))
    assert (usage.kind, usage.input, usage.output, usage.cached_input) == (SUCCEEDED, 7, 0, 0)


@pytest.mark.parametrize("line", [
    row(None, error={"code": "batch_expired", "message": "This request could not be executed"}),
    row({"prompt_tokens": 9, "completion_tokens": 1}, status=400),
    json.dumps({"custom_id": "a", "response": None, "error": {"code": "batch_cancelled"}}).encode(),
])
def test_error_lines_and_non_200_lines_are_failed_and_unbilled(line: bytes) -> None:
    assert openai_row_usage(line) == RowUsage(FAILED)


@pytest.mark.parametrize(("line", "reason"), [
    (b"{not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (json.dumps({"custom_id": "a", "response": None, "error": None}).encode(), "neither a response nor an error"),
    (row({"prompt_tokens": "9", "completion_tokens": 1}), "are not counts"),
    (row({"prompt_tokens": 3, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 4}}),
     "cached_tokens 4 exceed prompt_tokens 3"),
    (row({"prompt_tokens": 3, "completion_tokens": 1, "completion_tokens_details": {"reasoning_tokens": 2}}),
     "reasoning_tokens 2 exceed completion_tokens 1"),
])
def test_unreadable_rows_are_malformed_with_the_reason(line: bytes, reason: str) -> None:
    usage = openai_row_usage(line)
    assert usage.kind == MALFORMED
    assert usage.error is not None and reason in usage.error


def test_a_200_row_without_usage_is_counted_apart() -> None:
    assert openai_row_usage(row(None)).kind == NO_USAGE


def test_the_reader_splits_chunks_anywhere_and_sums_exactly() -> None:
    good = row({"prompt_tokens": 9, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 6}})
    data = good + b"\r\n\n" + row(None, error={"code": "x", "message": "y"}) + b"\n" + b"garbage\n" + good
    totals = JobTotals(None)
    reader = RowReader(totals)
    for start in range(0, len(data), 7):  # chunks that cut lines anywhere
        reader.feed(data[start:start + 7])
    reader.close()  # the last line has no newline
    assert reader.rows == 4
    assert reader.malformed_rows == [(3, "not JSON (JSON is malformed: invalid character (byte 0))")]
    assert (totals.succeeded, totals.failed, totals.malformed) == (2, 1, 1)
    assert (totals.prompt, totals.cached, totals.candidates, totals.thoughts) == (18, 12, 20, 0)
