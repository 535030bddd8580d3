"""Upstream trouble: timeouts, a dead upstream, and injected 429/503 replies, seen through the proxy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from proxy.emulator.storage import free_port
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.ledger.models import Job
from proxy.settings import Settings
from proxy.tenancy.keys import create_key
from tests.providers.vertex.conftest import LOCATION, Proxied, running
from tests.support.proxy_server import ProxyServer

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

JOBS = f"/v1/projects/fault-project/locations/{LOCATION}/batchPredictionJobs"
BODY = {"displayName": "f", "model": "publishers/google/models/gemini-2.5-flash",
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://faults/in.jsonl"]}},
        "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://faults/out/"}}}


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    with running(tmp_path_factory.mktemp("faults"), upstream_timeout=0.5,
                                           retry_attempts=4, retry_max_seconds=2) as env:
        yield env


def _calls(env: Proxied, method: str) -> int:
    return sum(1 for c in env.emulator_calls() if c["method"] == method)


def test_slow_upstream_is_504(slow: Proxied) -> None:
    slow.stack.set_faults(latency=1.5)
    try:
        with slow.client() as client:
            reply = client.get(JOBS)
    finally:
        slow.stack.reset()
    assert reply.status_code == 504
    assert reply.json()["error"]["status"] == "DEADLINE_EXCEEDED"


def test_injected_503_on_get_is_retried_to_success(slow: Proxied) -> None:
    slow.stack.reset()
    slow.stack.set_faults(errors=[{"status": 503, "count": 2, "method": "list"}])
    with slow.client() as client:
        reply = client.get(JOBS)
    assert reply.status_code == 200, reply.text
    assert _calls(slow, "GET") == 3
    slow.stack.reset()


def test_injected_429_on_get_until_the_attempts_run_out_passes_through(slow: Proxied) -> None:
    slow.stack.reset()
    slow.stack.set_faults(errors=[{"status": 429, "count": 10, "method": "list"}])
    with slow.client() as client:
        reply = client.get(JOBS)
    assert reply.status_code == 429
    assert reply.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert _calls(slow, "GET") == 4
    slow.stack.reset()


def test_injected_503_on_create_is_passed_through_once_and_not_recorded(slow: Proxied) -> None:
    slow.stack.reset()
    slow.stack.set_faults(errors=[{"status": 503, "count": 1, "method": "create"}])
    with slow.sessions() as session:
        before = session.scalar(select(func.count(Job.id)))
    with slow.client() as client:
        reply = client.post(JOBS, json=BODY)
    assert reply.status_code == 503
    assert reply.json()["error"]["status"] == "UNAVAILABLE"
    assert "injected by the emulator" in reply.json()["error"]["message"]  # the upstream body, unchanged
    assert _calls(slow, "POST") == 1
    with slow.sessions() as session:
        assert session.scalar(select(func.count(Job.id))) == before
    slow.stack.reset()


def test_upstream_down_is_503(tmp_path: Path, slow: Proxied) -> None:
    url = f"sqlite:///{tmp_path / 'down.db'}"
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    with sessions.begin() as session:
        secret = create_key(session, team="t")[1]
    settings = Settings(database_url=url, vertex_base_url=f"http://127.0.0.1:{free_port()}", poller_enabled=False,
                        retry_attempts=2, retry_max_seconds=1, team_gcs_prefixes=("gs://faults/",))
    proxy = ProxyServer(settings).start()
    try:
        reply = httpx.get(proxy.url + JOBS, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        created = httpx.post(proxy.url + JOBS, headers={"Authorization": f"Bearer {secret}"}, json=BODY, timeout=30)
    finally:
        proxy.stop()
    assert reply.status_code == 503 and reply.json()["error"]["status"] == "UNAVAILABLE"
    assert created.status_code == 503 and json.loads(created.content)["error"]["status"] == "UNAVAILABLE"
    with sessions() as session:
        assert session.scalar(select(func.count(Job.id))) == 0
