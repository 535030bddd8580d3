"""custom_id survives whatever Vertex echoes: with an emulator that does NOT echo the sibling keys of input lines
(only `request`, or the embedding instance), every output line still carries its original custom_id."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.openai_door.conftest import chat_line, door_env, embedding_line, jsonl, sdk, wait_for
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quiet_door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    yield from door_env(tmp_path_factory.mktemp("no-echo"), echo_keys=False)


@pytest.mark.parametrize("kind", ["chat", "embeddings"])
def test_custom_ids_come_back_without_sibling_echo(quiet_door: Proxied, kind: str) -> None:
    client = sdk(quiet_door)
    # custom_ids that no order, hash or label sanitising could reconstruct; the same text on two lines
    ids = ["Zeta/1", "alpha 2", "ünïcode-3", "same-text-4", "same-text-5"]
    texts = ["first question", "second question", "third question", "repeated", "repeated"]
    if kind == "chat":
        lines = [chat_line(i, t, max_tokens=3) for i, t in zip(ids, texts, strict=True)]
        endpoint = "/v1/chat/completions"
    else:
        lines = [embedding_line(i, t) for i, t in zip(ids, texts, strict=True)]
        endpoint = "/v1/embeddings"
    file = client.files.create(file=("q.jsonl", jsonl(*lines)), purpose="batch")
    batch = client.batches.create(input_file_id=file.id, endpoint=endpoint,  # type: ignore[arg-type]
                                  completion_window="24h")
    done = wait_for(client, batch.id, ("completed", "failed"))
    assert done.status == "completed" and done.error_file_id is None, done
    rows = [json.loads(line) for line in client.files.content(done.output_file_id or "").content.splitlines()]
    assert sorted(row["custom_id"] for row in rows) == sorted(ids)
    assert all(row["response"]["status_code"] == 200 for row in rows)
    # the emulator really did leave the siblings out: its raw rows carry no custom_id
    directory = f"gs://vbp-files/team-a/openai/batches/{batch.id}/"
    raw = [blob.download_as_bytes() for blob in quiet_door.stack.storage_client().list_blobs(
        "vbp-files", prefix=directory.removeprefix("gs://vbp-files/")) if blob.name.endswith(".jsonl")]
    assert raw and all(b'"custom_id"' not in data for data in raw)
