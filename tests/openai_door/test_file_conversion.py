"""Reading a caller's batch file: the lines it becomes, and every reason a file is refused, with its exact message."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from proxy.openai_door.file_conversion import CHAT, EMBEDDINGS, FileRejected, convert_file
from proxy.openai_door.line_index import LineIndex
from tests.openai_door.support import CHAT_MODEL, chat_line, convert, embedding_line, jsonl
from tests.support.samples import SAMPLES


def test_the_sample_becomes_the_native_sample_lines_with_their_custom_id_and_line_label() -> None:
    data = (SAMPLES / "openai-batch-input.jsonl").read_bytes()
    converted, vertex = convert(data)
    native = [json.loads(line) for line in (SAMPLES / "vertex-batch-input.jsonl").read_bytes().splitlines()]
    for number, item in enumerate(native, start=1):
        item["custom_id"] = f"request-{number}"
        item["request"]["labels"] = {"vbp_line": str(number)}
    assert [json.loads(line) for line in vertex.splitlines()] == native
    assert (converted.model, converted.endpoint, converted.lines, converted.bytes, converted.vertex_lines) == (
        "gemini-2.5-flash-lite", CHAT, 2, len(data), 2)
    index = LineIndex.from_bytes(converted.index.to_bytes())
    assert [index.custom_id(1), index.custom_id(2), len(index)] == ["request-1", "request-2", 2]


def test_the_short_chat_url_a_crlf_file_and_blank_lines_at_the_end_are_taken() -> None:
    data = jsonl(chat_line("a", url="/chat/completions"), chat_line("b", url="/chat/completions"))
    converted, vertex = convert(data.replace(b"\n", b"\r\n") + b"\n  \n")
    assert (converted.endpoint, converted.lines, len(vertex.splitlines())) == (CHAT, 2, 2)


def test_a_last_line_without_newline_counts() -> None:
    converted, vertex = convert(jsonl(chat_line("a"), chat_line("b")).rstrip(b"\n"))
    assert (converted.lines, converted.index.custom_id(2)) == (2, "b")
    assert vertex.count(b"\n") == 2


def test_embeddings_become_one_instance_line_per_input() -> None:
    converted, vertex = convert(jsonl(embedding_line("e1", "one"), embedding_line("e2", ["two", "three"])))
    assert vertex == b'{"content":"one"}\n{"content":"two"}\n{"content":"three"}\n'
    assert (converted.endpoint, converted.lines, converted.vertex_lines) == (EMBEDDINGS, 2, 3)
    index = LineIndex.from_bytes(converted.index.to_bytes())
    assert [index.first_input(1), index.first_input(2), index.first_input(3)] == [0, 1, 3]
    assert [index.line_of_input(0), index.line_of_input(1), index.line_of_input(2)] == [1, 2, 2]


GOOD = chat_line("a")


def _raw(*lines: Any) -> bytes:
    return b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)


@pytest.mark.parametrize(("data", "code", "line", "param", "message"), [
    (b"", "empty_file", None, None, "The file is empty: a batch file needs at least one request line."),
    (b"\n \n", "empty_file", None, None, "The file is empty: a batch file needs at least one request line."),
    (_raw(GOOD, b"{not json"), "invalid_json_line", 2, None,
     "Line 2: the line is not valid JSON (JSON is malformed: object keys must be strings (byte 1))."),
    (_raw(b'{"custom_id": "\xff"}'), "invalid_json_line", 1, None, "Line 1: the line is not valid UTF-8."),
    (_raw(GOOD, [1, 2]), "invalid_json_line", 2, None, "Line 2: the line is not a JSON object."),
    (_raw(GOOD, b"", chat_line("b")), "invalid_json_line", 2, None,
     "Line 2: the line is blank, and more requests follow it (a batch file holds one JSON request per line; only "
     "blank lines at the very end are ignored)."),
    (_raw(GOOD, chat_line("a")), "duplicate_custom_id", 2, "custom_id",
     "Line 2: custom_id 'a' is used twice (first on line 1)."),
    (_raw(chat_line("")), "invalid_request", 1, "custom_id", "Line 1: custom_id must be a non-empty string."),
    (_raw(chat_line(7)), "invalid_request", 1, "custom_id", "Line 1: custom_id must be a non-empty string."),
    (_raw(chat_line("a", method="GET")), "invalid_request", 1, "method",
     "Line 1: method must be \"POST\", not 'GET'."),
    (_raw(chat_line("a", url="/v1/completions")), "invalid_request", 1, "url",
     "Line 1: url '/v1/completions' is not supported (use /v1/chat/completions or /v1/embeddings)."),
    (_raw(chat_line("a", extra=1)), "invalid_request", 1, "extra",
     "Line 1: the line has a key 'extra'; a request line has only custom_id, method, url and body."),
    (_raw(GOOD, embedding_line("b", "x")), "url_mismatch", 2, "url",
     "Line 2: url '/v1/embeddings' differs from the first line's '/v1/chat/completions' (one endpoint per file)."),
    (_raw(chat_line("a", {"model": "text-embedding-005"})), "url_mismatch", 1, "url",
     "Line 1: url '/v1/chat/completions' does not fit model 'text-embedding-005' (it answers /v1/embeddings)."),
    (_raw(embedding_line("a", "x") | {"body": {"model": CHAT_MODEL, "input": "x"}}), "url_mismatch", 1, "url",
     "Line 1: url '/v1/embeddings' does not fit model 'gemini-2.5-flash-lite' (it answers /v1/chat/completions)."),
    (_raw(GOOD, chat_line("b", {"model": "gemini-2.5-pro"})), "model_mismatch", 2, "body.model",
     "Line 2: body.model 'gemini-2.5-pro' differs from the first line's 'gemini-2.5-flash-lite' (one model per "
     "file)."),
    (_raw(chat_line("a", {"model": None})), "missing_model", 1, "body.model",
     "Line 1: body.model must name the model (a string)."),
    (_raw(chat_line("a", body=None) | {"body": "x"}), "invalid_request", 1, "body",
     "Line 1: body must be a JSON object."),
    (_raw(chat_line("a") | {"body": {"model": CHAT_MODEL}}), "invalid_request", 1, "body.messages",
     "Line 1: body.messages is missing."),
    (_raw(GOOD, chat_line("b", {"logit_bias": {"1": 2}})), "unsupported_parameter", 2, "body.logit_bias",
     "Line 2: body.logit_bias is not supported: Gemini has no per-token bias."),
    (_raw(GOOD, GOOD | {"custom_id": "b"}, GOOD | {"custom_id": "c"}), "too_many_tasks", 3, None,
     "Line 3: the file holds more than the 2 requests a batch may have."),
    (_raw(embedding_line("a", ["x", "y"]), embedding_line("b", "z")), "too_many_tasks", 2, None,
     "Line 2: the file holds more than the 2 embedding inputs a batch may have."),
])
def test_a_bad_file_is_refused_at_its_first_bad_line(data: bytes, code: str, line: int | None, param: str | None,
                                                     message: str) -> None:
    with pytest.raises(FileRejected) as caught:
        convert(data, max_lines=2)
    assert (caught.value.code, caught.value.line, caught.value.param, caught.value.message) == (
        code, line, param, message)


class _CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


def test_a_file_too_large_is_refused_while_reading_without_reading_the_rest() -> None:
    line = json.dumps(chat_line("x", {"messages": [{"role": "user", "content": "y" * 100_000}]})).encode()
    source = _CountingReader(b"".join(line.replace(b'"x"', f'"{n}"'.encode()) + b"\n" for n in range(100)))
    with pytest.raises(FileRejected) as caught:
        convert_file(source, io.BytesIO(), max_lines=1000, max_bytes=2_500_000)
    assert (caught.value.code, caught.value.line, caught.value.message) == (
        "file_too_large", None, "The file is larger than the 2,500,000 bytes a batch file may have.")
    assert source.reads == 3  # 1 MiB reads: the third one passes 2.5 MB; the other 7 MB are never read


def test_a_refused_line_leaves_nothing_in_the_sink_past_the_buffer() -> None:
    sink = io.BytesIO()
    with pytest.raises(FileRejected):
        convert_file(io.BytesIO(jsonl(GOOD, chat_line("b", {"audio": {}}))), sink, max_lines=10, max_bytes=10**6)
    assert sink.getvalue() == b""  # lines are written in 1 MiB batches: a small bad file writes nothing
