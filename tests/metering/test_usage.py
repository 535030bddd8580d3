"""Classifying output rows and reading their usage: every documented shape, broken lines, and the fast path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.providers.base import FAILED, MALFORMED, NO_USAGE, SUCCEEDED, RowUsage
from proxy.providers.vertex.usage import parse_row, parse_span
from tests.support.samples import SAMPLES

# Two real gemini-2.5-flash-lite rows and one failed row.
SAMPLE_LINES = (SAMPLES / "vertex-predictions.jsonl").read_bytes().splitlines()
SAMPLE_FIRST = (b'{"status":"","processed_time":"2025-09-19T21:29:47.352+00:00","request":{"contents":[{"parts":'
                b'[{"text":"Hello world!"}],"role":"user"}]},"response":{"candidates":[{"content":{"parts":[{"text":'
                b'"Hello there!"}],"role":"model"},"finishReason":"MAX_TOKENS"}],'
                b'"modelVersion":"gemini-2.5-flash-lite","usageMetadata":{"candidatesTokenCount":10,"candidatesTokensDetails":[{"modality":"TEXT",'
                b'"tokenCount":10}],"promptTokenCount":9,"promptTokensDetails":[{"modality":"TEXT","tokenCount":9}],'
                b'"totalTokenCount":19,"trafficType":"ON_DEMAND"}}}')


def dumps(row: Any) -> bytes:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()


def gemini_row(usage: dict[str, Any] | None, **extra: Any) -> bytes:
    response: dict[str, Any] = {"candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}}],
                                "modelVersion": "gemini-2.5-flash"}
    if usage is not None:
        response["usageMetadata"] = usage
    return dumps({"status": "", "request": {"contents": []}, **extra, "response": response})


def test_the_real_sample_rows() -> None:
    first, second, failed = (parse_row(line) for line in SAMPLE_LINES)
    assert first == RowUsage(SUCCEEDED, input=9, output=10, model_version="gemini-2.5-flash-lite")
    assert second == RowUsage(SUCCEEDED, input=9, output=9, model_version="gemini-2.5-flash-lite")
    assert failed == RowUsage(FAILED)


def test_every_field_is_read() -> None:
    usage = {"promptTokenCount": 5000, "cachedContentTokenCount": 1200, "candidatesTokenCount": 300,
             "thoughtsTokenCount": 700, "toolUsePromptTokenCount": 45, "totalTokenCount": 6045,
             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3000},
                                     {"modality": "AUDIO", "tokenCount": 1500},
                                     {"modality": "AUDIO", "tokenCount": 500}],
             "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 200},
                                    {"modality": "TEXT", "tokenCount": 1000}],
             "toolUsePromptTokensDetails": [{"modality": "TEXT", "tokenCount": 45}], "trafficType": "BATCH"}
    assert parse_row(gemini_row(usage)) == RowUsage(
        SUCCEEDED, input=5000, cached_input=1200, output=300, reasoning=700, tool_use_input=45, audio_input=2000,
        audio_cached_input=200, model_version="gemini-2.5-flash")


def test_absent_and_null_fields_are_zero() -> None:
    assert parse_row(gemini_row({})) == RowUsage(SUCCEEDED, model_version="gemini-2.5-flash")
    assert parse_row(gemini_row({"promptTokenCount": None, "candidatesTokenCount": 3})) == RowUsage(
        SUCCEEDED, output=3, model_version="gemini-2.5-flash")


def test_failed_rows_are_free_whatever_else_they_hold() -> None:
    assert parse_row(dumps({"status": "Bad Request: {\"error\": 400}", "request": {}})).kind == FAILED
    assert parse_row(dumps({"status": "error", "processed_time": "x"})).kind == FAILED


def test_rows_without_usage() -> None:
    assert parse_row(gemini_row(None)) == RowUsage(NO_USAGE, model_version="gemini-2.5-flash")
    assert parse_row(gemini_row(None).replace(b'"response":{', b'"response":{"usageMetadata":null,')).kind == NO_USAGE
    assert parse_row(b'{"status":"","request":{}}').kind == NO_USAGE
    assert parse_row(b"{}").kind == NO_USAGE
    assert parse_row(b'{"predictions":[{"embeddings":{"values":[0.5]}}]}').kind == NO_USAGE


@pytest.mark.parametrize("line", [
    SAMPLE_FIRST[:-1],  # truncated: the last brace is missing
    SAMPLE_FIRST[:len(SAMPLE_FIRST) // 2],
    b"[]", b'"x"', b"42", b"null", b"not json", b"{", b"\xff\xfe{}",
    gemini_row({"promptTokenCount": "9"}), gemini_row({"promptTokenCount": 9.0}),
    gemini_row({"promptTokenCount": True}), gemini_row({"promptTokenCount": -1}),
    gemini_row({"promptTokensDetails": {"modality": "AUDIO"}}),
    gemini_row({"promptTokensDetails": [{"modality": 3, "tokenCount": 1}]}),
    gemini_row([1, 2]),  # type: ignore[arg-type]
    dumps({"status": "", "response": "fine"}), dumps({"status": "", "response": []}),
    dumps({"status": 500}), dumps({"status": "", "response": {"modelVersion": 2}}),
    dumps({"predictions": {"embeddings": {}}}),
    dumps({"predictions": [{"embeddings": {"statistics": {"token_count": 8.5}}}]}),
    dumps({"predictions": [{"embeddings": {"statistics": {"token_count": "8"}}}]}),
    dumps({"instance": {"content": 5}, "predictions": [{"embeddings": {"statistics": {"token_count": 8}}}]}),
])
def test_malformed_lines_are_counted_never_raised(line: bytes) -> None:
    usage = parse_row(line)
    assert usage.kind == MALFORMED
    assert usage.error
    assert (usage.input, usage.output) == (0, 0)


def test_every_strict_prefix_of_a_row_is_malformed() -> None:
    kinds = {parse_row(SAMPLE_FIRST[:cut]).kind for cut in range(1, len(SAMPLE_FIRST))}
    assert kinds == {MALFORMED}
    assert parse_row(SAMPLE_FIRST).kind == SUCCEEDED


def test_embedding_rows() -> None:
    values = [0.25] * 768
    row = {"instance": {"content": "Hello world"},
           "predictions": [{"embeddings": {"statistics": {"token_count": 8, "truncated": False}, "values": values}}],
           "status": ""}
    assert parse_row(dumps(row)) == RowUsage(SUCCEEDED, embedding_tokens=8, embedding_characters=11)
    row["instance"] = {"content": "héllo 👋 wörld", "task_type": "RETRIEVAL_DOCUMENT"}
    row["predictions"][0]["embeddings"]["statistics"]["token_count"] = 6.0  # type: ignore[index]
    # Characters are Python str characters (code points): 13, though the UTF-8 text is 18 bytes.
    assert parse_row(dumps(row)) == RowUsage(SUCCEEDED, embedding_tokens=6, embedding_characters=13)


def test_a_response_key_that_is_not_the_rows_response() -> None:
    """"response" also appears in requests (functionResponse) and in strings: only the row's own counts."""
    nested = {"functionCall": {"name": "f", "args": {"response": {"usageMetadata": {"promptTokenCount": 999}}}}}
    row = {"status": "", "request": {"contents": [{"parts": [
        {"functionResponse": {"name": "f", "response": {"usageMetadata": {"promptTokenCount": 777}}}},
        {"text": 'say "response":{"usageMetadata":{"promptTokenCount":555}}'}]}]},
        "response": {"candidates": [{"content": {"parts": [nested]}}], "usageMetadata": {"promptTokenCount": 12}}}
    assert parse_row(dumps(row)) == RowUsage(SUCCEEDED, input=12)
    # The response is not the last member: the full parse still finds it.
    reordered = {"response": row["response"], "status": "", "request": row["request"]}
    assert parse_row(dumps(reordered)) == RowUsage(SUCCEEDED, input=12)
    # Pretty-printed JSON (spaces after colons) never matches the fast path's key and is still read.
    assert parse_row(json.dumps(row, indent=2).encode()) == RowUsage(SUCCEEDED, input=12)
    # A key that merely ends in an escaped quote and "response" is not the response.
    assert parse_row(b'{"status":"","x\\"response":{"usageMetadata":{"promptTokenCount":5}}}').kind == NO_USAGE
    # A failed row whose request echoes a "response" is still a failed row.
    failed = {"status": "boom", "request": row["request"]}
    assert parse_row(dumps(failed)).kind == FAILED


def test_parse_span_reads_a_line_inside_a_larger_buffer() -> None:
    buffer = b"garbage\n" + SAMPLE_FIRST + b"\n{broken"
    start = buffer.index(b"{")
    assert parse_span(buffer, start, start + len(SAMPLE_FIRST)) == parse_row(SAMPLE_FIRST)


# A property: rows of any shape (key order, nesting, strings that look like keys, spacing) read as the
# usage they were built with.
_counts = st.none() | st.integers(min_value=0, max_value=2**40)
_details = st.none() | st.lists(st.fixed_dictionaries({
    "modality": st.sampled_from(["TEXT", "AUDIO", "IMAGE", "VIDEO"]), "tokenCount": st.integers(0, 10**6)}),
    max_size=4)
_usage = st.fixed_dictionaries({}, optional={
    "promptTokenCount": _counts, "cachedContentTokenCount": _counts, "candidatesTokenCount": _counts,
    "thoughtsTokenCount": _counts, "toolUsePromptTokenCount": _counts, "totalTokenCount": _counts,
    "promptTokensDetails": _details, "cacheTokensDetails": _details, "trafficType": st.just("ON_DEMAND")})
_tricky_text = st.sampled_from(['"response":{"usageMetadata":{"promptTokenCount":1}}', "}}}", "\\", '\\"', "{",
                                "plain words", "ünïcödé ✓", "\n\t\r"])


@st.composite
def rows(draw: st.DrawFn) -> tuple[bytes, RowUsage]:
    usage = draw(st.none() | _usage)
    response: dict[str, Any] = {}
    if draw(st.booleans()):
        response["candidates"] = [{"content": {"parts": [
            {"text": draw(_tricky_text)},
            {"functionCall": {"name": "f", "args": {"response": {"usageMetadata": {"promptTokenCount": 4242}}}}}]}}]
    model = draw(st.none() | st.sampled_from(["gemini-2.5-pro", "gemini-2.5-flash"]))
    if model is not None:
        response["modelVersion"] = model
    if usage is not None:
        response["usageMetadata"] = usage
    members: list[tuple[str, Any]] = [
        ("status", ""), ("processed_time", "2025-09-19T21:29:47.352+00:00"),
        ("request", {"contents": [{"parts": [{"text": draw(_tricky_text)}]}],
                     "tools": [{"response": {"usageMetadata": {"promptTokenCount": 31337}}}]}),
        ("custom_id", draw(_tricky_text)),
    ]
    members.insert(draw(st.integers(0, len(members))) if draw(st.booleans()) else len(members),
                   ("response", response))
    row = dict(members)
    if draw(st.booleans()):
        text = json.dumps(row, separators=(",", ":"), ensure_ascii=draw(st.booleans()))
    else:
        text = json.dumps(row, indent=draw(st.sampled_from([None, 1])))
    if usage is None:
        return text.encode(), RowUsage(NO_USAGE, model_version=model)

    def audio(details: list[dict[str, Any]] | None) -> int:
        return sum(d["tokenCount"] for d in details or [] if d["modality"] == "AUDIO")

    expected = RowUsage(
        SUCCEEDED, input=usage.get("promptTokenCount") or 0, cached_input=usage.get("cachedContentTokenCount") or 0,
        output=usage.get("candidatesTokenCount") or 0, reasoning=usage.get("thoughtsTokenCount") or 0,
        tool_use_input=usage.get("toolUsePromptTokenCount") or 0, audio_input=audio(usage.get("promptTokensDetails")),
        audio_cached_input=audio(usage.get("cacheTokensDetails")), model_version=model)
    return text.encode(), expected


@settings(max_examples=300, deadline=None)
@given(rows())
def test_any_row_shape_reads_as_built(case: tuple[bytes, RowUsage]) -> None:
    line, expected = case
    assert parse_row(line) == expected
    # Inside a chunk, between other lines, the same.
    buffer = b'{"x":1}\n' + line + b'\n{"response":{}}'
    assert parse_span(buffer, 8, 8 + len(line)) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_never_raise(line: bytes) -> None:
    assert parse_row(line).kind in {SUCCEEDED, FAILED, NO_USAGE, MALFORMED}
