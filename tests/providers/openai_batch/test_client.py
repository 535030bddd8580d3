"""The Files + Batches client on the emulator's OpenAI and Azure stand-ins: the whole workflow, and the faults it
survives (429 with Retry-After, 5xx, timeouts, resets), and a create whose reply is lost made exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from proxy.catalog.catalog import Catalog
from proxy.emulator.stack import EmulatorStack
from proxy.providers.openai_batch.client import OpenAIBatchClient
from proxy.providers.openai_batch.errors import UpstreamRefused
from proxy.upstream.retry import RetryPolicy
from tests.emulator.openai_support import chat_lines

pytestmark = pytest.mark.slow

DEPLOYMENTS = ("openai-gpt-4o-mini", "azure-eastus-gpt-4o-mini")
POLICY = RetryPolicy(attempts=4, max_seconds=5, base_delay=0.05, max_delay=0.2)


@pytest.fixture(autouse=True)
def _clean(stack: EmulatorStack) -> Iterator[None]:
    yield
    stack.reset()  # faults and the request log


def client_for(catalog: Catalog, name: str, **options: object) -> OpenAIBatchClient:
    deployment = catalog.named(name)
    assert deployment is not None
    return OpenAIBatchClient(deployment, policy=POLICY, **options)  # type: ignore[arg-type]


def prefix(name: str) -> str:
    return "/openai-api/" if name.startswith("openai") else "/azure/eastus/"


def calls(stack: EmulatorStack, name: str, method: str, path_end: str) -> list[dict[str, object]]:
    return [e for e in stack.request_log if str(e.get("path", "")).startswith(prefix(name))
            and e["method"] == method and str(e["path"]).endswith(path_end)]


def lines_for(catalog: Catalog, name: str, count: int) -> io.BytesIO:
    deployment = catalog.named(name)
    assert deployment is not None
    url = "/chat/completions" if deployment.provider == "azure" else "/v1/chat/completions"
    return io.BytesIO(chat_lines(deployment.upstream_model, count, url=url))


async def run_to_end(client: OpenAIBatchClient, batch_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while (batch := await client.get_batch(batch_id))["status"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    return batch


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_the_workflow_on_each_provider(stack: EmulatorStack, catalog: Catalog, name: str) -> None:
    async def scenario() -> None:
        async with client_for(catalog, name) as client:
            uploaded = await client.upload_file(lines_for(catalog, name, 3), filename="in.jsonl")
            endpoint = "/chat/completions" if "azure" in name else "/v1/chat/completions"
            created, headers = await client.create_batch(
                input_file_id=uploaded["id"], endpoint=endpoint, metadata={"vbp-batch": f"batch_t1{name}"},
                label="vbp-batch")
            if "azure" in name:  # Azure reports the deployment's queue on create
                assert headers["deployment-enqueued-tokens"] == str(3 * (9 + 10))
            batch = await run_to_end(client, created["id"])
            assert batch["status"] == "completed"
            assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
            sink = io.BytesIO()
            size = await client.download(str(batch["output_file_id"]), sink)
            rows = [json.loads(line) for line in sink.getvalue().splitlines()]
            assert size == len(sink.getvalue())
            assert sorted(r["custom_id"] for r in rows) == ["req-0", "req-1", "req-2"]
            assert {r["response"]["body"]["usage"]["completion_tokens"] for r in rows} == {10}
            found = await client.find_batch("vbp-batch", f"batch_t1{name}")
            assert found is not None and found["id"] == created["id"]

    asyncio.run(scenario())


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_a_429_is_retried_after_the_retry_after_asked(stack: EmulatorStack, catalog: Catalog, name: str) -> None:
    stack.set_faults(errors=[{"status": 429, "count": 1, "method": "create", "path": prefix(name),
                              "retry_after": 1}])

    async def scenario() -> float:
        async with client_for(catalog, name) as client:
            started = time.monotonic()
            await client.upload_file(lines_for(catalog, name, 1), filename="in.jsonl")
            return time.monotonic() - started

    assert asyncio.run(scenario()) >= 1.0
    assert [e["status"] for e in calls(stack, name, "POST", "/files")] == [429, 200]


@pytest.mark.parametrize("name", DEPLOYMENTS)
@pytest.mark.parametrize("fault", [{"status": 503}, {"status": 500}, {"fault": "reset"},
                                   {"fault": "timeout", "seconds": 3}])
def test_a_read_survives_5xx_resets_and_timeouts(stack: EmulatorStack, catalog: Catalog, name: str,
                                                 fault: dict[str, object]) -> None:
    async def scenario() -> str:
        async with client_for(catalog, name, timeout=1.0) as client:
            uploaded = await client.upload_file(lines_for(catalog, name, 1), filename="in.jsonl")
            stack.set_faults(errors=[{**fault, "count": 1, "method": "get", "path": prefix(name)}])
            return str((await client.get_batch_file(uploaded["id"]))["id"])

    assert asyncio.run(scenario()).startswith("file-")
    statuses = [e["status"] for e in calls(stack, name, "GET", "") if "/files/" in str(e["path"])]
    assert len(statuses) == 2 and statuses[-1] == 200


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_a_refusal_that_will_not_change_is_raised_at_once(stack: EmulatorStack, catalog: Catalog,
                                                          name: str) -> None:
    async def scenario() -> None:
        async with client_for(catalog, name) as client:
            await client.get_batch("batch_missing")

    with pytest.raises(UpstreamRefused) as caught:
        asyncio.run(scenario())
    assert (caught.value.status, caught.value.retryable) == (404, False)
    assert len(calls(stack, name, "GET", "/batches/batch_missing")) == 1


@pytest.mark.parametrize("name", DEPLOYMENTS)
@pytest.mark.parametrize("fault", [{"fault": "reset"}, {"fault": "timeout", "seconds": 3}, {"status": 503}])
def test_a_create_whose_reply_is_lost_is_found_not_made_twice(stack: EmulatorStack, catalog: Catalog, name: str,
                                                              fault: dict[str, object]) -> None:
    label = f"batch_lost_{name}_{fault.get('fault', fault.get('status'))}"

    async def scenario() -> str:
        async with client_for(catalog, name, timeout=1.0) as client:
            uploaded = await client.upload_file(lines_for(catalog, name, 1), filename="in.jsonl")
            stack.set_faults(errors=[{**fault, "count": 1, "method": "create", "path": prefix(name),
                                      "after_serving": True}])
            endpoint = "/chat/completions" if "azure" in name else "/v1/chat/completions"
            created, _ = await client.create_batch(input_file_id=uploaded["id"], endpoint=endpoint,
                                                   metadata={"vbp-batch": label}, label="vbp-batch")
            listed = [b async for b in client.list_batches() if (b.get("metadata") or {}).get("vbp-batch") == label]
            assert [b["id"] for b in listed] == [created["id"]]
            return str(created["id"])

    assert asyncio.run(scenario()).startswith("batch_")
    assert len(calls(stack, name, "POST", "/batches")) == 1  # the create went once; the lookup found it


class EmulatorEntra:
    """azure-identity's async credential protocol, with tokens from the emulator's OAuth2 issuer (which the Azure
    stand-in accepts in place of Microsoft Entra ID tokens); slow, so that concurrent requests overlap a refresh."""

    def __init__(self, stack: EmulatorStack, lifetime: float = 3600) -> None:
        self.stack = stack
        self.lifetime = lifetime
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: object) -> SimpleNamespace:
        self.scopes.append(scopes)
        await asyncio.sleep(0.2)
        return SimpleNamespace(token=self.stack.issue_token(), expires_on=time.time() + self.lifetime)


def test_entra_tokens_are_cached_and_refreshed_one_at_a_time(stack: EmulatorStack, catalog: Catalog) -> None:
    azure = catalog.named("azure-westus-gpt-4o-mini")
    assert azure is not None
    deployment = dataclasses.replace(azure, auth="entra", api_key_env="")
    credential = EmulatorEntra(stack)

    async def scenario() -> list[str]:
        async with OpenAIBatchClient(deployment, credential=credential, policy=POLICY) as client:
            uploaded = await client.upload_file(lines_for(catalog, "azure-westus-gpt-4o-mini", 1), filename="a.jsonl")
            files = await asyncio.gather(*(client.get_batch_file(uploaded["id"]) for _ in range(5)))
            return [str(f["id"]) for f in files]

    assert len(set(asyncio.run(scenario()))) == 1
    assert credential.scopes == [("https://cognitiveservices.azure.com/.default",)]  # one token for six calls
    sent = [e for e in stack.request_log if str(e["path"]).startswith("/azure/westus/")]
    assert len(sent) == 6 and {e["status"] for e in sent} == {200}
    assert all(str(e["headers"].get("authorization", "")).startswith("Bearer ") for e in sent)  # type: ignore[union-attr]
    assert not any("api-key" in e["headers"] for e in sent)  # type: ignore[operator]


def test_an_entra_token_near_its_expiry_is_refreshed(stack: EmulatorStack, catalog: Catalog) -> None:
    azure = catalog.named("azure-westus-gpt-4o-mini")
    assert azure is not None
    credential = EmulatorEntra(stack, lifetime=60)  # within the refresh margin: every call refreshes

    async def scenario() -> None:
        async with OpenAIBatchClient(dataclasses.replace(azure, auth="entra", api_key_env=""),
                                     credential=credential, policy=POLICY) as client:
            await client.get_batch_file((await client.upload_file(
                lines_for(catalog, "azure-westus-gpt-4o-mini", 1), filename="a.jsonl"))["id"])

    asyncio.run(scenario())
    assert len(credential.scopes) == 2
