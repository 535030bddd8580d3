"""Placement of the OpenAI door's Gemini batches (issue 16), on the emulator: two Vertex deployments of
gemini-2.5-flash-lite (one project, us-central1 and europe-west4) with small quotas. Batches spread by headroom;
a deployment answering 503 is routed around and the caller sees one batch; with every deployment refusing the
caller gets 429 with Retry-After and no job exists upstream; retrieve, cancel and content of a placed batch
work from a second replica."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select

from proxy.budgets import store
from proxy.budgets.store import usd_to_pico
from proxy.clock import utcnow
from proxy.emulator.catalog import render
from proxy.emulator.stack import EmulatorStack
from proxy.ledger.models import BudgetReservation, Job, OpenAIBatch, Placement
from tests.openai_door.conftest import chat_line, door_env, jsonl, said, sdk, wait_for
from tests.providers.vertex.conftest import Proxied
from tests.support.proxy_server import ProxyServer

pytestmark = pytest.mark.slow

MODEL = "gemini-2.5-flash-lite"
LOCATIONS = ("us-central1", "europe-west4")
DEPLOYMENTS = [f"vertex-{location}" for location in LOCATIONS]
BATCH = jsonl(chat_line("line-1", "Hello world!"))
TOKENS = 3  # the batch's queued tokens: the budgets' estimate's input tokens of "Hello world!"
QUOTA = 2 * TOKENS  # each deployment holds two such batches


def two_vertex(quota: int | None) -> Any:
    """A catalog maker: the two Vertex deployments of MODEL in the emulator's project (it serves any location)."""
    def make(stack: EmulatorStack) -> Path:
        tables = [{"name": f"vertex-{location}", "provider": "vertex", "model": MODEL, "project": stack.project_id,
                   "location": location, **({"enqueued_token_quota": quota} if quota else {})}
                  for location in LOCATIONS]
        target = stack.models_path.with_name("two-vertex.toml")
        target.write_text(render(iter(tables)))
        return target.resolve()
    return make


@pytest.fixture
def door(tmp_path: Path) -> Iterator[Proxied]:
    yield from door_env(tmp_path, models_file=two_vertex(QUOTA), job_seconds=3600)


def _create(env: Proxied, who: str = "team-a") -> Any:
    client = sdk(env, who)
    file_id = client.files.create(file=("batch.jsonl", BATCH), purpose="batch").id
    return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")


def _placed(env: Proxied) -> Counter[str]:
    """How many recorded jobs each deployment holds, checked against the location the job is in."""
    with env.sessions() as session:
        jobs = list(session.scalars(select(Job)))
    assert all(job.deployment == f"vertex-{job.location}" for job in jobs)
    return Counter(str(job.deployment) for job in jobs)


def _upstream(env: Proxied) -> Counter[str]:
    """How many jobs the emulator holds in each location."""
    return Counter(job.location for job in env.stack.state.jobs.all())


def test_batches_spread_over_the_vertex_deployments_by_headroom_then_429(door: Proxied) -> None:
    batches = [_create(door) for _ in range(4)]
    assert [b.status for b in batches] == ["validating"] * 4
    assert _placed(door) == {name: 2 for name in DEPLOYMENTS}
    assert _upstream(door) == {location: 2 for location in LOCATIONS}
    with door.sessions() as session:
        assert sorted(p.tokens for p in session.scalars(select(Placement))) == [TOKENS] * 4
    with pytest.raises(openai.RateLimitError) as refused:
        _create(door)
    assert refused.value.response.headers["retry-after"] == "60"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert refused.value.code == "token_limit_exceeded"
    assert said(refused.value) == (
        f"No deployment of {MODEL} can take this batch of {TOKENS} queued tokens now: vertex-us-central1 has "
        f"0 of {QUOTA} queued tokens free; vertex-europe-west4 has 0 of {QUOTA} queued tokens free.")
    assert _upstream(door) == {location: 2 for location in LOCATIONS}  # nothing new upstream


def test_a_deployment_answering_503_is_routed_around_and_the_caller_sees_one_batch(tmp_path: Path) -> None:
    for env in door_env(tmp_path, models_file=two_vertex(None), job_seconds=3600):
        project = env.stack.project_id
        env.stack.set_faults(errors=[{"status": 503, "rate": 1.0, "method": "create",
                                      "path": f"/v1/projects/{project}/locations/europe-west4/"}])
        batches = [_create(env) for _ in range(4)]
        assert [b.status for b in batches] == ["validating"] * 4
        assert _placed(env) == {"vertex-us-central1": 4}
        assert _upstream(env) == {"us-central1": 4}
        with env.sessions() as session:
            released = Counter(p.target for p in session.scalars(select(Placement).where(Placement.state ==
                                                                                         "released")))
            assert session.scalars(select(OpenAIBatch.errors)).all() == [None] * 4
        # without quotas the least queued goes first: europe-west4 was tried until its breaker opened (3 failures)
        assert released == {"vertex-europe-west4": 3}


def test_every_deployment_refusing_answers_429_with_nothing_upstream_and_the_reservation_released(
        tmp_path: Path) -> None:
    for env in door_env(tmp_path, models_file=two_vertex(QUOTA), job_seconds=3600):
        with env.sessions.begin() as session:  # a budget, so that the create holds a reservation
            store.set_budget(session, actor="test", team="team-a", key_id=None, limit_pico=usd_to_pico("100"),
                             period="total", now=utcnow())
        project = env.stack.project_id
        env.stack.set_faults(errors=[{"status": 503, "rate": 1.0, "method": "create",
                                      "path": f"/v1/projects/{project}/locations/{location}/"}
                                     for location in LOCATIONS])
        with pytest.raises(openai.RateLimitError) as refused:
            _create(env)
        assert refused.value.code == "rate_limit_exceeded"
        assert refused.value.response.headers["x-should-retry"] == "false"
        assert said(refused.value) == (
            f"No deployment of {MODEL} can take this batch of {TOKENS} queued tokens now (vertex-europe-west4, "
            "vertex-us-central1 refused it). vertex-us-central1: 503 The service is currently unavailable (injected "
            "by the emulator). vertex-europe-west4: 503 The service is currently unavailable (injected by the "
            "emulator).")
        assert _upstream(env) == {}
        with env.sessions() as session:
            assert [r.state for r in session.scalars(select(BudgetReservation))] == ["released"]
            assert sorted(p.state for p in session.scalars(select(Placement))) == ["released", "released"]


def test_follow_ups_of_a_placed_batch_work_from_a_second_replica(door: Proxied) -> None:
    ids = [_create(door).id for _ in range(2)]  # one on each deployment (equal headroom: catalog order, then the other)
    with door.sessions() as session:
        where = {job.batch_id: job.location for job in session.scalars(select(Job))}
    assert sorted(where.values()) == sorted(LOCATIONS)
    other = ProxyServer(dataclasses.replace(door.proxy.app.settings, poller_enabled=False)).start()
    try:
        client = sdk(door, base_url=other.url)
        assert [client.batches.retrieve(batch_id).id for batch_id in ids] == ids
        cancelled = client.batches.cancel(ids[1])
        assert cancelled.status == "cancelling"
        assert wait_for(client, ids[1], ("cancelled",)).status == "cancelled"
    finally:
        other.stop()
    cancels = [str(e["path"]) for e in door.stack.request_log if str(e["path"]).endswith(":cancel")]
    assert len(cancels) == 1 and f"/locations/{where[ids[1]]}/batchPredictionJobs/" in cancels[0]


def test_the_output_of_batches_placed_on_each_deployment_is_read_from_a_second_replica(tmp_path: Path) -> None:
    for env in door_env(tmp_path, models_file=two_vertex(QUOTA)):
        ids = [_create(env).id for _ in range(2)]
        with env.sessions() as session:
            assert sorted(job.location for job in session.scalars(select(Job))) == sorted(LOCATIONS)
        other = ProxyServer(dataclasses.replace(env.proxy.app.settings, poller_enabled=False)).start()
        try:
            client = sdk(env, base_url=other.url)
            for batch_id in ids:
                done = wait_for(client, batch_id, ("completed",))
                output = client.files.content(done.output_file_id or "").text.splitlines()
                assert [json.loads(line)["custom_id"] for line in output] == ["line-1"]
                assert json.loads(output[0])["response"]["status_code"] == 200
        finally:
            other.stop()
