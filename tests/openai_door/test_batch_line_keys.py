"""The key reader of a door batch's rows (`BatchLineKeys`), on emulator rows of converted files: each row keys as
its caller line's custom_id whatever Vertex echoes, a malformed row still finds its line, and a row that names no
line keys as a native row does."""

from __future__ import annotations

import json

import xxhash

from proxy.openai_door.batch_line_keys import BatchLineKeys
from proxy.reports.line_keys import request_key
from tests.openai_door.support import CHAT_MODEL, EMBEDDING_MODEL, chat_line, convert, embedding_line, emulate, jsonl


def _without_sibling(row: bytes) -> bytes:
    item = json.loads(row)
    item.pop("custom_id", None)
    return json.dumps(item).encode()


def test_chat_rows_key_by_their_label_and_else_by_the_sibling_custom_id() -> None:
    converted, vertex = convert(jsonl(*(chat_line(f"id {n}/é") for n in range(1, 5))))
    rows = emulate(vertex, CHAT_MODEL, fail=frozenset({2}))[::-1]  # any order
    keys = BatchLineKeys(converted.index)
    assert [keys(_without_sibling(row)) for row in rows] == ["id 4/é", "id 3/é", "id 2/é", "id 1/é"]
    unlabelled = json.loads(rows[0])
    del unlabelled["request"]["labels"]
    assert keys(json.dumps(unlabelled).encode()) == "id 4/é"  # the sibling custom_id, when it is echoed
    # a malformed row (labels that are no strings) is located from a generic parse
    assert keys(b'{"request": {"labels": {"vbp_line": "2", "x": 1}}, "status": 7}') == "id 2/é"
    stranger = b'{"request": {"contents": []}, "status": "gone"}'
    assert keys(stranger) == request_key(stranger) == "req_" + xxhash.xxh3_128_hexdigest(b'{"contents": []}')


def test_embedding_rows_of_the_same_text_on_two_lines_key_as_both_lines_once() -> None:
    converted, vertex = convert(jsonl(embedding_line("a", "same"), embedding_line("b", "other"),
                                      embedding_line("c", "same")))
    rows = emulate(vertex, EMBEDDING_MODEL)
    keys = BatchLineKeys(converted.index)
    assert [keys(_without_sibling(row)) for row in rows] == ["a", "b", "c"]
    assert keys(rows[0]) == "a"  # a repeated row keys as the first line of its text
    assert keys(b'{"instance": {"content": "never sent"}, "predictions": []}') == request_key(
        b'{"instance": {"content": "never sent"}, "predictions": []}')
