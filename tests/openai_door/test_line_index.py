"""The line index stored beside a converted file: it reads back exactly, and refuses what it did not write."""

from __future__ import annotations

import pytest

from proxy.openai_door.line_index import LineIndex, LineIndexBuilder, content_digest


def test_custom_ids_of_any_text_read_back_by_line_and_by_id() -> None:
    builder = LineIndexBuilder("chat")
    ids = ["a", "ünïcødé ✓", "x" * 500, "a-2"]
    for custom_id in ids:
        builder.add(custom_id)
    index = LineIndex.from_bytes(builder.build().to_bytes())
    assert (len(index), index.kind, index.inputs) == (4, "chat", 4)
    assert [index.custom_id(line) for line in range(1, 5)] == ids
    assert [index.line_of("ünïcødé ✓"), index.line_of("missing")] == [2, None]
    with pytest.raises(IndexError):
        index.custom_id(5)


def test_embedding_inputs_are_found_by_content_in_input_order() -> None:
    builder = LineIndexBuilder("embeddings")
    builder.add("one", ["same", "other"])
    builder.add("two", ["same"])
    index = LineIndex.from_bytes(builder.build().to_bytes())
    assert index.inputs_with_digest(content_digest("same")) == [0, 2]
    assert index.inputs_with_digest(content_digest("nothing")) == []
    assert [index.line_of_input(at) for at in range(3)] == [1, 1, 2]


@pytest.mark.parametrize("data", [b"", b"garbage", LineIndexBuilder("chat").build().to_bytes()[:-3]])
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        LineIndex.from_bytes(data)
