"""Clients written for LiteLLM's Vertex batches, unchanged: `custom_llm_provider=vertex_ai` in the body, a form
field, a header or the query; gs:// file ids, percent-encoded once or twice, for the caller's own files; any other
provider refused by name."""

from __future__ import annotations

import json
import shutil
import subprocess
from urllib.parse import quote

import httpx
import openai
import pytest

from proxy.ledger.models import OpenAIFile
from tests.openai_door.conftest import CHAT_FILE, said, sdk, wait_for
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow


def _gs_uri(env: Proxied, file_id: str) -> str:
    with env.sessions() as session:
        row = session.get(OpenAIFile, file_id)
        assert row is not None
        return row.input_uri


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_upload_with_the_provider_form_field_and_gs_ids(door: Proxied) -> None:
    key = door.keys["team-a"]
    done = subprocess.run(["curl", "-sS", f"{door.proxy.url}/v1/files", "-H", f"Authorization: Bearer {key}",
                           "-F", "purpose=batch", "-F", "custom_llm_provider=vertex_ai",
                           "-F", f"file=@{CHAT_FILE}"], capture_output=True, text=True, timeout=30, check=True)
    uploaded = json.loads(done.stdout)
    uri = _gs_uri(door, uploaded["id"])
    assert uri.startswith("gs://vbp-files/team-a/openai/files/")
    for encoded in (quote(uri, safe=""), quote(quote(uri, safe=""), safe="")):
        got = httpx.get(f"{door.proxy.url}/v1/files/{encoded}?custom_llm_provider=vertex_ai",
                        headers={"Authorization": f"Bearer {key}"})
        assert got.status_code == 200, got.text
        assert got.json()["id"] == uploaded["id"]
        content = httpx.get(f"{door.proxy.url}/v1/files/{encoded}/content",
                            headers={"Authorization": f"Bearer {key}", "custom-llm-provider": "vertex_ai"})
        assert content.content == CHAT_FILE.read_bytes()
    other = httpx.get(f"{door.proxy.url}/v1/files/{quote(uri, safe='')}",
                      headers={"Authorization": f"Bearer {door.keys['team-b']}"})
    assert other.status_code == 404


def test_the_sdk_with_extra_body_and_a_gs_input_file_id(door: Proxied) -> None:
    client = sdk(door)
    uploaded = client.files.create(file=(CHAT_FILE.name, CHAT_FILE.read_bytes()), purpose="batch",
                                   extra_body={"custom_llm_provider": "vertex_ai"})
    batch = client.batches.create(input_file_id=_gs_uri(door, uploaded.id), endpoint="/v1/chat/completions",
                                  completion_window="24h", extra_body={"custom_llm_provider": "vertex_ai"})
    assert batch.input_file_id == uploaded.id
    done = wait_for(client, batch.id, ("completed",))
    retrieved = client.batches.retrieve(batch.id, extra_query={"provider": "vertex_ai"})
    assert retrieved.output_file_id == done.output_file_id


@pytest.mark.parametrize("where", ["body", "header", "query"])
def test_another_provider_is_refused_by_name(door: Proxied, where: str) -> None:
    client = sdk(door)
    extra: dict[str, object] = {
        "body": {"extra_body": {"custom_llm_provider": "openai"}},
        "header": {"extra_headers": {"custom-llm-provider": "openai"}},
        "query": {"extra_query": {"custom_llm_provider": "openai"}},
    }[where]
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.create(input_file_id="file-" + "0" * 24, endpoint="/v1/chat/completions",
                              completion_window="24h", **extra)  # type: ignore[arg-type]
    assert caught.value.param == "custom_llm_provider"
    assert said(caught.value) == ("custom_llm_provider 'openai' is not served here; this proxy runs batches on "
                                    "vertex_ai only.")
