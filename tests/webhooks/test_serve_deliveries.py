"""`vbp serve` processes deliver webhooks end to end: jobs run on the emulator, end and are metered, and every
terminal job and every metering reaches the receiver exactly once per endpoint (by webhook-id), while the receiver
fails the first tries, a proxy is killed mid-delivery (SIGKILL) and restarted, and two replicas share a ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.emulator.stack import EmulatorStack
from proxy.emulator.storage import free_port
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.ledger.models import Job, WebhookDelivery
from proxy.money import format_usd
from proxy.tenancy.keys import create_key
from proxy.webhooks.registration import add_endpoint
from tests.metering.completion.test_replicas import _serve
from tests.support.postgres import LocalPostgres
from tests.webhooks.conftest import LOOPBACK
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.slow
JOBS = "/v1/projects/hooks-project/locations/us-central1/batchPredictionJobs"


def _environment(stack: EmulatorStack, url: str) -> dict[str, str]:
    return {**os.environ, **stack.env, "VBP_DATABASE_URL": url, "VBP_POLL_INTERVAL": "0.3",
            "VBP_TEAM_GCS_PREFIXES": "gs://hooks/", "VBP_WEBHOOK_ALLOW_LOOPBACK": "true",
            "VBP_WEBHOOK_TIMEOUT": "2", "VBP_WEBHOOK_FIRST_RETRY_SECONDS": "0.2",
            # a job the killed proxy was metering is taken over soon
            "VBP_METERING_LEASE_SECONDS": "3"}


def _prepare(stack: EmulatorStack, sessions: sessionmaker[Session], receiver: Receiver) -> tuple[str, str]:
    """A team key, the team's endpoint (returns the key and the endpoint's secret), and an input file."""
    with sessions.begin() as session:
        key = create_key(session, team="team-a")[1]
        _, secret = add_endpoint(session, team="team-a", url=receiver.url, events=[], actor="test", policy=LOOPBACK)
    bucket = stack.storage_client().create_bucket("hooks")
    bucket.blob("in.jsonl").upload_from_string(
        json.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}}) + "\n")
    return key, secret


def _create(port: int, key: str, count: int) -> list[str]:
    body = {"model": "publishers/google/models/gemini-2.5-flash", "displayName": "hooked",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://hooks/in.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://hooks/o"}}}
    names = []
    for _ in range(count):
        reply = httpx.post(f"http://127.0.0.1:{port}{JOBS}", json=body, headers={"Authorization": f"Bearer {key}"},
                           timeout=30)
        assert reply.status_code == 200, reply.text
        names.append(reply.json()["name"])
    return names


def _wait(condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _check_exactly_once(receiver: Receiver, secret: str, names: list[str],
                        sessions: sessionmaker[Session]) -> dict[str, str]:
    """Every job's end and metering delivered, one webhook-id each; returns {webhook-id: type}."""
    want = {(kind, name) for name in names for kind in ("job.succeeded", "job.metered")}

    def all_delivered() -> bool:
        with sessions() as session:
            states = list(session.scalars(select(WebhookDelivery.state)))
        return len(states) == len(want) and set(states) == {"delivered"}

    _wait(all_delivered, "not every delivery was delivered")
    bodies = receiver.verified(secret)  # every 2xx'd request verified by the standardwebhooks library
    ids = {r.headers["webhook-id"]: (b["type"], b["data"]["job"]) for r, b in zip(receiver.delivered(), bodies,
                                                                                  strict=True)}
    assert set(ids.values()) == want and len(ids) == len(want)  # one id per (event, job), each of them delivered
    with sessions() as session:
        costs = {job.name: format_usd(job.cost_pico or 0) for job in session.scalars(select(Job))}
    assert {b["data"]["job"]: b["data"]["cost_usd"] for b in bodies if b["type"] == "job.metered"} == costs
    return {message_id: kind for message_id, (kind, _) in ids.items()}


def test_a_proxy_killed_mid_delivery_and_restarted_delivers_everything_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    stack = EmulatorStack(job_seconds=0.5).start()
    port = free_port()
    env = _environment(stack, url)
    # the first try of each event hangs (the proxy is killed during it), the second is a 500, the third lands
    with Receiver(hang_first=1, fail_first=1, hang_seconds=5) as receiver:
        key, secret = _prepare(stack, sessions, receiver)
        first = _serve(env, port, tmp_path / "first.log")
        try:
            names = _create(port, key, 2)
            _wait(lambda: len(receiver.tries) > 0, "no delivery reached the receiver")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=15)
        with sessions() as session:
            claimed = session.scalars(select(WebhookDelivery).where(WebhookDelivery.claim_token.is_not(None))).all()
        assert claimed, "the killed proxy held no claim: it was not killed mid-delivery"
        second = _serve(env, port, tmp_path / "second.log")
        try:
            kinds = _check_exactly_once(receiver, secret, names, sessions)
        finally:
            second.terminate()
            second.wait(timeout=15)
            stack.stop()
            engine.dispose()
    assert sorted(Counter(kinds.values()).items()) == [("job.metered", 2), ("job.succeeded", 2)]
    # the same id on every try: the hung one, the 500 and the 2xx
    assert all(receiver.tries[message_id] == 3 for message_id in kinds), receiver.tries


@pytest.mark.postgres
def test_two_replicas_claim_each_delivery_once(postgres_server: LocalPostgres, tmp_path: Path) -> None:
    url = postgres_server.create_database(f"hooks_{os.getpid()}_{time.monotonic_ns()}")
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    stack = EmulatorStack(job_seconds=0.5).start()
    env = _environment(stack, url)
    processes: list[subprocess.Popen[bytes]] = []
    with Receiver(fail_first=1) as receiver:
        key, secret = _prepare(stack, sessions, receiver)
        try:
            ports = [free_port(), free_port()]
            processes = [_serve(env, port, tmp_path / f"replica-{i}.log") for i, port in enumerate(ports)]
            names = _create(ports[0], key, 4) + _create(ports[1], key, 4)
            kinds = _check_exactly_once(receiver, secret, names, sessions)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=15)
            stack.stop()
            engine.dispose()
    # one 500 then one 2xx per id: no delivery was sent by both replicas
    assert all(receiver.tries[message_id] == 2 for message_id in kinds), receiver.tries
    assert len(kinds) == 16
