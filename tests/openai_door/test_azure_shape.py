"""The OpenAI door in Azure OpenAI's shapes, with the real `openai.AzureOpenAI` client pointed at the proxy:
files.create -> batches.create (201) -> retrieve until completed -> files.content, on a Gemini model; the objects
are those of `/v1/files|batches` (the same ids through either door); the v1 form; Azure's answers to a missing or
unknown api-version; another team's batch is a 404 here too."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.openai_door.conftest import CHAT_FILE, closed_with_the_door, door_env, sdk, wait_for, wait_metered
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow

API_VERSION = "2024-10-21"


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    yield from door_env(tmp_path_factory.mktemp("azure-door"))


def azure(env: Proxied, who: str = "team-a", *, api_version: str = API_VERSION) -> openai.AzureOpenAI:
    """`AzureOpenAI` as a team's Azure code uses it, with the proxy as its endpoint and the proxy key as api_key."""
    return closed_with_the_door(openai.AzureOpenAI(azure_endpoint=env.proxy.url, api_key=env.keys[who],
                                                   api_version=api_version, max_retries=0, timeout=30))


def test_the_azure_client_runs_a_gemini_batch_end_to_end(door: Proxied) -> None:
    client = azure(door)
    uploaded = client.files.create(file=(CHAT_FILE.name, CHAT_FILE.read_bytes()), purpose="batch")
    assert (uploaded.object, uploaded.purpose, uploaded.bytes) == ("file", "batch", CHAT_FILE.stat().st_size)
    assert client.files.content(uploaded.id).content == CHAT_FILE.read_bytes()

    raw = client.batches.with_raw_response.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                                  completion_window="24h", metadata={"via": "azure"})
    assert raw.http_request.url.path == "/openai/batches"
    assert raw.http_request.url.params["api-version"] == API_VERSION
    assert raw.http_request.headers["api-key"] == door.keys["team-a"]
    assert raw.status_code == 201  # as Azure answers a create
    batch = raw.parse()
    assert (batch.status, batch.input_file_id, batch.metadata) == ("validating", uploaded.id, {"via": "azure"})

    done = wait_for(client, batch.id, ("completed", "failed"))
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (2, 2, 0)
    assert done.output_file_id is not None
    lines = [json.loads(line) for line in client.files.content(done.output_file_id).content.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["request-1", "request-2"]
    assert all(line["response"]["status_code"] == 200 and line["error"] is None for line in lines)

    # Metered like any door batch; then the same batch and file through the /v1 door: the same objects, field for
    # field.
    metered = wait_metered(door, client, batch.id)
    assert metered.usage is not None and metered.usage.input_tokens == sum(
        line["response"]["body"]["usage"]["prompt_tokens"] for line in lines)
    plain = sdk(door)
    assert plain.batches.retrieve(batch.id).model_dump() == client.batches.retrieve(batch.id).model_dump()
    assert plain.files.retrieve(uploaded.id).model_dump() == client.files.retrieve(uploaded.id).model_dump()
    assert [b.id for b in client.batches.list()] == [b.id for b in plain.batches.list()]


def test_the_v1_form_needs_no_api_version(door: Proxied) -> None:
    client = sdk(door, base_url=door.proxy.url + "/openai")  # base_url = {proxy}/openai/v1
    uploaded = client.files.create(file=(CHAT_FILE.name, CHAT_FILE.read_bytes()), purpose="batch")
    raw = client.batches.with_raw_response.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                                  completion_window="24h")
    assert (raw.http_request.url.path, raw.status_code) == ("/openai/v1/batches", 201)
    batch = raw.parse()
    assert client.batches.retrieve(batch.id).id == batch.id
    assert client.batches.cancel(batch.id).status in ("cancelling", "cancelled", "completed")


def test_api_version_is_required_and_checked_as_azure_does(door: Proxied) -> None:
    headers = {"api-key": door.keys["team-a"]}
    missing = httpx.get(door.proxy.url + "/openai/batches", headers=headers, timeout=30)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "Resource not found"
    assert missing.json()["error"]["code"] == "404"
    with pytest.raises(openai.BadRequestError) as unknown:
        azure(door, api_version="2023-05-15").batches.list()
    assert unknown.value.code == "BadRequest" and unknown.value.param == "api-version"
    assert "API version not supported: '2023-05-15'" in str(unknown.value.body)
    # The check comes first: no key, no version is still Azure's 404, not a 401 that would confirm the route.
    assert httpx.get(door.proxy.url + "/openai/files", timeout=30).status_code == 404
    with pytest.raises(openai.AuthenticationError):  # a version but no valid key
        closed_with_the_door(openai.AzureOpenAI(azure_endpoint=door.proxy.url, api_key="vbp_wrong",
                                                api_version=API_VERSION, max_retries=0)).files.list()


def test_another_team_s_batch_and_file_are_404_in_azure_shapes_too(door: Proxied) -> None:
    owner = azure(door, "team-a")
    uploaded = owner.files.create(file=(CHAT_FILE.name, CHAT_FILE.read_bytes()), purpose="batch")
    batch = owner.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    other = azure(door, "team-b")
    for call in (lambda: other.batches.retrieve(batch.id), lambda: other.files.retrieve(uploaded.id),
                 lambda: other.files.content(uploaded.id), lambda: other.batches.cancel(batch.id)):
        with pytest.raises(openai.NotFoundError):
            call()
