"""Two `vbp serve` replicas on one PostgreSQL ledger: 50 jobs finish, each is metered exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from proxy.emulator.stack import EmulatorStack
from proxy.ledger.engine import make_engine, make_sessionmaker
from proxy.ledger.models import Job, JobMetering
from proxy.tenancy.keys import create_key
from tests.support.expected import expected_for, output_rows
from tests.support.postgres import LocalPostgres
from tests.support.replicas import running_replicas

# Runs the emulator, a proxy or `vbp` processes: left out of `make test-fast`.
pytestmark = [pytest.mark.postgres, pytest.mark.slow]
JOBS = "/v1/projects/replica-project/locations/us-central1/batchPredictionJobs"


@pytest.fixture
def replicas(postgres_server: LocalPostgres, tmp_path: Path) -> Iterator[tuple[EmulatorStack, str, list[int]]]:
    with running_replicas(postgres_server, tmp_path, bucket="replicas") as running:
        yield running.stack, running.url, running.ports


def test_two_replicas_meter_50_jobs_exactly_once(replicas: tuple[EmulatorStack, str, list[int]]) -> None:
    stack, url, ports = replicas
    engine = make_engine(url)
    try:
        _create_and_meter(stack, make_sessionmaker(engine), ports)
    finally:
        engine.dispose()


def _create_and_meter(stack: EmulatorStack, sessions: sessionmaker[Session], ports: list[int]) -> None:
    with sessions.begin() as session:
        key = create_key(session, team="team-a")[1]
    bucket = stack.storage_client().create_bucket("replicas")
    bucket.blob("in.jsonl").upload_from_string(
        "".join(json.dumps({"request": {"contents": [{"role": "user", "parts": [{"text": f"Hi {i}"}]}]}}) + "\n"
                for i in range(2)))
    body = {"model": "publishers/google/models/gemini-2.5-flash",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://replicas/in.jsonl"]}},
            "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://replicas/o"}}}
    names = []
    for i in range(50):
        port = ports[i % 2]  # creates through both replicas
        reply = httpx.post(f"http://127.0.0.1:{port}{JOBS}", json={**body, "displayName": f"r{i}"},
                           headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert reply.status_code == 200, reply.text
        names.append(reply.json()["name"])

    deadline = time.monotonic() + 120
    while True:
        with sessions() as session:
            done = session.scalar(select(func.count(Job.id)).where(Job.metering_state == "metered"))
        if done == 50:
            break
        assert time.monotonic() < deadline, f"only {done} of 50 metered"
        time.sleep(0.3)

    with sessions() as session:
        per_job = dict(session.execute(select(JobMetering.job_pk, func.count(JobMetering.id))
                                       .group_by(JobMetering.job_pk)).all())
        jobs = session.scalars(select(Job)).all()
    assert len(jobs) == 50 and sorted(j.name for j in jobs) == sorted(names)
    assert all(per_job[job.id] == 1 for job in jobs)
    assert all(job.lines_succeeded == 2 and job.cost_status == "priced" for job in jobs)
    # every job ran the same two lines, so every job costs what the first one's rows say
    want = expected_for(output_rows(stack.storage_client(), str(jobs[0].output_directory)), "gemini-2.5-flash")
    assert {job.cost_pico for job in jobs} == {want.cost_pico}
