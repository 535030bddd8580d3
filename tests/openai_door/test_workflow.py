"""The issue's workflow with the real `openai` SDK: files.create -> batches.create -> batches.retrieve until
completed -> files.content, for a chat batch and an embedding batch; every line keeps its custom_id and the usage
the emulator's token rule gives (computed here independently), and the ledger's cost of the batch (reported by its
batch id) equals the sum over the output lines priced here with the published batch rates."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import httpx
import pytest

from tests.openai_door.conftest import CHAT_FILE, M, embedding_line, jsonl, sdk, wait_for, wait_metered
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow

TOKEN = re.compile(r"\w+|[^\w\s]")
# USD per 1M tokens in batch, as published (docs/pricing.md): input, output
FLASH_LITE = (Decimal("0.05"), Decimal("0.20"))
EMBEDDING_001 = Decimal("0.12")


def tokens(text: str) -> int:
    """The emulator's documented rule: one token per word run, one per other non-space character."""
    return len(TOKEN.findall(text))


def expected_chat_usage(line: dict[str, object]) -> dict[str, int]:
    body = line["body"]
    assert isinstance(body, dict)
    prompt = sum(tokens(message["content"]) for message in body["messages"])
    natural = min(1000, 20 + prompt // 10)
    completion = min(natural, body["max_tokens"])  # flash-lite does not think by default
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def costs_by_job(env: Proxied, who: str = "team-a") -> dict[str, dict[str, object]]:
    reply = httpx.get(env.proxy.url + "/v1/costs", params={"by": "job"},
                      headers={"Authorization": f"Bearer {env.keys[who]}"})
    assert reply.status_code == 200, reply.text
    return {row["job"]: row for row in reply.json()["rows"]}


def test_a_chat_batch_runs_end_to_end_with_the_openai_sdk(door: Proxied) -> None:
    client = sdk(door)
    source = [json.loads(line) for line in CHAT_FILE.read_bytes().splitlines()]
    uploaded = client.files.create(file=(CHAT_FILE.name, CHAT_FILE.read_bytes()), purpose="batch")
    assert uploaded.id.startswith("file-") and len(uploaded.id) >= 29
    assert (uploaded.purpose, uploaded.bytes, uploaded.filename) == ("batch", CHAT_FILE.stat().st_size,
                                                                     "openai-batch-input.jsonl")
    assert client.files.content(uploaded.id).content == CHAT_FILE.read_bytes()  # the caller's bytes, as sent

    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"run": "e2e"})
    assert batch.id.startswith("batch_")
    assert (batch.status, batch.input_file_id, batch.metadata) == ("validating", uploaded.id, {"run": "e2e"})
    assert batch.request_counts is not None and batch.request_counts.total == 2
    assert batch.expires_at == batch.created_at + 86400

    done = wait_for(client, batch.id, ("completed", "failed"))
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (2, 2, 0)
    assert done.output_file_id is not None and done.error_file_id is None
    assert done.in_progress_at is not None and done.completed_at is not None
    assert done.created_at <= done.in_progress_at <= done.completed_at

    output = client.files.content(done.output_file_id).content
    lines = [json.loads(line) for line in output.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["request-1", "request-2"]
    by_id = {line["custom_id"]: line for line in lines}
    expected_cost = Decimal(0)
    for line in source:
        got = by_id[line["custom_id"]]
        assert got["error"] is None and got["response"]["status_code"] == 200
        assert got["id"].startswith("batch_req_")
        body = got["response"]["body"]
        assert body["object"] == "chat.completion"
        usage = {key: body["usage"][key] for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
        assert usage == expected_chat_usage(line)
        expected_cost += (usage["prompt_tokens"] * FLASH_LITE[0] + usage["completion_tokens"] * FLASH_LITE[1]) / M
    assert client.files.content(done.output_file_id).content == output  # the same bytes on every read
    output_file = client.files.retrieve(done.output_file_id)
    assert (output_file.purpose, output_file.bytes) == ("batch_output", len(output))

    metered = wait_metered(door, client, batch.id)
    assert metered.usage is not None
    assert metered.usage.input_tokens == sum(by_id[c]["response"]["body"]["usage"]["prompt_tokens"] for c in by_id)
    assert metered.usage.output_tokens == sum(by_id[c]["response"]["body"]["usage"]["completion_tokens"]
                                              for c in by_id)
    row = costs_by_job(door)[batch.id]  # a door batch is named by its batch id in reports
    assert expected_cost == Decimal("0.0000049")
    assert Decimal(row["cost_usd"]) == expected_cost
    assert row["jobs"] == 1


def test_an_embedding_batch_runs_end_to_end_with_the_openai_sdk(door: Proxied) -> None:
    client = sdk(door)
    texts: dict[str, str | list[str]] = {"e-1": "Hello world!", "e-2": "The quick brown fox jumps over the lazy dog.",
                                         "e-3": "One", "e-4": ["two inputs", "on one line"]}
    data = jsonl(*(embedding_line(custom_id, text) for custom_id, text in texts.items()))
    uploaded = client.files.create(file=("embeddings.jsonl", data), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    done = wait_for(client, batch.id, ("completed", "failed"))
    assert done.status == "completed", done
    assert done.output_file_id is not None and done.error_file_id is None
    assert done.request_counts is not None  # in Vertex's lines: each input of e-4 counts
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (5, 5, 0)
    lines = [json.loads(line) for line in client.files.content(done.output_file_id).content.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == sorted(texts)
    expected_cost = Decimal(0)
    for line in lines:
        body = line["response"]["body"]
        inputs = texts[line["custom_id"]]
        inputs = inputs if isinstance(inputs, list) else [inputs]
        assert [item["index"] for item in body["data"]] == list(range(len(inputs)))
        assert all(item["object"] == "embedding" and len(item["embedding"]) == 3072 for item in body["data"])
        count = sum(tokens(text) for text in inputs)
        assert body["usage"] == {"prompt_tokens": count, "total_tokens": count}
        expected_cost += count * EMBEDDING_001 / M
    wait_metered(door, client, batch.id)
    assert Decimal(costs_by_job(door)[batch.id]["cost_usd"]) == expected_cost == Decimal("0.00000228")
