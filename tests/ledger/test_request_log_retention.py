"""The request log keeps VBP_REQUEST_LOG_DAYS days: older rows go, in batches, by one replica at a time."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger import jobs as ledger
from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
from proxy.ledger.models import RequestLog
from proxy.ledger.request_log_retention import LOCK_KEY, prune_request_log
from tests.support.postgres import LocalPostgres

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _log(sessions: sessionmaker[Session], ages_in_hours: list[float]) -> None:
    rows = [{"at": NOW - timedelta(hours=age), "request_id": f"r{i:04d}", "method": "GET", "route": "get",
             "status": 200, "latency_ms": 1.0} for i, age in enumerate(ages_in_hours)]
    with sessions.begin() as session:
        ledger.log_requests(session, rows=rows)


def _left(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(RequestLog.request_id).order_by(RequestLog.request_id)))


def test_rows_older_than_the_kept_days_are_deleted_in_batches(sessions: sessionmaker[Session]) -> None:
    # 11 rows beyond 30 days (deleted in batches of 4: 4 + 4 + 3), 3 within (kept), one just inside the edge.
    ages = [30 * 24 + 1 + i for i in range(11)] + [1, 24, 29 * 24, 30 * 24 - 1]
    _log(sessions, ages)
    engine = sessions.kw["bind"]
    assert prune_request_log(engine, keep_days=30, now=NOW, batch=4) == 11
    assert _left(sessions) == ["r0011", "r0012", "r0013", "r0014"]
    assert prune_request_log(engine, keep_days=30, now=NOW, batch=4) == 0  # nothing more to do
    assert prune_request_log(engine, keep_days=1, now=NOW, batch=4) == 2
    assert _left(sessions) == ["r0011", "r0012"]


def test_an_exact_multiple_of_the_batch_ends_with_an_empty_statement(sessions: sessionmaker[Session]) -> None:
    _log(sessions, [40 * 24] * 8 + [0.5])
    assert prune_request_log(sessions.kw["bind"], keep_days=30, now=NOW, batch=4) == 8
    assert _left(sessions) == ["r0008"]


@pytest.mark.postgres
def test_a_replica_skips_its_pass_while_another_prunes(postgres_server: LocalPostgres) -> None:
    url = postgres_server.create_database(f"retention_{os.getpid()}")
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    _log(sessions, [40 * 24, 41 * 24, 1])
    other = engine.connect()  # another replica, in the middle of its pass
    try:
        assert other.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar() is True
        other.commit()
        assert prune_request_log(engine, keep_days=30, now=NOW) is None
        assert _left(sessions) == ["r0000", "r0001", "r0002"]
        other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
        other.commit()
    finally:
        other.close()
    assert prune_request_log(engine, keep_days=30, now=NOW) == 2
    assert _left(sessions) == ["r0002"]
    # The pass let go of its lock: another replica can take it.
    with engine.connect() as after:
        assert after.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar() is True
        after.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
    engine.dispose()
