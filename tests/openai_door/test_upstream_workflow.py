"""The seed workflow through the door with the real `openai` SDK, for a model the catalog serves on OpenAI and one
it serves on Azure: the caller's lines reach the deployment unchanged but for the model (Azure: its deployment
name), every output line keeps its custom_id, the ledger holds the exact tokens, its cost equals one computed here
from the output lines and the published batch rates, and no upstream id reaches the caller. The Azure model runs
from `openai.AzureOpenAI` pointed at the proxy too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest

from proxy.ledger.models import OpenAIFile
from proxy.money import to_decimal_usd
from tests.emulator.openai_support import SYSTEM, USER
from tests.openai_door.conftest import closed_with_the_door, jsonl, sdk, wait_for, wait_metered
from tests.openai_door.upstream_support import (
    AZURE_DEPLOYMENT,
    AZURE_MODEL,
    OPENAI_DEPLOYMENT,
    OPENAI_MODEL,
    job_of,
    upstream_door,
)
from tests.providers.vertex.conftest import Proxied

pytestmark = pytest.mark.slow
# (model, provider, deployment, the model upstream, the caller's client): `openai.OpenAI`, or `openai.AzureOpenAI`
# pointed at the proxy's Azure-shaped routes
CASES = [(OPENAI_MODEL, "openai", OPENAI_DEPLOYMENT, OPENAI_MODEL, "OpenAI"),
         (AZURE_MODEL, "azure", AZURE_DEPLOYMENT, "gpt-4o-mini-batch", "OpenAI"),
         # eastus still reports the previous case's tokens as enqueued (placement trusts Azure's figure for 5
         # minutes), so this batch goes to the deployment with the most headroom after it, westus
         (AZURE_MODEL, "azure", "azure-westus-gpt-4o-mini", "gpt-4o-mini-batch", "AzureOpenAI")]
COUNT = 4
# Published batch rates, USD per 1M tokens (input, cached input, output): OpenAI's batch = half of standard input and
# output; cached input at the standard cached rate; Azure taken equal to OpenAI (pricing/README.md).
BATCH_RATES = {"gpt-4.1-mini": (Decimal("0.20"), Decimal("0.10"), Decimal("0.80")),
               "gpt-4o-mini": (Decimal("0.075"), Decimal("0.075"), Decimal("0.30"))}


def line_cost(model: str, usage: dict[str, Any]) -> Decimal:
    """One output line's cost from its `usage`: uncached input, cached input, completion (reasoning included)."""
    rate_in, rate_cached, rate_out = BATCH_RATES[model]
    cached = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    return ((usage["prompt_tokens"] - cached) * rate_in + cached * rate_cached
            + usage["completion_tokens"] * rate_out) / Decimal(1_000_000)


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    yield from upstream_door(tmp_path_factory.mktemp("upstreams"))


def lines(model: str) -> bytes:
    """COUNT chat lines of 9 prompt tokens and 10 completion tokens each (the stand-ins' token rule)."""
    return jsonl(*({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": model, "max_tokens": 10, "temperature": 0.3,
                             "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]}}
                   for i in range(COUNT)))


def uploads(door: Proxied, api: str) -> list[dict[str, Any]]:
    """The batch files the proxy uploaded to a stand-in, as the upstream received them (multipart bodies)."""
    return [e for e in door.stack.request_log if e.get("api", "").startswith(api) and e["method"] == "POST"
            and str(e["path"]).endswith("/files")]


def client_of(door: Proxied, kind: str) -> openai.OpenAI:
    """The caller's client, changing only its base URL (or Azure endpoint) and key."""
    if kind == "AzureOpenAI":
        return closed_with_the_door(openai.AzureOpenAI(azure_endpoint=door.proxy.url, api_key=door.keys["team-a"],
                                                       api_version="2024-10-21", max_retries=0, timeout=30))
    return sdk(door)


@pytest.mark.parametrize(("model", "provider", "deployment", "upstream_model", "kind"), CASES)
def test_the_seed_workflow_runs_on_the_models_deployment(door: Proxied, model: str, provider: str, deployment: str,
                                                         upstream_model: str, kind: str) -> None:
    client = client_of(door, kind)
    data = lines(model)
    uploaded = client.files.create(file=("batch.jsonl", data), purpose="batch")
    with door.sessions() as session:
        row = session.get(OpenAIFile, uploaded.id)
        assert row is not None and (row.provider, row.lines) == (provider, COUNT)
    assert client.files.content(uploaded.id).content == data  # the caller's bytes, kept unchanged

    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                    completion_window="24h", metadata={"run": "seed"})
    assert (created.status, created.metadata, created.model) == ("validating", {"run": "seed"}, model)
    job = job_of(door, created.id)
    assert (job.provider, job.deployment, job.project, job.location) == (provider, deployment, deployment, provider)
    upstream_id = job.name.rsplit("/", 1)[1]
    assert job.name == f"{provider}/{deployment}/batches/{upstream_id}"

    sent = uploads(door, provider)[-1]["body"]
    sent_lines = [json.loads(line) for line in str(sent).splitlines() if line.startswith("{")]
    assert [line["body"]["model"] for line in sent_lines] == [upstream_model] * COUNT
    assert [line["custom_id"] for line in sent_lines] == [f"line-{i}" for i in range(COUNT)]
    assert {line["body"]["temperature"] for line in sent_lines} == {0.3}  # the rest passes unchanged

    done = wait_for(client, created.id, ("completed", "failed"))
    assert done.status == "completed", done.errors
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (COUNT, COUNT, 0)
    assert done.output_file_id is not None and done.error_file_id is None
    out = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(line["custom_id"] for line in out) == [f"line-{i}" for i in range(COUNT)]
    assert {line["response"]["status_code"] for line in out} == {200}
    assert [line["response"]["body"]["usage"]["prompt_tokens"] for line in out] == [9] * COUNT
    assert [line["response"]["body"]["usage"]["completion_tokens"] for line in out] == [10] * COUNT

    metered = wait_metered(door, client, created.id)
    assert metered.usage is not None
    assert (metered.usage.input_tokens, metered.usage.output_tokens) == (9 * COUNT, 10 * COUNT)
    job = job_of(door, created.id)
    assert (job.prompt_tokens, job.cached_tokens, job.candidates_tokens, job.thoughts_tokens) == (36, 0, 40, 0)
    assert (job.lines_succeeded, job.lines_failed, job.lines_malformed) == (COUNT, 0, 0)
    expected = sum((line_cost(model, line["response"]["body"]["usage"]) for line in out), Decimal(0))
    assert job.cost_status == "priced" and job.cost_pico is not None
    assert to_decimal_usd(job.cost_pico) == expected
    # 36 prompt and 40 completion tokens: gpt-4.1-mini 36 x 0.20 + 40 x 0.80; gpt-4o-mini 36 x 0.075 + 40 x 0.30
    assert expected == {"gpt-4.1-mini": Decimal("0.0000392"), "gpt-4o-mini": Decimal("0.0000147")}[model]

    shown = json.dumps([client.batches.retrieve(created.id).model_dump(), client.files.list().model_dump(),
                        client.batches.list().model_dump()])
    assert upstream_id not in shown
    upstream_files = {str(json.loads(e["body"] or "{}").get("input_file_id", "")) for e in door.stack.request_log
                      if str(e["path"]).endswith("/batches") and e["method"] == "POST" and e["body"]}
    assert not any(file_id and file_id in shown for file_id in upstream_files)
