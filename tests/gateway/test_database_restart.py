"""PostgreSQL restarted under load: while it is down every call that needs it is a 503 UNAVAILABLE, but for a create
that Vertex made before its ledger write met the outage, which is the documented 500 naming the job ("Do not create
it again": a 503 would invite the retry that makes a second job); the same proxy process serves again once the
database is back, and the ledger ends with every upstream job exactly once (those creates adopted by
reconciliation) and every job metered exactly once."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.ledger.models import Job, JobMetering
from proxy.tenancy.keys import create_key
from tests.gateway.test_database_down import UNAVAILABLE
from tests.providers.vertex.conftest import LOCATION, start_proxied
from tests.providers.vertex.test_bad_input import GOOD_BODY
from tests.support.postgres import LocalPostgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

COLLECTION = f"/v1/projects/restart-project/locations/{LOCATION}/batchPredictionJobs"
DOWN_SECONDS = 3.0


@dataclass
class Calls:
    """What the load saw: (seconds since start, operation, status, body) per call, and the jobs created."""

    seen: list[tuple[float, str, int, dict[str, object]]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def _load(url: str, key: str, calls: Calls, started: float) -> None:
    """Creates and gets, back to back, until told to stop."""
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        while not calls.stop.is_set():
            reply = client.post(COLLECTION, content=GOOD_BODY, headers={"content-type": "application/json"})
            calls.seen.append((time.monotonic() - started, "create", reply.status_code, reply.json()))
            if reply.status_code == 200:
                calls.created.append(reply.json()["name"])
            if calls.created:
                reply = client.get(f"/v1/{calls.created[-1]}")
                calls.seen.append((time.monotonic() - started, "get", reply.status_code, reply.json()))
            time.sleep(0.05)


@pytest.fixture
def database() -> Iterator[LocalPostgres]:
    server = LocalPostgres()  # its own server: the suite's shared one stays up for the other tests
    server.start()
    yield server
    server.stop()


def test_a_database_restart_under_load_gives_503s_then_recovers_with_nothing_lost_or_doubled(
        database: LocalPostgres, tmp_path: Path) -> None:
    url = database.create_database("restart")
    upgrade(url)
    saved = dict(os.environ)
    stack, proxy, sqlite_sessions = start_proxied(
        tmp_path, database_url=url, auto_migrate=False, poller_enabled=True, poll_interval=0.2,
        reconcile_interval=1.0, reconcile_min_age=0.5, key_cache_seconds=0.0,  # every call meets the outage
        metering_lease_seconds=3.0)  # a claim whose figures met the outage lapses soon, and is metered again
    sqlite_sessions.kw["bind"].dispose()
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    try:
        with sessions.begin() as session:
            key = create_key(session, team="team-a", name="a")[1]
        calls = Calls()
        started = time.monotonic()
        workers = [threading.Thread(target=_load, args=(proxy.url, key, calls, started)) for _ in range(2)]
        for worker in workers:
            worker.start()
        time.sleep(1.5)
        down_at = time.monotonic() - started
        database.pause()
        time.sleep(DOWN_SECONDS)
        database.resume()
        up_at = time.monotonic() - started
        time.sleep(3.0)
        calls.stop.set()
        for worker in workers:
            worker.join(timeout=60)

        failures = [(at, op, status, body) for at, op, status, body in calls.seen if status != 200]
        assert failures, "no call met the outage"
        unrecorded = re.compile(r"The job (projects/\S+) was created but the proxy could not record it; it will be "
                                r"adopted by reconciliation\. Do not create it again\.")
        named = [unrecorded.fullmatch(str(body["error"]["message"])) for _, op, status, body in failures  # type: ignore[index]
                 if (op, status) == ("create", 500)]
        assert [body for _, _, status, body in failures if status == 503] == [UNAVAILABLE] * sum(
            1 for _, _, status, _ in failures if status == 503)
        assert len(named) + sum(1 for _, _, status, _ in failures if status == 503) == len(failures)
        assert all(match is not None for match in named)
        assert all(down_at <= at <= up_at + 2.0 for at, _, _, _ in failures)  # recovered within 2 s of the restart
        assert [status for at, _, status, _ in calls.seen if at > up_at + 2.0] == \
            [200] * sum(1 for at, _, _, _ in calls.seen if at > up_at + 2.0)

        upstream = {job.name for job in stack.state.jobs.all()}
        deadline = time.monotonic() + 60
        while True:  # the reconciler adopts creates whose ledger write met the outage; the poller meters all
            with sessions() as session:
                rows = session.execute(select(Job.name, Job.metering_state, Job.team)).all()
                meterings = dict(session.execute(select(Job.name, func.count(JobMetering.id))
                                                 .join(JobMetering, JobMetering.job_pk == Job.id).group_by(Job.name))
                                 .all())
            names = [name for name, _, _ in rows]
            if set(names) >= upstream and all(state == "metered" for _, state, _ in rows):
                break
            assert time.monotonic() < deadline, f"not settled: {len(upstream - set(names))} missing, " \
                                                 f"{sum(1 for _, s, _ in rows if s != 'metered')} not metered"
            time.sleep(0.2)
        assert sorted(names) == sorted(upstream)  # each upstream job once, nothing else
        assert set(calls.created) <= upstream
        assert {match.group(1) for match in named if match} <= upstream  # the unrecorded creates, adopted
        assert {team for _, _, team in rows} == {"team-a"}
        assert meterings == dict.fromkeys(upstream, 1)
    finally:
        proxy.stop()
        stack.stop()
        engine.dispose()
        os.environ.clear()
        os.environ.update(saved)
