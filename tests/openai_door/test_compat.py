"""LiteLLM's gs:// file ids arrive percent-encoded once or twice; the server has decoded one level."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from proxy.openai_door.compat import decode_file_id

URI = "gs://vbp-files/team-a/openai/files/file-0123456789abcdef01234567/input.jsonl"


@pytest.mark.parametrize("given", [URI, quote(URI, safe=""), quote(quote(URI, safe=""), safe="")])
def test_gs_ids_decode_to_the_uri(given: str) -> None:
    # the server decodes the path once: what the route sees is one level less than what was sent
    assert decode_file_id(given) == URI


def test_plain_ids_are_left_alone() -> None:
    assert decode_file_id("file-0123456789abcdef01234567") == "file-0123456789abcdef01234567"
