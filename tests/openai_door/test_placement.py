"""Placement on the OpenAI door (issue 16), on the emulator: three Azure deployments of gpt-4o-mini with small
quotas. A burst of batches is spread within each quota; a deployment answering 5xx or `token_limit_exceeded` is
routed around and the caller never sees it; with every deployment full the caller gets 429 with Retry-After and
nothing is left upstream; retrieve, cancel and content reach the deployment that holds the batch from another
replica."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select

from proxy.emulator.catalog import render
from proxy.emulator.stack import EmulatorStack
from proxy.ledger.engine import make_engine, make_sessionmaker
from proxy.ledger.models import Job, Placement, PlacementTarget
from proxy.tenancy.keys import create_key
from tests.openai_door.conftest import chat_line, door_env, jsonl, said, sdk, wait_for
from tests.providers.vertex.conftest import Proxied
from tests.support.postgres import LocalPostgres
from tests.support.proxy_server import ProxyServer
from tests.support.replicas import running_replicas

pytestmark = pytest.mark.slow

QUOTA = 1000
MODEL = "gpt-4o-mini"
RESOURCES = ("eastus", "westus", "swedencentral")
DEPLOYMENTS = [f"azure-{resource}-{MODEL}" for resource in RESOURCES]
# One line of 100 queued tokens: "Hello world!" is 3 prompt tokens, plus its max_tokens
BATCH = jsonl(chat_line("line-1", "Hello world!", model=MODEL, max_tokens=97))


def three_azure(stack: EmulatorStack) -> Path:
    """The emulator's three Azure deployments of gpt-4o-mini, and nothing else."""
    tables = [t for t in tomllib.loads(stack.models_path.read_text())["deployment"]
              if t["provider"] == "azure" and t["model"] == MODEL]
    target = stack.models_path.with_name("three-azure.toml")
    target.write_text(render(iter(tables)))
    return target.resolve()


def _door(tmp: Path, **options: Any) -> Iterator[Proxied]:
    yield from door_env(tmp, models_file=three_azure, azure_token_quota=QUOTA, job_seconds=3600, **options)


@pytest.fixture
def door(tmp_path: Path) -> Iterator[Proxied]:
    yield from _door(tmp_path)


def _create(env: Proxied, who: str = "team-a") -> Any:
    client = sdk(env, who)
    file_id = client.files.create(file=("batch.jsonl", BATCH), purpose="batch").id
    return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")


def _placed(env: Proxied) -> Counter[str]:
    with env.sessions() as session:
        return Counter(str(job.deployment) for job in session.scalars(select(Job)))


def _upstream(env: Proxied, resource: str) -> tuple[int, int, int]:
    """(files, batches, enqueued tokens) the stand-in's resource holds."""
    standin = env.stack.state.azure[resource]
    return (len(standin.files.newest_first()), len(standin.batches.all()),
            standin.batches.enqueued("gpt-4o-mini-batch"))


def test_a_burst_is_spread_within_each_quota_then_429_with_nothing_left_upstream(door: Proxied) -> None:
    with ThreadPoolExecutor(max_workers=30) as pool:
        batches = list(pool.map(lambda _: _create(door), range(30)))
    assert [b.status for b in batches] == ["validating"] * 30
    assert _placed(door) == {name: 10 for name in DEPLOYMENTS}
    assert [_upstream(door, resource) for resource in RESOURCES] == [(10, 10, QUOTA)] * 3
    with pytest.raises(openai.RateLimitError) as refused:
        _create(door)
    assert refused.value.response.headers["retry-after"] == "60"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert refused.value.code == "token_limit_exceeded"
    assert said(refused.value) == (
        "No deployment of gpt-4o-mini can take this batch of 100 queued tokens now: azure-eastus-gpt-4o-mini has "
        "0 of 1000 queued tokens free; azure-westus-gpt-4o-mini has 0 of 1000 queued tokens free; "
        "azure-swedencentral-gpt-4o-mini has 0 of 1000 queued tokens free.")
    assert [_upstream(door, resource) for resource in RESOURCES] == [(10, 10, QUOTA)] * 3  # nothing new upstream


def test_a_deployment_answering_5xx_is_routed_around_and_cools_down(door: Proxied) -> None:
    door.stack.set_faults(errors=[{"status": 503, "rate": 1.0, "path": "/azure/westus/"}])
    batches = [_create(door) for _ in range(6)]
    assert [b.status for b in batches] == ["validating"] * 6
    assert _placed(door) == {"azure-eastus-gpt-4o-mini": 3, "azure-swedencentral-gpt-4o-mini": 3}
    with door.sessions() as session:
        west = session.get(PlacementTarget, "azure-westus-gpt-4o-mini")
        assert west is not None and (west.failures, west.last_outcome) == (3, "failed") and west.open_until
        tried = Counter(p.target for p in session.scalars(select(Placement).where(Placement.state == "released")))
    assert tried == {"azure-westus-gpt-4o-mini": 3}  # then its breaker opened: not tried again
    assert _upstream(door, "westus") == (0, 0, 0)


def test_a_deployment_full_upstream_is_routed_around_and_its_file_deleted(door: Proxied) -> None:
    # another client of eastus fills it: the proxy's ledger does not know
    direct = openai.AzureOpenAI(azure_endpoint=door.stack.azure_endpoint("eastus"), api_version="2024-10-21",
                                api_key=door.stack.env["VBP_EMULATOR_AZURE_KEY"], max_retries=0)
    other = jsonl(chat_line("x", "Hello world!", model="gpt-4o-mini-batch", max_tokens=947))
    uploaded = direct.files.create(file=("other.jsonl", other), purpose="batch")
    direct.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h")
    direct.close()
    batches = [_create(door) for _ in range(3)]
    assert [b.status for b in batches] == ["validating"] * 3
    assert _placed(door) == {"azure-westus-gpt-4o-mini": 2, "azure-swedencentral-gpt-4o-mini": 1}
    assert _upstream(door, "eastus") == (1, 1, 950)  # only the other client's: the refused create's file is gone
    with door.sessions() as session:
        east = session.get(PlacementTarget, "azure-eastus-gpt-4o-mini")
        assert east is not None and (east.last_outcome, east.reported_enqueued) == ("full", QUOTA)


def test_follow_ups_reach_the_deployment_from_another_replica(door: Proxied, tmp_path: Path) -> None:
    ids = [_create(door).id for _ in range(3)]
    other = ProxyServer(dataclasses.replace(door.proxy.app.settings, poller_enabled=False)).start()
    try:
        client = sdk(door, base_url=other.url)
        assert [client.batches.retrieve(batch_id).id for batch_id in ids] == ids
        client.batches.cancel(ids[1])
    finally:
        other.stop()
    cancels = [e["path"] for e in door.stack.request_log if str(e["path"]).endswith("/cancel")]
    with door.sessions() as session:
        deployment = {job.batch_id: job.deployment for job in session.scalars(select(Job))}
    resource = str(deployment[ids[1]]).removeprefix("azure-").removesuffix("-gpt-4o-mini")
    assert len(cancels) == 1 and cancels[0].startswith(f"/azure/{resource}/openai/batches/")


def test_output_content_reaches_each_deployment_from_another_replica(tmp_path: Path) -> None:
    env = door_env(tmp_path, models_file=three_azure, azure_token_quota=QUOTA, job_seconds=1)
    door = next(env)
    try:
        ids = [_create(door).id for _ in range(3)]
        assert sorted(_placed(door)) == sorted(DEPLOYMENTS)  # one on each: the most headroom goes first
        done = [wait_for(sdk(door), batch_id, ("completed", "failed")) for batch_id in ids]
        assert [batch.status for batch in done] == ["completed"] * 3
        # a fresh process that knows only the ledger: a restarted proxy, or another replica
        other = ProxyServer(dataclasses.replace(door.proxy.app.settings, poller_enabled=False)).start()
        try:
            client = sdk(door, base_url=other.url)
            for batch in done:
                assert client.batches.retrieve(batch.id).output_file_id == batch.output_file_id
                lines = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
                assert [(line["custom_id"], line["response"]["status_code"]) for line in lines] == [("line-1", 200)]
        finally:
            other.stop()
    finally:
        env.close()


@pytest.mark.postgres
def test_follow_ups_reach_the_deployment_on_postgresql_replicas(postgres_server: LocalPostgres,
                                                                 tmp_path: Path) -> None:
    with running_replicas(postgres_server, tmp_path, bucket="placement", job_seconds=3600) as replicas:
        engine = make_engine(replicas.url)
        try:
            with make_sessionmaker(engine).begin() as session:
                key = create_key(session, team="team-a")[1]
            first, second = (openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0,
                                           timeout=60) for port in replicas.ports)
            file_id = first.files.create(file=("batch.jsonl", BATCH), purpose="batch").id
            ids = [first.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                        completion_window="24h").id for _ in range(3)]
            # the emulator's catalog: gpt-4o-mini on OpenAI (no quota: a spill-over) and on three Azure resources
            assert [second.batches.retrieve(batch_id).id for batch_id in ids] == ids
            second.batches.cancel(ids[2])
            first.close()
            second.close()
            with make_sessionmaker(engine)() as session:
                deployment = {job.batch_id: job.deployment for job in session.scalars(select(Job))}
        finally:
            engine.dispose()
        assert sorted(deployment.values()) == sorted(DEPLOYMENTS)
        resource = str(deployment[ids[2]]).removeprefix("azure-").removesuffix("-gpt-4o-mini")
        cancels = [e["path"] for e in replicas.stack.request_log if str(e["path"]).endswith("/cancel")]
        assert len(cancels) == 1 and cancels[0].startswith(f"/azure/{resource}/openai/batches/")
