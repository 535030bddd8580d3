"""A batch's life beyond the happy path: cancel, a failed job, key scopes, a second proxy on the same ledger, the
`api-key` header, and the door switched off without VBP_FILES_BUCKET."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from proxy.settings import Settings
from proxy.tenancy.keys import create_key
from tests.openai_door.conftest import CHAT_FILE, chat_line, jsonl, said, sdk, wait_for
from tests.providers.vertex.conftest import Proxied
from tests.support.proxy_server import ProxyServer

pytestmark = pytest.mark.slow


def _upload(client: openai.OpenAI, lines: int = 2) -> str:
    data = jsonl(*(chat_line(f"c-{i}", f"Question {i}?", max_tokens=5) for i in range(lines)))
    return client.files.create(file=("q.jsonl", data), purpose="batch").id


def test_cancel_ends_the_batch_cancelled_with_every_request_accounted_for(door: Proxied) -> None:
    client = sdk(door)
    file_id = _upload(client, 3)
    door.stack.state.job_seconds = 60  # slow enough to be cancelled while running
    try:
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
    finally:
        door.stack.state.job_seconds = 0.6
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.delete(file_id)  # its batch still needs it
    assert caught.value.code == "file_in_use"
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    done = wait_for(client, batch.id, ("cancelled",))
    assert done.cancelled_at is not None and done.cancelling_at is not None
    assert done.error_file_id is not None
    lines = [json.loads(line) for line in client.files.content(done.error_file_id).content.splitlines()]
    answered = []
    if done.output_file_id:
        answered = [json.loads(line)["custom_id"] for line in client.files.content(done.output_file_id).iter_lines()
                    if line]
    unanswered = [line for line in lines if line["response"] is None]
    assert all(line["error"]["code"] == "batch_cancelled" for line in unanswered)
    assert sorted(answered + [line["custom_id"] for line in lines]) == ["c-0", "c-1", "c-2"]
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)  # it has ended
    assert client.files.delete(file_id).deleted is True  # no batch needs it any more


def test_a_failed_job_makes_a_failed_batch_with_errors(door: Proxied) -> None:
    client = sdk(door)
    file_id = _upload(client)
    door.stack.set_faults(fail_jobs=True)
    try:
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        done = wait_for(client, batch.id, ("failed",))
    finally:
        door.stack.reset()
    assert done.errors is not None and done.errors.data is not None
    assert done.errors.data[0].code == "batch_failed"
    assert done.errors.data[0].message == ("Internal error occurred. Batch prediction job failed (injected by the "
                                           "emulator: fail_jobs).")
    assert done.failed_at is not None and done.output_file_id is None and done.error_file_id is not None
    lines = [json.loads(line) for line in client.files.content(done.error_file_id).content.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["c-0", "c-1"]
    assert {line["error"]["code"] for line in lines} == {"batch_failed"}


@pytest.mark.parametrize(("scopes", "message"), [
    ({"models": ["gemini-2.5-pro"]}, "This key may not use model 'gemini-2.5-flash-lite'."),
    ({"operations": ["read"]}, "This key may not create batch prediction jobs."),
    ({"locations": ["europe-west4"]}, "This key may not use location 'us-central1'."),
])
def test_key_scopes_apply_to_batches(door: Proxied, scopes: dict[str, list[str]], message: str) -> None:
    with door.sessions.begin() as session:
        _, secret = create_key(session, team="team-a", name="scoped", **scopes)  # type: ignore[arg-type]
    client = sdk(door, key=secret)
    file_id = sdk(door).files.create(file=(CHAT_FILE.name, CHAT_FILE.read_bytes()), purpose="batch").id
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    assert said(caught.value) == message


def test_a_second_proxy_on_the_same_ledger_reads_the_same_batch(door: Proxied) -> None:
    client = sdk(door)
    file_id = client.files.create(file=(CHAT_FILE.name, CHAT_FILE.read_bytes()), purpose="batch").id
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    first = door.proxy.app.settings
    second = ProxyServer(Settings(**{**first.__dict__, "poller_enabled": False})).start()
    try:
        other = sdk(door, base_url=second.url)
        done = wait_for(other, batch.id, ("completed",))
        assert (done.input_file_id, done.request_counts.total if done.request_counts else None) == (file_id, 2)
        assert other.files.content(done.output_file_id or "").content == \
            client.files.content(done.output_file_id or "").content
    finally:
        second.stop()


def test_the_api_key_header_and_a_missing_key(door: Proxied) -> None:
    listed = httpx.get(door.proxy.url + "/v1/batches", headers={"api-key": door.keys["team-a"]})
    assert listed.status_code == 200 and listed.json()["object"] == "list"
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(door, key="vbp_not-a-key").batches.list()
    assert (caught.value.code, caught.value.type) == ("invalid_api_key", "invalid_request_error")


def test_without_a_files_bucket_the_door_is_off_and_says_so(door: Proxied, tmp_path: Path) -> None:
    settings = Settings(**{**door.proxy.app.settings.__dict__, "files_bucket": None, "poller_enabled": False})
    server = ProxyServer(settings).start()
    try:
        client = sdk(door, base_url=server.url)
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as caught:
            client.files.create(file=(CHAT_FILE.name, CHAT_FILE.read_bytes()), purpose="batch")
        assert time.monotonic() - started < 10
        assert caught.value.status_code == 503
        assert "VBP_FILES_BUCKET" in caught.value.message
    finally:
        server.stop()


def test_a_batch_over_the_teams_budget_is_refused_before_vertex(door: Proxied) -> None:
    from proxy.budgets import store
    from proxy.clock import utcnow

    with door.sessions.begin() as session:
        _, secret = create_key(session, team="team-c", name="budgeted")
        store.set_budget(session, actor="test", team="team-c", key_id=None, limit_pico=1, period="month",
                         now=utcnow())
    client = sdk(door, key=secret)
    file_id = client.files.create(file=(CHAT_FILE.name, CHAT_FILE.read_bytes()), purpose="batch").id
    before = len(door.emulator_calls())
    with pytest.raises(openai.RateLimitError) as caught:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    assert said(caught.value).startswith("Budget exhausted: team team-c has 0.000000000001 USD remaining, and this "
                                         "batch is estimated at up to "), said(caught.value)
    assert caught.value.response.headers["x-should-retry"] == "false"  # the SDK does not try again
    assert len(door.emulator_calls()) == before  # nothing reached Vertex
    refused = client.batches.list().data[0]
    assert refused.status == "failed" and refused.errors is not None and refused.errors.data is not None
    assert refused.errors.data[0].code == "resource_exhausted"


@pytest.mark.parametrize("path, most", [("/v1/files", 10_000), ("/v1/batches", 100)])
@pytest.mark.parametrize("limit", ["\u00b2", "\u0663", "0", "-1", "1.5"])
def test_a_list_limit_that_is_not_a_plain_whole_number_is_a_400_naming_it(door: Proxied, path: str, most: int,
                                                                           limit: str) -> None:
    """"²" and "٣" are digits to str.isdigit(); the first once reached int() (a 500), the second was read as 3."""
    reply = httpx.get(door.proxy.url + path, params={"limit": limit},
                      headers={"Authorization": f"Bearer {door.keys['team-a']}"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == {"message": f"limit must be a whole number from 1 to {most}.",
                                     "type": "invalid_request_error", "param": "limit", "code": None}
