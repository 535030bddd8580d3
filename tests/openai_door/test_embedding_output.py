"""Embedding batches: inputs go out one per Vertex line and come back grouped per custom_id, in input order."""

from __future__ import annotations

import json
import random

import pytest

from proxy.openai_door.file_conversion import FileRejected
from proxy.providers.vertex.usage import parse_row
from tests.openai_door.support import EMBEDDING_MODEL, answer, convert, embedding_line, emulate, jsonl

LINES = [embedding_line("single", "hello world"), embedding_line("many", ["one two", "three", "hello world"]),
         embedding_line("again", "hello world")]


def test_inputs_come_back_grouped_in_order_with_the_tokens_metering_reads() -> None:
    converted, vertex = convert(jsonl(*LINES))
    rows = emulate(vertex, EMBEDDING_MODEL)
    vectors = {json.loads(row)["instance"]["content"]: json.loads(row)["predictions"][0]["embeddings"]["values"]
               for row in rows}
    random.Random(5).shuffle(rows)
    output, errors = answer(converted, b"".join(rows))
    assert errors == []
    by_id = {line["custom_id"]: line["response"]["body"] for line in output}
    assert sorted(by_id) == ["again", "many", "single"]
    many = by_id["many"]
    assert [item["index"] for item in many["data"]] == [0, 1, 2]
    assert [item["embedding"] for item in many["data"]] == [vectors["one two"], vectors["three"],
                                                            vectors["hello world"]]
    assert many["usage"] == {"prompt_tokens": 5, "total_tokens": 5}  # 2 + 1 + 2 tokens under the emulator's rule
    metered = sum(parse_row(row).embedding_tokens for row in rows)
    assert sum(body["usage"]["prompt_tokens"] for body in by_id.values()) == metered == 9
    assert (many["object"], many["model"], many["data"][0]["object"]) == ("list", EMBEDDING_MODEL, "embedding")


def test_one_failed_input_fails_its_line_and_a_missing_one_leaves_it_unanswered() -> None:
    """Inputs are found by content: a row of "hello world" answers the first unanswered input with that text."""
    converted, vertex = convert(jsonl(*LINES))
    rows = emulate(vertex, EMBEDDING_MODEL, fail=frozenset({2}))  # "three", the second input of "many"
    # A repeated row of "one two" answers nothing twice; "again" gets no row of its own.
    output, errors = answer(converted, b"".join(rows[:4]) + rows[1], unanswered="batch_cancelled")
    assert [line["custom_id"] for line in output] == ["single"]
    failed, cancelled = errors
    assert (failed["custom_id"], failed["response"]["status_code"]) == ("many", 429)
    assert (cancelled["custom_id"], cancelled["response"], cancelled["error"]["code"]) == (
        "again", None, "batch_cancelled")


@pytest.mark.parametrize(("extra", "param", "message"), [
    ({"dimensions": 256}, "body.dimensions", "Line 1: body.dimensions is not supported: a Vertex batch job sets the "
     "embedding size per job, not per line."),
    ({"encoding_format": "base64"}, "body.encoding_format", "Line 1: body.encoding_format is not supported: only "
     "\"float\" embeddings are returned."),
])
def test_embedding_options_that_cannot_be_honoured_are_refused(extra: dict[str, object], param: str,
                                                               message: str) -> None:
    with pytest.raises(FileRejected) as caught:
        convert(jsonl(embedding_line("a", "x", **extra)))
    assert (caught.value.code, caught.value.param, caught.value.message) == ("unsupported_parameter", param, message)


def test_token_arrays_and_empty_inputs_are_refused() -> None:
    with pytest.raises(FileRejected) as caught:
        convert(jsonl(embedding_line("a", [[1, 2], [3]])))  # type: ignore[arg-type]
    assert caught.value.message == ("Line 1: body.input is not supported: token arrays cannot be sent to Vertex "
                                    "embedding models; send the text.")
    with pytest.raises(FileRejected) as caught:
        convert(jsonl(embedding_line("a", ["x", ""])))
    assert (caught.value.param, caught.value.message) == ("body.input[1]", "Line 1: body.input[1] is an empty string.")
