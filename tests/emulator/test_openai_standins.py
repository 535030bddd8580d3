"""The OpenAI and Azure OpenAI stand-ins, driven by the real `openai` SDK (`OpenAI` and `AzureOpenAI`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TypeVar

import httpx
import openai
import pytest

from proxy.emulator.stack import EmulatorStack
from tests.emulator.openai_support import chat_lines, jsonl, read_lines, run_batch, wait_ended

pytestmark = pytest.mark.slow

API_VERSION = "2024-10-21"
C = TypeVar("C", bound=openai.OpenAI)
LINE_USAGE = {"prompt_tokens": 9, "completion_tokens": 10, "total_tokens": 19,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


@pytest.fixture(scope="module")
def stack() -> Iterator[EmulatorStack]:
    with EmulatorStack(job_seconds=0.6, openai_key="sk-test-fixed") as running:
        yield running


_OPENED: list[openai.OpenAI] = []


def keep(client: C) -> C:
    """Close the client when the test ends (an unclosed connection pool warns, and warnings are errors)."""
    _OPENED.append(client)
    return client


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().close()


@pytest.fixture
def client(stack: EmulatorStack) -> openai.OpenAI:
    return keep(openai.OpenAI(base_url=stack.openai_base_url, api_key="sk-test-fixed", max_retries=0))


def azure(stack: EmulatorStack, resource: str, **options: object) -> openai.AzureOpenAI:
    return keep(openai.AzureOpenAI(azure_endpoint=stack.azure_endpoint(resource), api_key=stack.state.azure_key,
                                   api_version=API_VERSION, **{"max_retries": 0, **options}))  # type: ignore[arg-type]


def test_openai_chat_batch_end_to_end(client: openai.OpenAI) -> None:
    batch = run_batch(client, chat_lines("gpt-4o-mini", 3), "/v1/chat/completions")
    assert batch.status == "completed" and batch.errors is None and batch.error_file_id is None
    assert batch.request_counts is not None and batch.request_counts.model_dump() == {
        "total": 3, "completed": 3, "failed": 0}
    assert batch.usage is not None and batch.usage.model_dump() == {
        "input_tokens": 27, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 57}
    assert batch.model == "gpt-4o-mini" and batch.expires_at == batch.created_at + 86400
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at
    assert batch.output_file_id is not None
    lines = read_lines(client, batch.output_file_id)
    assert sorted(line["custom_id"] for line in lines) == ["req-0", "req-1", "req-2"]
    for line in lines:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini-2024-07-18"
        assert body["usage"] == LINE_USAGE
        assert body["choices"][0]["finish_reason"] == "length"
        assert len(body["choices"][0]["message"]["content"].split()) == 10
    output = client.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output"
    assert output.filename == f"batch_{batch.id}_output.jsonl"


def test_openai_embedding_batch_end_to_end(client: openai.OpenAI) -> None:
    data = jsonl([{"custom_id": "e-0", "method": "POST", "url": "/v1/embeddings",
                   "body": {"model": "text-embedding-3-small", "input": ["Hello world!", "a b"]}},
                  {"custom_id": "e-1", "method": "POST", "url": "/v1/embeddings",
                   "body": {"model": "text-embedding-3-small", "input": "You are a helpful assistant.",
                            "dimensions": 8}}])
    batch = run_batch(client, data, "/v1/embeddings")
    assert batch.status == "completed" and batch.usage is not None
    assert (batch.usage.input_tokens, batch.usage.output_tokens, batch.usage.total_tokens) == (11, 0, 11)
    assert batch.output_file_id is not None
    lines = {line["custom_id"]: line["response"]["body"] for line in read_lines(client, batch.output_file_id)}
    assert lines["e-0"]["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    assert [len(item["embedding"]) for item in lines["e-0"]["data"]] == [1536, 1536]
    assert lines["e-1"]["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert len(lines["e-1"]["data"][0]["embedding"]) == 8


@pytest.mark.parametrize("resource", ["eastus", "westus"])
def test_azure_chat_batch_on_each_resource(stack: EmulatorStack, resource: str) -> None:
    client = azure(stack, resource)
    uploaded = client.files.create(file=("input.jsonl", chat_lines("gpt-4o-mini-batch", 3, url="/chat/completions")),
                                   purpose="batch")
    assert uploaded.id.startswith("file-") and len(uploaded.id) == len("file-") + 32
    raw = client.batches.with_raw_response.create(input_file_id=uploaded.id, endpoint="/chat/completions",
                                                  completion_window="24h")
    assert raw.status_code == 201
    # 3 lines x (9 prompt tokens + max_tokens 10): nothing else is enqueued on this resource's deployment.
    assert raw.headers["deployment-enqueued-tokens"] == "57"
    assert raw.headers["deployment-maximum-enqueued-tokens"] == "1000000000"
    batch = wait_ended(client, raw.parse().id)
    assert batch.status == "completed" and batch.expires_at is None
    assert batch.request_counts is not None and (batch.request_counts.completed, batch.request_counts.failed) == (3, 0)
    assert batch.output_file_id is not None and batch.error_file_id is not None
    assert client.files.content(batch.error_file_id).content == b""  # Azure: always an error file
    for line in read_lines(client, batch.output_file_id):
        assert "id" not in line and line["error"] is None
        body = line["response"]["body"]
        assert body["usage"] == LINE_USAGE
        assert body["prompt_filter_results"][0]["content_filter_results"]["hate"] == {"filtered": False,
                                                                                     "severity": "safe"}
        assert body["choices"][0]["content_filter_results"]["violence"]["severity"] == "safe"
    # Each resource has its own files: the other one does not know this upload.
    other = azure(stack, "westus" if resource == "eastus" else "eastus")
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(uploaded.id)


def test_azure_v1_form_with_the_plain_client_and_an_entra_token(stack: EmulatorStack) -> None:
    for client in (keep(openai.OpenAI(base_url=stack.azure_endpoint("westus") + "/openai/v1",
                                      api_key=stack.state.azure_key, max_retries=0)),
                   keep(openai.AzureOpenAI(azure_endpoint=stack.azure_endpoint("westus"), api_version=API_VERSION,
                                           azure_ad_token=stack.issue_token(), max_retries=0))):
        data = jsonl([{"custom_id": "e", "method": "POST", "url": "/embeddings",
                       "body": {"model": "text-embedding-3-small-batch", "input": "Hello world!"}}])
        batch = run_batch(client, data, "/embeddings")
        assert batch.status == "completed" and batch.output_file_id is not None
        [line] = read_lines(client, batch.output_file_id)
        assert line["response"]["body"]["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_cancel_keeps_the_lines_answered_so_far(stack: EmulatorStack, client: openai.OpenAI) -> None:
    stack.state.job_seconds = 6.0  # 20 lines over 3 s of in_progress
    try:
        uploaded = client.files.create(file=("input.jsonl", chat_lines("gpt-4o-mini", 20)), purpose="batch")
        created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
    finally:
        stack.state.job_seconds = 0.6
    while (batch := client.batches.retrieve(created.id)).request_counts.completed < 3:  # type: ignore[union-attr]
        assert batch.status in ("validating", "in_progress"), batch.status
        time.sleep(0.02)
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    batch = wait_ended(client, created.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None and batch.completed_at is None
    assert batch.request_counts is not None and batch.request_counts.total == 20
    done = batch.request_counts.completed
    assert 3 <= done < 20 and batch.request_counts.failed == 0
    assert batch.output_file_id is not None
    assert len(read_lines(client, batch.output_file_id)) == done
    assert batch.usage is not None and batch.usage.input_tokens == 9 * done
    with pytest.raises(openai.ConflictError, match="Cannot cancel a batch with status 'cancelled'"):
        client.batches.cancel(created.id)


def test_a_bad_input_file_fails_the_batch_with_errors_data(client: openai.OpenAI) -> None:
    good = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}
    data = jsonl([good, "{not json", {**good}, {**good, "custom_id": "b", "url": "/v1/embeddings"},
                  {**good, "custom_id": "c", "body": {**good["body"], "model": "gpt-4o"}}])
    batch = run_batch(client, data, "/v1/chat/completions")
    assert batch.status == "failed" and batch.failed_at is not None and batch.output_file_id is None
    assert batch.errors is not None and batch.errors.data is not None
    assert [(e.code, e.line) for e in batch.errors.data] == [
        ("invalid_json_line", 2), ("duplicate_custom_id", 3), ("url_mismatch", 4), ("model_mismatch", 5)]
    empty = run_batch(client, b"\n\n", "/v1/chat/completions")
    assert empty.errors is not None and [(e.code, e.line) for e in empty.errors.data or []] == [("empty_file", None)]
    unknown = run_batch(client, jsonl([{**good, "body": {**good["body"], "model": "gpt-9"}}]), "/v1/chat/completions")
    assert unknown.errors is not None and [e.code for e in unknown.errors.data or []] == ["model_not_found"]


def test_wrong_keys_are_401_in_each_dialect(stack: EmulatorStack) -> None:
    with pytest.raises(openai.AuthenticationError) as openai_error:
        keep(openai.OpenAI(base_url=stack.openai_base_url, api_key="sk-wrong-key", max_retries=0)).files.list()
    assert openai_error.value.code == "invalid_api_key"
    assert openai_error.value.body == {"message": "Incorrect API key provided: sk-********-key. You can find your "
                                                  "API key at https://platform.openai.com/account/api-keys.",
                                       "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}
    with pytest.raises(openai.AuthenticationError) as azure_error:
        keep(openai.AzureOpenAI(azure_endpoint=stack.azure_endpoint("eastus"), api_key="0" * 32,
                                api_version=API_VERSION, max_retries=0)).batches.list()
    assert azure_error.value.body == {"code": "401", "message": (
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
        "active subscription and use a correct regional API endpoint for your resource.")}


def test_azure_wants_a_known_api_version(stack: EmulatorStack) -> None:
    url = stack.azure_endpoint("eastus") + "/openai/batches"
    headers = {"api-key": stack.state.azure_key}
    missing = httpx.get(url, headers=headers)
    assert (missing.status_code, missing.json()) == (404, {"error": {"code": "404", "message": "Resource not found"}})
    unknown = httpx.get(url, headers=headers, params={"api-version": "2023-01-01"})
    assert (unknown.status_code, unknown.json()) == (
        400, {"error": {"code": "BadRequest", "message": "API version not supported"}})
    assert httpx.get(url, headers=headers, params={"api-version": API_VERSION}).status_code == 200


def test_injected_faults_reach_the_openai_and_azure_stand_ins_by_path(stack: EmulatorStack,
                                                                      client: openai.OpenAI) -> None:
    stack.reset()
    stack.set_faults(errors=[{"status": 429, "count": 1, "path": "/openai-api/", "method": "list",
                              "retry_after": 0},
                             {"status": 503, "count": 1, "path": "/azure/westus/"},
                             {"status": 500, "rate": 1.0}])  # no path: Vertex only, never these stand-ins
    try:
        with pytest.raises(openai.RateLimitError) as limited:
            client.files.list()
        assert limited.value.response.headers["retry-after"] == "0"
        assert limited.value.code == "rate_limit_exceeded"
        assert client.files.list().object == "list"  # the rule's one failure is spent
        with pytest.raises(openai.InternalServerError) as unavailable:
            azure(stack, "westus").batches.list()
        assert unavailable.value.status_code == 503
        assert azure(stack, "westus", max_retries=0).batches.list().object == "list"
        retried = keep(openai.OpenAI(base_url=stack.openai_base_url, api_key="sk-test-fixed", max_retries=2))
        stack.set_faults(errors=[{"status": 429, "count": 1, "path": "/openai-api/v1/batches", "retry_after": 0}])
        assert retried.batches.list().object == "list"  # the SDK retried after Retry-After: 0
        statuses = [entry["status"] for entry in stack.request_log if entry["path"] == "/openai-api/v1/batches"]
        assert statuses == [429, 200]
    finally:
        stack.reset()


def test_azure_quota_fail_fast_and_fail_batch() -> None:
    with EmulatorStack(job_seconds=30, azure_token_quota=100) as stack:
        client = azure(stack, "eastus")
        lines = chat_lines("gpt-4o-mini-batch", 3, url="/chat/completions")  # 57 enqueued tokens
        file_id = client.files.create(file=("input.jsonl", lines), purpose="batch").id
        first = client.batches.with_raw_response.create(input_file_id=file_id, endpoint="/chat/completions",
                                                        completion_window="24h")
        assert (first.headers["deployment-enqueued-tokens"], first.headers["deployment-maximum-enqueued-tokens"]) == (
            "57", "100")
        with pytest.raises(openai.BadRequestError) as refused:
            client.batches.create(input_file_id=file_id, endpoint="/chat/completions", completion_window="24h")
        assert refused.value.code == "token_limit_exceeded"
        assert "configured limit of 100 for the deployment 'gpt-4o-mini-batch'" in refused.value.message
        # The quota is per deployment of each resource: westus has nothing enqueued.
        west = azure(stack, "westus")
        west_file = west.files.create(file=("input.jsonl", lines), purpose="batch").id
        west_reply = west.batches.with_raw_response.create(input_file_id=west_file, endpoint="/chat/completions",
                                                           completion_window="24h")
        assert west_reply.headers["deployment-enqueued-tokens"] == "57"
        # Cancelling the first frees its tokens.
        client.batches.cancel(first.parse().id)
        wait_ended(client, first.parse().id)
        again = client.batches.with_raw_response.create(input_file_id=file_id, endpoint="/chat/completions",
                                                        completion_window="24h")
        assert again.headers["deployment-enqueued-tokens"] == "57"

        stack.state.azure["eastus"].quota_mode = "fail-batch"
        failing = client.batches.with_raw_response.create(input_file_id=file_id, endpoint="/chat/completions",
                                                          completion_window="24h")
        assert failing.status_code == 201 and failing.headers["deployment-enqueued-tokens"] == "57"
        batch = failing.parse()
        assert batch.status == "failed" and batch.failed_at is not None
        assert batch.errors is not None and [(e.code, e.line) for e in batch.errors.data or []] == [
            ("token_limit_exceeded", None)]
