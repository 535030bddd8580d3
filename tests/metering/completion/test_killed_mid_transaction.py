"""`vbp meter` killed with SIGKILL in the middle of the transaction that writes a job's figures: the job's row has
been updated (and its rollup trigger has run) but nothing is committed. Nothing of it may survive: the job stays
claimed until the lease lapses, then the next run meters it exactly once, with one history row and one rollup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

from proxy.clock import utcnow
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.ledger.models import Job, JobMetering
from proxy.tenancy.keys import create_key
from tests.metering.completion.conftest import submit, text_line
from tests.metering.completion.test_meter_command import wait_ended
from tests.providers.vertex.conftest import Proxied, start_proxied
from tests.support.expected import expected_for, output_rows
from tests.support.postgres import LocalPostgres
from tests.support.processes import end_group, start_group

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LEASE = 3.0
# The figures' UPDATE, stopped by the rollup trigger's wait for the table lock the test holds.
WAITING = ("SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
           "AND query LIKE 'UPDATE jobs SET metering_state=%%'")
ALIVE = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"


def _rollup_jobs(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(sum(jobs), 0) FROM job_rollups").fetchone()
    return int(row[0]) if row else 0


def test_a_meter_killed_inside_its_transaction_leaves_nothing_then_meters_once(postgres_server: LocalPostgres,
                                                                               tmp_path: Path) -> None:
    url = postgres_server.create_database(f"killed_{os.getpid()}")
    database = url.rsplit("/", 1)[1]
    upgrade(url)
    saved = dict(os.environ)
    stack, proxy, sqlite_sessions = start_proxied(tmp_path, database_url=url, auto_migrate=False)
    sqlite_sessions.kw["bind"].dispose()
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    dsn = f"host=127.0.0.1 port={postgres_server.port} user=postgres dbname={database}"
    try:
        env = Proxied(stack, proxy, sessions)
        with sessions.begin() as session:
            env.keys["team-a"] = create_key(session, team="team-a", name="a")[1]
        name = submit(env, "gemini-2.5-flash", [text_line(f"Question {i}?") for i in range(3)])
        wait_ended(env, name)
        environ = {**os.environ, **stack.env, "VBP_DATABASE_URL": url, "VBP_METERING_LEASE_SECONDS": f"{LEASE:g}"}
        command = [sys.executable, "-m", "proxy", "meter", "--job", name]

        with psycopg.connect(dsn) as lock, psycopg.connect(dsn, autocommit=True) as watch:
            rollups_before = _rollup_jobs(watch)
            lock.execute("LOCK TABLE job_rollups IN EXCLUSIVE MODE")  # held until the rollback below
            meter = start_group(command, cwd=tmp_path, env=environ)
            try:
                deadline = time.monotonic() + 60
                while not (waiting := watch.execute(WAITING, (database,)).fetchall()):
                    assert meter.poll() is None, meter.communicate()
                    assert time.monotonic() < deadline, "the meter never reached its figures' transaction"
                    time.sleep(0.05)
                [(backend,)] = waiting
                os.killpg(meter.pid, signal.SIGKILL)
                meter.wait(timeout=10)
            finally:
                end_group(meter)
            lock.rollback()
            deadline = time.monotonic() + 30  # the orphaned backend runs on, finds its client gone, rolls back
            while watch.execute(ALIVE, (backend,)).fetchone() != (0,):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert _rollup_jobs(watch) == rollups_before

        with sessions() as session:
            job = session.scalars(select(Job).where(Job.name == name)).one()
            assert (job.metering_state, job.cost_pico, job.metered_at) == ("claimed", None, None)
            assert session.scalar(select(func.count(JobMetering.id)).where(JobMetering.job_pk == job.id)) == 0
            claim_until = job.claim_until
        assert claim_until is not None
        time.sleep(max(0.0, (claim_until - utcnow()).total_seconds()) + 0.3)

        again = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"metered      {name}" in again.stdout
        with sessions() as session:
            job = session.scalars(select(Job).where(Job.name == name)).one()
            history = session.scalars(select(JobMetering).where(JobMetering.job_pk == job.id)).all()
        rows = output_rows(stack.storage_client(), str(job.output_directory))
        want = expected_for(rows, "gemini-2.5-flash")
        assert (job.metering_state, job.metering_attempts, job.cost_pico) == ("metered", 2, want.cost_pico)
        assert [(h.reason, h.cost_pico, h.superseded_at) for h in history] == [("meter", want.cost_pico, None)]
        with psycopg.connect(dsn, autocommit=True) as watch:
            assert _rollup_jobs(watch) == rollups_before + 1
    finally:
        proxy.stop()
        stack.stop()
        engine.dispose()
        os.environ.clear()
        os.environ.update(saved)
