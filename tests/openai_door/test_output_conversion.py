"""Vertex output rows back into OpenAI batch lines: every custom_id once, usage as metering reads it, any chunking."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.openai_door.output_conversion import OutputLines
from proxy.providers.vertex.usage import parse_row
from tests.openai_door.support import CHAT_MODEL, answer, chat_line, convert, emulate, jsonl

LINES = [chat_line(f"req-{n}", {"max_tokens": 5 + n, "messages": [
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": "word " * n + "end"}]})
    for n in range(1, 9)]


def _usage_as_metered(row: bytes) -> dict[str, Any]:
    usage = parse_row(row)
    prompt, completion = usage.input + usage.tool_use_input, usage.output + usage.reasoning
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": usage.cached_input, "audio_tokens": usage.audio_input},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning}}


def test_every_emulated_row_comes_back_under_its_custom_id_with_the_usage_metering_reads() -> None:
    converted, vertex = convert(jsonl(*LINES))
    rows = emulate(vertex, CHAT_MODEL)
    random.Random(3).shuffle(rows)  # Vertex writes rows in any order
    output, errors = answer(converted, b"".join(rows))
    assert errors == []
    by_id = {line["custom_id"]: line for line in output}
    assert sorted(by_id) == sorted(line["custom_id"] for line in LINES)
    for row in rows:
        labelled = int(json.loads(row)["request"]["labels"]["vbp_line"])
        line = by_id[f"req-{labelled}"]
        assert line["response"]["body"]["usage"] == _usage_as_metered(row)
        assert line["response"]["status_code"] == 200 and line["error"] is None
    first = by_id["req-1"]["response"]["body"]
    # "Be brief." 3 tokens + "word end" 2 tokens; max_tokens 6 < the natural 20 -> MAX_TOKENS -> length.
    assert first["usage"]["prompt_tokens"] == 5 and first["usage"]["completion_tokens"] == 6
    assert first["choices"][0]["finish_reason"] == "length"
    assert first["choices"][0]["message"]["content"] == json.loads(
        next(r for r in rows if b'"vbp_line":"1"' in r))["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert (first["object"], first["model"], first["created"]) == ("chat.completion", CHAT_MODEL, 1767323045)


def test_rows_without_their_sibling_custom_id_still_find_their_line_by_label() -> None:
    converted, vertex = convert(jsonl(*LINES))
    rows = [json.loads(row) for row in emulate(vertex, CHAT_MODEL)]
    assert all("custom_id" in row for row in rows)  # the emulator echoes sibling keys, as Vertex may
    stripped = b"".join(json.dumps({k: v for k, v in row.items() if k != "custom_id"}).encode() + b"\n"
                        for row in rows)
    output, errors = answer(converted, stripped)
    assert sorted(line["custom_id"] for line in output) == sorted(line["custom_id"] for line in LINES)
    assert errors == []


def test_rows_without_their_label_find_their_line_by_the_sibling_custom_id() -> None:
    converted, vertex = convert(jsonl(*LINES))
    rows = [json.loads(row) for row in emulate(vertex, CHAT_MODEL)]
    for row in rows:
        del row["request"]["labels"]
    output, errors = answer(converted, b"".join(json.dumps(row).encode() + b"\n" for row in rows))
    assert sorted(line["custom_id"] for line in output) == sorted(line["custom_id"] for line in LINES)
    assert errors == []


def test_failed_rows_and_unanswered_lines_go_to_the_error_file_once_each() -> None:
    converted, vertex = convert(jsonl(*LINES))
    rows = emulate(vertex, CHAT_MODEL, fail=frozenset({1}))
    output, errors = answer(converted, b"".join(rows[:6]) + rows[0], unanswered="batch_expired")
    assert sorted(line["custom_id"] for line in output) == ["req-1", "req-3", "req-4", "req-5", "req-6"]
    failed, expired_7, expired_8 = errors
    assert failed["custom_id"] == "req-2" and failed["error"] is None
    assert failed["response"]["status_code"] == 429
    assert failed["response"]["body"] == {"error": {"message": "Resource exhausted. Please try again later.",
                                                    "type": "rate_limit_error", "param": None,
                                                    "code": "resource_exhausted"}}
    for line, custom_id in ((expired_7, "req-7"), (expired_8, "req-8")):
        assert line["custom_id"] == custom_id and line["response"] is None
        assert line["error"] == {"code": "batch_expired", "message": "This request could not be executed before "
                                 "the completion window expired."}
        assert line["id"].startswith("batch_req_") and len(line["id"]) == 42


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
       which=st.sampled_from(["output", "error"]))
def test_any_chunking_gives_the_same_bytes(cuts: list[int], which: str) -> None:
    converted, vertex = convert(jsonl(*LINES))
    rows = emulate(vertex, CHAT_MODEL, fail=frozenset({2}))
    data = b"".join(rows[:7]).replace(b"\n", b"\r\n", 2).rstrip(b"\n")  # CRLFs; the last row has no newline

    def run(pieces: list[bytes]) -> bytes:
        lines = OutputLines(converted.index, model=CHAT_MODEL, batch_id="batch_x", which=which,  # type: ignore[arg-type]
                            unanswered="batch_cancelled")
        return b"".join(lines.feed(piece) for piece in pieces) + lines.close()

    whole = run([data])
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    assert run([data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]) == whole
    assert len(whole.splitlines()) == (6 if which == "output" else 2)


def test_repeated_unmatched_and_malformed_rows_never_answer_a_line_twice() -> None:
    converted, vertex = convert(jsonl(*LINES[:3]))
    rows = emulate(vertex, CHAT_MODEL)
    unknown = rows[0].replace(b'"vbp_line":"1"', b'"vbp_line":"99"').replace(b'"custom_id":"req-1"',
                                                                             b'"custom_id":"nobody"')
    broken = rows[2].replace(b'"promptTokenCount":', b'"promptTokenCount":-')  # a negative count: malformed
    data = rows[0] + rows[0] + unknown + b"not json at all\n" + broken + rows[2] + rows[1]
    lines = {which: OutputLines(converted.index, model=CHAT_MODEL, batch_id="b", which=which,  # type: ignore[arg-type]
                                unanswered="batch_failed") for which in ("output", "error")}
    output, errors = ([json.loads(x) for x in (lines[w].feed(data) + lines[w].close()).splitlines()]
                      for w in ("output", "error"))
    assert [line["custom_id"] for line in output] == ["req-1", "req-2"]
    assert [line["custom_id"] for line in errors] == ["req-3"]
    assert errors[0]["response"]["status_code"] == 500
    assert errors[0]["response"]["body"]["error"]["code"] == "malformed_upstream_row"
    for converter in lines.values():
        assert (converter.repeated, converter.unmatched, converter.malformed) == (2, 2, 2)


def test_converted_images_and_tool_turns_run_on_the_emulator() -> None:
    body = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                                     {"type": "image_url", "image_url": {"url": "gs://team-a/cat.webp"}}]},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"}],
        "tools": [{"type": "function", "function": {"name": "weather"}}], "tool_choice": "auto",
        "response_format": {"type": "json_object"}, "reasoning_effort": "low"}
    converted, vertex = convert(jsonl(chat_line("img", body)))
    output, errors = answer(converted, b"".join(emulate(vertex, CHAT_MODEL)))
    assert errors == []
    usage = output[0]["response"]["body"]["usage"]
    # "Weather?" 2 text tokens + two images of 258; thinking on (budget 1024) at 4 x the 71 answer tokens.
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (518, 71 + 284)
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 284}
