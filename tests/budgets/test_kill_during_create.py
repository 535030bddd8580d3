"""A `vbp serve` process SIGKILLed at each step of a create under a budget, restarted, and reconciled: every job the
upstream has is in the ledger exactly once with its team and key, no reservation is held forever, nothing is
metered twice.

How the proxy is stopped at a step, with no test hook in the product: the test holds what the proxy waits for.
- The ledger's write lock: a connection of the test's own runs `BEGIN IMMEDIATE` on the SQLite file, so the
  proxy's next write (the reservation's `BEGIN IMMEDIATE`, or the job's insert) waits on the busy timeout. WAL
  lets the test (and the proxy) keep reading meanwhile, so the test sees what has and has not been written.
- The upstream call: the emulator's `latency` fault delays its reply; its request log shows the create as
  arrived (status None) and then as answered (200, or the 503 an error rule injects).
The steps (the create's order: estimate, reserve, forward, record):
- `before-reservation`: the write lock is held from the start; the proxy blocks reserving. Nothing is written,
  nothing reaches the upstream.
- `after-reservation`: the reservation is written and the upstream holds the call; the proxy dies, and the
  upstream then refuses the create (an injected 503), so no job exists anywhere: the reservation is the only
  trace, and reconciliation releases it once it is older than VBP_RESERVATION_GRACE.
- `upstream-created-after-death`: as above, but the upstream then creates the job (as Vertex does when the
  caller has gone): reconciliation adopts it from its labels and binds the reservation to it.
- `after-upstream-reply`: the upstream has answered 200 and the write lock holds the proxy before the job's row;
  reconciliation adopts the job and binds its reservation.
- `after-ledger-write`: the create has answered 200 (job and bound reservation committed); the restarted proxy
  meters the job once and settles the reservation.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from proxy.budgets import store
from proxy.clock import utcnow
from proxy.emulator.jobs import project_number
from proxy.emulator.stack import EmulatorStack
from proxy.emulator.storage import free_port
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.ledger.models import BudgetReservation, Job, JobMetering
from proxy.tenancy.keys import create_key
from tests.metering.completion.conftest import text_line
from tests.support.processes import serve

# Runs the emulator and `vbp` processes: left out of `make test-fast`.
pytestmark = pytest.mark.slow

LOCATION = "us-central1"
LINE = text_line("Hello world!", generationConfig={"maxOutputTokens": 10})
HIGH = 3 * 150_000 + 10 * 1_250_000  # the estimate's high for LINE on gemini-2.5-flash (batch), in pUSD
BUDGET = 1_000 * HIGH


@pytest.fixture(scope="module")
def stack() -> Iterator[EmulatorStack]:
    with EmulatorStack(job_seconds=0.5) as emulator:
        emulator.storage_client().create_bucket("kill")
        yield emulator


@dataclass
class Scene:
    """One test's ledger, project and key, and the `vbp serve` process of the moment."""

    stack: EmulatorStack
    tmp: Path
    project: str
    sessions: sessionmaker[Session]
    key: str = ""
    key_id: str = ""
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    starts: int = 0

    @property
    def db_path(self) -> Path:
        return self.tmp / "ledger.db"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.stack.env, "VBP_DATABASE_URL": f"sqlite:///{self.db_path}",
                "VBP_TEAM_GCS_PREFIXES": "gs://kill/", "VBP_RECONCILE_INTERVAL": "0", "VBP_POLL_INTERVAL": "0.3",
                **extra}

    def serve(self, **extra: str) -> None:
        """Start `vbp serve` (a new process group: its metering workers die with it)."""
        self.port = free_port()
        self.process = serve(self.env(**extra), self.tmp / f"serve-{self.starts}.log", port=self.port)
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown code of the proxy's runs."""
        assert self.process is not None and self.process.poll() is None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def create_body(self) -> dict[str, Any]:
        folder = uuid.uuid4().hex[:10]
        self.stack.storage_client().bucket("kill").blob(f"{folder}/input.jsonl").upload_from_string(
            json.dumps(LINE) + "\n")
        return {"displayName": folder, "model": "publishers/google/models/gemini-2.5-flash",
                "inputConfig": {"instancesFormat": "jsonl",
                                "gcsSource": {"uris": [f"gs://kill/{folder}/input.jsonl"]}},
                "outputConfig": {"predictionsFormat": "jsonl",
                                 "gcsDestination": {"outputUriPrefix": f"gs://kill/{folder}/out"}}}

    def post_create(self) -> httpx.Response:
        url = f"http://127.0.0.1:{self.port}/v1/projects/{self.project}/locations/{LOCATION}/batchPredictionJobs"
        return httpx.post(url, json=self.create_body(), headers={"Authorization": f"Bearer {self.key}"}, timeout=60)

    def create_in_background(self) -> threading.Thread:
        """A create whose caller loses its connection when the proxy dies (nothing to assert on its side)."""
        def call() -> None:
            try:
                self.post_create()
            except httpx.HTTPError:
                pass
        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        return thread

    def creates_seen(self) -> list[dict[str, Any]]:
        """The emulator's log of creates in this test's project: each with its status (None while held)."""
        path = f"/v1/projects/{self.project}/locations/{LOCATION}/batchPredictionJobs"
        return [e for e in self.stack.request_log if e.get("method") == "POST" and e.get("path") == path]

    def upstream_jobs(self) -> list[Any]:
        return self.stack.state.jobs.in_location(project_number(self.project), LOCATION)

    def reservations(self) -> list[BudgetReservation]:
        with self.sessions() as session:
            return list(session.scalars(select(BudgetReservation).order_by(BudgetReservation.created_at)))

    def jobs(self) -> list[Job]:
        with self.sessions() as session:
            return list(session.scalars(select(Job)))

    def reconcile(self, **extra: str) -> list[dict[str, str]]:
        result = subprocess.run([sys.executable, "-m", "proxy", "reconcile", "--min-age", "0s", "--json"],
                                env=self.env(**extra), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout))


@pytest.fixture
def scene(stack: EmulatorStack, tmp_path: Path) -> Iterator[Scene]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = make_engine(url)
    scene = Scene(stack, tmp_path, f"kill-{uuid.uuid4().hex[:8]}", make_sessionmaker(engine))
    with scene.sessions.begin() as session:
        key, scene.key = create_key(session, team="team-a", name="kill")
        scene.key_id = key.id
        store.set_budget(session, actor="test", team="team-a", key_id=None, limit_pico=BUDGET, period="month",
                         now=utcnow())
    try:
        yield scene
    finally:
        scene.stop()
        stack.set_faults()
        engine.dispose()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class WriteLock:
    """The ledger's write lock, held by the test: `BEGIN IMMEDIATE` on the SQLite file."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.connection.execute("ROLLBACK")
        self.connection.close()


def kill_before_reservation(scene: Scene) -> None:
    lock = WriteLock(scene.db_path)
    try:
        scene.create_in_background()
        time.sleep(2)  # the proxy has read the budgets and the input by now, and waits for the lock to reserve
        assert scene.reservations() == [] and scene.creates_seen() == []
        scene.kill()
    finally:
        lock.release()


def _kill_while_upstream_holds_the_call(scene: Scene, *, then_status: int | None) -> None:
    errors = [{"status": then_status, "method": "create", "count": 1}] if then_status else []
    scene.stack.set_faults(latency=2.0, errors=errors)
    scene.create_in_background()
    wait_for("the create to reach the upstream", lambda: len(scene.creates_seen()) == 1)
    assert [r.state for r in scene.reservations()] == ["held"]  # written before the upstream call
    scene.kill()
    wait_for("the upstream to answer", lambda: scene.creates_seen()[0]["status"] is not None)
    scene.stack.set_faults()
    assert scene.creates_seen()[0]["status"] == (then_status or 200)


def kill_after_reservation(scene: Scene) -> None:
    _kill_while_upstream_holds_the_call(scene, then_status=503)


def kill_before_the_upstream_creates(scene: Scene) -> None:
    _kill_while_upstream_holds_the_call(scene, then_status=None)


def kill_after_upstream_reply(scene: Scene) -> None:
    scene.stack.set_faults(latency=2.0)
    scene.create_in_background()
    wait_for("the create to reach the upstream", lambda: len(scene.creates_seen()) == 1)
    lock = WriteLock(scene.db_path)  # taken while the upstream holds the call: the job's row must wait
    try:
        wait_for("the upstream's 200", lambda: scene.creates_seen()[0]["status"] == 200)
        time.sleep(1)  # the proxy has the reply and waits for the lock to record the job
        assert scene.jobs() == [] and [r.state for r in scene.reservations()] == ["held"]
        scene.kill()
    finally:
        lock.release()
        scene.stack.set_faults()


def kill_after_ledger_write(scene: Scene) -> None:
    reply = scene.post_create()
    assert reply.status_code == 200, reply.text
    scene.kill()
    assert [r.state for r in scene.reservations()] == ["bound"]


@dataclass(frozen=True)
class Step:
    kill: Callable[[Scene], None]
    upstream_jobs: int  # how many jobs the upstream has after the kill
    left_held: bool  # whether the kill leaves a reservation waiting for reconciliation
    adopted: bool  # whether reconciliation adopts the job


STEPS = {
    "before-reservation": Step(kill_before_reservation, upstream_jobs=0, left_held=False, adopted=False),
    "after-reservation": Step(kill_after_reservation, upstream_jobs=0, left_held=True, adopted=False),
    "upstream-created-after-death": Step(kill_before_the_upstream_creates, upstream_jobs=1, left_held=True,
                                         adopted=True),
    "after-upstream-reply": Step(kill_after_upstream_reply, upstream_jobs=1, left_held=True, adopted=True),
    "after-ledger-write": Step(kill_after_ledger_write, upstream_jobs=1, left_held=False, adopted=False),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_create_killed_at_each_step_leaves_nothing_lost_held_or_doubled(scene: Scene, step: str) -> None:
    plan = STEPS[step]
    scene.serve(VBP_POLLER="false")
    plan.kill(scene)

    upstream = scene.upstream_jobs()
    assert len(upstream) == plan.upstream_jobs
    held = [r for r in scene.reservations() if r.state == "held"]
    assert len(held) == (1 if plan.left_held else 0)

    scene.serve()  # restarted, with its poller
    # Within the grace a held reservation may still be a create in flight: reconciliation keeps it ...
    outcomes = scene.reconcile()
    if held and not plan.adopted:
        assert [(r.id, r.state) for r in scene.reservations()] == [(held[0].id, "held")]
    # ... and after it, releases what no upstream job carries (a new pass adopts nothing twice).
    outcomes += scene.reconcile(VBP_RESERVATION_GRACE="0")
    assert outcomes == [{"name": job.name, "result": "adopted", "team": "team-a", "key_id": scene.key_id}
                        for job in upstream if plan.adopted]

    wait_for("every job metered", lambda: all(j.metering_state == "metered" for j in scene.jobs()), timeout=60)
    scene.stop()

    jobs = scene.jobs()
    assert sorted(j.name for j in jobs) == sorted(j.name for j in upstream)  # each upstream job, once
    assert all((j.team, j.key_id) == ("team-a", scene.key_id) for j in jobs)
    with scene.sessions() as session:
        meterings = dict(session.execute(select(JobMetering.job_pk, func.count(JobMetering.id))
                                         .group_by(JobMetering.job_pk)).all())
        [budget] = store.list_budgets(session, now=utcnow())
    assert meterings == {j.id: 1 for j in jobs}  # metered once
    reservations = scene.reservations()
    if plan.upstream_jobs:
        [job] = jobs
        assert [(r.state, r.job_pk, r.amount_pico) for r in reservations] == [("settled", job.id, HIGH)]
        assert job.labels["vbp-reservation"] == reservations[0].id
    else:
        assert [r.state for r in reservations] == (["released"] if plan.left_held else [])
    spent = sum(j.cost_pico or 0 for j in jobs)
    assert (budget.spent, budget.reserved, budget.remaining) == (spent, 0, BUDGET - spent)
