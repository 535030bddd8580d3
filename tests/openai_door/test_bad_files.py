"""Bad batch files: each refused at upload with a 400 the `openai` SDK raises as BadRequestError, naming the line
and the problem, and nothing stored (no row, no object)."""

from __future__ import annotations

import json

import openai
import pytest

from tests.openai_door.conftest import MAX_BYTES, MAX_LINES, chat_line, jsonl, said, sdk, stored
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow

GOOD = chat_line("a", "Hello")
BAD_FILES: dict[str, tuple[bytes, str, int | None]] = {
    # name: (file, code, the line the message names)
    "duplicate custom_id": (jsonl(GOOD, chat_line("b", "x"), chat_line("a", "y")), "duplicate_custom_id", 3),
    "wrong url": (jsonl(GOOD, {**chat_line("b", "x"), "url": "/v1/embeddings"}), "url_mismatch", 2),
    "unknown url": (jsonl(GOOD, {**chat_line("b", "x"), "url": "/v1/completions"}), "invalid_request", 2),
    "mixed models": (jsonl(GOOD, chat_line("b", "x", model="gemini-2.5-flash")), "model_mismatch", 2),
    "unsupported parameter": (jsonl(GOOD, chat_line("b", "x", logit_bias={"50256": -100})),
                              "unsupported_parameter", 2),
    "not JSONL": (jsonl(GOOD) + b"{not json\n", "invalid_json_line", 2),
    "too many lines": (jsonl(*(chat_line(f"r{i}", "x") for i in range(MAX_LINES + 1))), "too_many_tasks", None),
    "too large": (jsonl(*(chat_line(f"r{i}", "x" * (MAX_BYTES // 3)) for i in range(4))), "file_too_large", None),
    "empty": (b"", "empty_file", None),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_file_is_a_400_and_nothing_is_stored(door: Proxied, name: str) -> None:
    data, code, line = BAD_FILES[name]
    before = stored(door, "team-a")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(door).files.create(file=("bad.jsonl", data), purpose="batch")
    error = caught.value
    assert error.status_code == 400
    assert error.code == code, error.body
    assert error.type == "invalid_request_error"
    if line is not None:
        assert said(error).startswith(f"Line {line}: "), said(error)
    assert stored(door, "team-a") == before


def test_a_file_far_over_the_cap_is_refused_before_it_is_read(door: Proxied) -> None:
    before = stored(door, "team-a")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(door).files.create(file=("big.jsonl", b"x" * (MAX_BYTES + 200_000)), purpose="batch")
    assert caught.value.code == "file_too_large"
    assert caught.value.param == "file"
    assert stored(door, "team-a") == before


@pytest.mark.parametrize("purpose", ["fine-tune", "assistants"])
def test_other_purposes_are_refused_by_name(door: Proxied, purpose: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(door).files.create(file=("a.jsonl", jsonl(GOOD)), purpose=purpose)  # type: ignore[arg-type]
    assert caught.value.param == "purpose"
    assert said(caught.value) == (f"purpose {purpose!r} is not served here: this proxy keeps batch files only "
                                    "(purpose=batch).")


def test_the_openai_envelope_has_every_key(door: Proxied) -> None:
    import httpx

    reply = httpx.post(door.proxy.url + "/v1/files", headers={"api-key": door.keys["team-a"]},
                       files={"file": ("e.jsonl", b"")}, data={"purpose": "batch"})
    assert reply.status_code == 400
    body = json.loads(reply.content)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["type"], body["error"]["code"]) == ("invalid_request_error", "empty_file")
