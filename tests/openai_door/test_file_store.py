"""Converting while uploading (`file_store.convert_and_upload`) against fake-gcs-server, with small upload chunks so
that several chunks are on their way before the end: a good file stores the caller's bytes and exactly the lines
`convert_file` writes; a file rejected at its last line, after chunks were sent, stores nothing; an upload that
fails stops the conversion with the upload's error."""

from __future__ import annotations

import io
import threading
import uuid

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import InvalidResponse

from proxy.emulator.storage import FakeGcsServer
from proxy.openai_door.bucket import FilesBucket
from proxy.openai_door.file_conversion import FileRejected
from proxy.openai_door.file_store import convert_and_upload
from proxy.openai_door.pipe import Pipe, PipeAborted
from tests.openai_door.support import chat_line, convert, jsonl

pytestmark = pytest.mark.slow  # fake-gcs-server

CHUNK = 256 * 1024  # the smallest resumable chunk: a 2 MB file goes up in several requests
LINES = [chat_line(f"c-{n}", {"messages": [{"role": "user", "content": f"question {n} " + "x" * 900}]})
         for n in range(2_000)]


@pytest.fixture()
def bucket(fake_gcs: FakeGcsServer) -> FilesBucket:
    # Pointed at the server itself, not through STORAGE_EMULATOR_HOST, which a package fixture elsewhere may restore
    # away while this session's server still runs.
    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": fake_gcs.url})
    name = f"store-{uuid.uuid4().hex[:12]}"
    client.create_bucket(name)
    return FilesBucket(name, lambda: client, upload_chunk_bytes=CHUNK)


def _names(bucket: FilesBucket) -> list[str]:
    return sorted(blob.name for blob in bucket.client.list_blobs(bucket.name))


def test_a_good_file_stores_its_bytes_and_its_conversion(bucket: FilesBucket) -> None:
    data = jsonl(*LINES)
    assert len(data) > 8 * CHUNK
    result = convert_and_upload(bucket, "t/f/", io.BytesIO(data), max_lines=5_000, max_bytes=len(data),
                                pipe_bytes=CHUNK)
    expected, vertex = convert(data)
    assert (result.lines, result.bytes, result.model) == (2_000, len(data), expected.model)
    assert result.index.to_bytes() == expected.index.to_bytes()
    assert _names(bucket) == ["t/f/input.jsonl", "t/f/vertex.jsonl"]
    assert bucket.read("t/f/input.jsonl") == data
    assert bucket.read("t/f/vertex.jsonl") == vertex


def test_a_file_rejected_at_its_last_line_stores_nothing(bucket: FilesBucket) -> None:
    data = jsonl(*LINES, chat_line("c-7"))  # the last line repeats a custom_id
    # pipes of one chunk: the conversion cannot run ahead, so several chunks of both uploads went up before the end
    with pytest.raises(FileRejected) as rejected:
        convert_and_upload(bucket, "t/f/", io.BytesIO(data), max_lines=5_000, max_bytes=len(data), pipe_bytes=CHUNK)
    assert rejected.value.message == "Line 2001: custom_id 'c-7' is used twice (first on line 8)."
    assert _names(bucket) == []


def test_an_upload_that_fails_stops_the_conversion_with_its_error(bucket: FilesBucket) -> None:
    missing = FilesBucket(f"gone-{uuid.uuid4().hex[:8]}", lambda: bucket.client, upload_chunk_bytes=CHUNK)
    with pytest.raises(InvalidResponse) as failed:
        convert_and_upload(missing, "t/f/", io.BytesIO(jsonl(*LINES)), max_lines=5_000, max_bytes=10**9,
                           pipe_bytes=CHUNK)
    assert failed.value.args[:3] == ("Request failed with status code", 404, "Expected one of")
    assert _names(bucket) == []


def test_the_pipe_tells_an_aborted_stream_from_a_whole_one() -> None:
    pipe = Pipe(max_bytes=4)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(iter(lambda: pipe.read(3), b"")))
    reader.start()
    for piece in (b"abcd", b"ef", b"g"):
        pipe.write(piece)  # waits while 4 bytes are held
    pipe.close()
    reader.join(5)
    assert b"".join(got) == b"abcdefg" and all(1 <= len(piece) <= 3 for piece in got)
    aborted = Pipe()
    aborted.write(b"partial")
    aborted.abort(ValueError("line 3 is bad"))
    with pytest.raises(PipeAborted, match="line 3 is bad"):
        aborted.read(100)
    abandoned = Pipe()
    abandoned.abandon()
    with pytest.raises(PipeAborted):
        abandoned.write(b"x")


def test_offer_queues_only_while_the_pipe_has_room() -> None:
    """The receiving side offers bytes without waiting (on the event loop) and writes from a thread when full."""
    pipe = Pipe(max_bytes=4)
    assert pipe.offer(b"abc") is True
    assert pipe.offer(b"defg") is True  # 3 held: room for one more write, which may cross the bound
    assert pipe.offer(b"h") is False  # 7 held: full, nothing queued
    assert pipe.read(100) == b"abcdefg"
    assert pipe.offer(b"h") is True
    pipe.close()
    assert (pipe.read(100), pipe.read(100)) == (b"h", b"")
    abandoned = Pipe()
    abandoned.abandon()
    with pytest.raises(PipeAborted):
        abandoned.offer(b"x")
