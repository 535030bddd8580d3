"""The upload converted as it arrives (`upload.upload_events`): fields may come before or after the file part, a
field given after the file still decides (nothing is stored when it refuses), and anything that is not one file
upload is a 400 with nothing stored."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.openai_door.conftest import chat_line, jsonl, stored
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow

BOUNDARY = "vbp-test-boundary"


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (name, filename or None, bytes) parts, in the order given."""
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def post(door: Proxied, body: bytes) -> httpx.Response:
    return httpx.post(door.proxy.url + "/v1/files", content=body, timeout=60,
                      headers={"api-key": door.keys["team-a"],
                               "content-type": f"multipart/form-data; boundary={BOUNDARY}"})


def error_of(reply: httpx.Response) -> tuple[int, str, str | None]:
    error = json.loads(reply.content)["error"]
    return reply.status_code, error["message"], error["param"]


FILE = jsonl(chat_line("a", "Hello"), chat_line("b", "World"))


def test_purpose_after_the_file_is_taken(door: Proxied) -> None:
    before = stored(door, "team-a")
    reply = post(door, multipart(("file", "late.jsonl", FILE), ("purpose", None, b"batch")))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["filename"], body["bytes"], body["purpose"]) == ("late.jsonl", len(FILE), "batch")
    assert stored(door, "team-a")[0] == before[0] + 1
    content = httpx.get(f"{door.proxy.url}/v1/files/{body['id']}/content", headers={"api-key": door.keys["team-a"]})
    assert content.content == FILE


def test_a_wrong_purpose_after_the_file_stores_nothing(door: Proxied) -> None:
    """The file was being converted and uploaded already: the refusal cancels both uploads unfinished."""
    before = stored(door, "team-a")
    reply = post(door, multipart(("file", "late.jsonl", FILE), ("purpose", None, b"fine-tune")))
    assert error_of(reply) == (400, "purpose 'fine-tune' is not served here: this proxy keeps batch files only "
                                    "(purpose=batch).", "purpose")
    assert stored(door, "team-a") == before


def test_no_purpose_at_all_is_refused(door: Proxied) -> None:
    before = stored(door, "team-a")
    reply = post(door, multipart(("file", "a.jsonl", FILE)))
    assert error_of(reply) == (400, "purpose None is not served here: this proxy keeps batch files only "
                                    "(purpose=batch).", "purpose")
    assert stored(door, "team-a") == before


@pytest.mark.parametrize("parts, message", [
    ([("purpose", None, b"batch")], "The upload has no `file` part."),
    ([("purpose", None, b"batch"), ("other", "a.jsonl", FILE)], "The upload has no `file` part."),
    ([("purpose", None, b"batch"), ("file", "a.jsonl", FILE), ("file", "b.jsonl", FILE)],
     "The upload is not valid multipart/form-data: Too many files. Maximum number of files is 1."),
    ([("purpose", None, b"x" * (64 * 1024 + 1)), ("file", "a.jsonl", FILE)],
     "The upload is not valid multipart/form-data: Part exceeded maximum size of 64KB."),
])
def test_what_is_not_one_file_upload_is_a_400(door: Proxied, parts: list[tuple[str, str | None, bytes]],
                                              message: str) -> None:
    before = stored(door, "team-a")
    assert error_of(post(door, multipart(*parts))) == (400, message, "file")
    assert stored(door, "team-a") == before


def test_a_body_cut_short_stores_nothing(door: Proxied) -> None:
    before = stored(door, "team-a")
    body = multipart(("purpose", None, b"batch"), ("file", "a.jsonl", FILE))
    reply = post(door, body[:-40])
    assert error_of(reply) == (400, "The upload is not valid multipart/form-data: Invalid multipart data.", "file")
    assert stored(door, "team-a") == before
