"""The OpenAI door under test: an emulator and a proxy (poller on, so batches get metered), keys for two teams,
and the `openai` SDK pointed at the proxy with a team's key."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
from sqlalchemy import func, select

from proxy.emulator.stack import FILES_BUCKET
from proxy.ledger.models import OpenAIBatch, OpenAIFile
from proxy.tenancy.keys import create_key
from tests.providers.vertex.conftest import Proxied, running
from tests.support.samples import SAMPLES

CHAT_FILE = SAMPLES / "openai-batch-input.jsonl"
MAX_LINES, MAX_BYTES = 5, 8192  # small caps, so the "too many" and "too large" files stay small
# Each test asks for the costs of the batch it just ran: report answers are not reused across them.
DOOR_SETTINGS: dict[str, Any] = {"files_bucket": FILES_BUCKET, "openai_max_file_lines": MAX_LINES,
                                 "openai_max_file_bytes": MAX_BYTES, "poller_enabled": True, "poll_interval": 0.3,
                                 "report_cache_seconds": 0}
M = Decimal(1_000_000)


_CLIENTS: list[openai.OpenAI] = []  # closed when the door's fixture ends: no socket is left to the collector
Client = TypeVar("Client", bound=openai.OpenAI)


def closed_with_the_door(client: Client) -> Client:
    """The client, closed when the door's fixture ends. An unclosed client's sockets are closed by the garbage
    collector, whenever it runs (an error raised through the client makes a cycle), and the ResourceWarning then
    fails whichever later test is running."""
    _CLIENTS.append(client)
    return client


def sdk(env: Proxied, who: str = "team-a", *, key: str | None = None, base_url: str | None = None) -> openai.OpenAI:
    """The `openai` SDK as a team uses it: the proxy's /v1 as base_url, the team's proxy key as api_key."""
    return closed_with_the_door(openai.OpenAI(base_url=(base_url or env.proxy.url) + "/v1",
                                              api_key=key or env.keys[who], max_retries=0, timeout=30))


def said(error: openai.APIStatusError) -> str:
    """The message of the error's OpenAI envelope (the exception's own message is prefixed with the status)."""
    assert isinstance(error.body, dict), error.body
    return str(error.body["message"])


def jsonl(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def chat_line(custom_id: str, text: str, *, model: str = "gemini-2.5-flash-lite", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": text}], **body}}


def embedding_line(custom_id: str, text: str, *, model: str = "gemini-embedding-001") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": {"model": model, "input": text}}


def wait_for(client: openai.OpenAI, batch_id: str, statuses: tuple[str, ...], *, timeout: float = 60) -> Any:
    """Retrieve the batch until its status is one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status} after {timeout} s"
        time.sleep(0.2)


def wait_metered(env: Proxied, client: openai.OpenAI, batch_id: str, *, timeout: float = 60) -> Any:
    """Retrieve the batch until it shows usage (the poller metered its job)."""
    deadline = time.monotonic() + timeout
    while (batch := client.batches.retrieve(batch_id)).usage is None:
        assert time.monotonic() < deadline, f"batch {batch_id} was not metered within {timeout} s"
        time.sleep(0.3)
    return batch


def stored(env: Proxied, team: str) -> tuple[int, int, list[str]]:
    """(file rows, batch rows, object names under the team's prefix in VBP_FILES_BUCKET)."""
    with env.sessions() as session:
        files = session.scalar(select(func.count()).select_from(OpenAIFile).where(OpenAIFile.team == team))
        batches = session.scalar(select(func.count()).select_from(OpenAIBatch).where(OpenAIBatch.team == team))
    names = [blob.name for blob in env.stack.storage_client().list_blobs(FILES_BUCKET, prefix=f"{team}/")]
    return int(files or 0), int(batches or 0), names


def door_env(tmp: Path, **options: Any) -> Iterator[Proxied]:
    with running(tmp, teams=("team-a", "team-b"), **{**DOOR_SETTINGS, **options}) as env:
        with env.sessions.begin() as session:
            key, secret = create_key(session, team="platform", name="admin", admin=True)
            env.keys["admin"], env.key_ids["admin"] = secret, key.id
        try:
            yield env
        finally:
            while _CLIENTS:
                _CLIENTS.pop().close()


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """The door with an emulator that echoes input lines' sibling keys (as Vertex is said to)."""
    yield from door_env(tmp_path_factory.mktemp("door"))
