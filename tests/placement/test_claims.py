"""Placements on a real ledger (SQLite and PostgreSQL): quotas hold exactly, also when creates race in threads and
in separate processes; the upstream's enqueued-token figure corrects the ledger's."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger.engine import make_engine, make_sessionmaker
from proxy.ledger.models import Job, Placement
from proxy.placement import claims
from proxy.placement.choice import Target

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
TARGETS = [Target("azure-a", quota=1000), Target("azure-b", quota=1000), Target("azure-c", quota=1000)]


def _claim(sessions: sessionmaker[Session], tokens: int, *, now: datetime = NOW, targets: list[Target] = TARGETS,
           exclude: tuple[str, ...] = ()) -> claims.Claim:
    with sessions.begin() as session:
        return claims.claim(session, targets=targets, tokens=tokens, team="ml", model="gpt-4o-mini", now=now,
                            exclude=exclude)


def _queued(sessions: sessionmaker[Session], now: datetime = NOW) -> dict[str, int]:
    with sessions() as session:
        return {f.target.name: f.queued for f in claims.figures(session, TARGETS, now=now)}


def _job(sessions: sessionmaker[Session], n: int) -> int:
    with sessions.begin() as session:
        job = Job(name=f"openai/azure-a/batches/{n}", job_id=str(n), team="ml", project="", location="",
                  api_version="v1", model="gpt-4o-mini", state="validating", create_time=NOW, recorded_at=NOW)
        session.add(job)
        session.flush()
        return job.id


def test_batches_spread_over_the_most_headroom(sessions: sessionmaker[Session]) -> None:
    names = [_claim(sessions, 100).target.name for _ in range(6)]
    assert names == ["azure-a", "azure-b", "azure-c", "azure-a", "azure-b", "azure-c"]
    assert _queued(sessions) == {"azure-a": 200, "azure-b": 200, "azure-c": 200}


def test_no_room_names_every_target_and_says_when_to_retry(sessions: sessionmaker[Session]) -> None:
    for _ in range(3):
        _claim(sessions, 900)
    with pytest.raises(claims.NoRoom) as refused:
        _claim(sessions, 101)
    assert str(refused.value) == (
        "No deployment of gpt-4o-mini can take this batch of 101 queued tokens now: azure-a has 100 of 1000 queued "
        "tokens free; azure-b has 100 of 1000 queued tokens free; azure-c has 100 of 1000 queued tokens free.")
    assert (refused.value.retry_after, refused.value.full) == (claims.FULL_RETRY_AFTER, True)
    assert _claim(sessions, 100).target.name == "azure-a"  # what fits still goes


def test_released_tokens_free_and_placed_ones_count_until_the_job_ends(sessions: sessionmaker[Session]) -> None:
    released, placed = _claim(sessions, 300), _claim(sessions, 400)
    job_pk = _job(sessions, 1)
    with sessions.begin() as session:
        claims.release(session, placement_id=released.placement_id, now=NOW, note="upstream said 500")
        claims.bind(session, placement_id=placed.placement_id, job_pk=job_pk, now=NOW)
    assert _queued(sessions) == {"azure-a": 0, "azure-b": 400, "azure-c": 0}
    with sessions.begin() as session:
        job = session.get(Job, job_pk)
        assert job is not None
        job.metering_state = "due"  # the job ended
    assert _queued(sessions) == {"azure-a": 0, "azure-b": 0, "azure-c": 0}


def test_a_held_claim_lapses_after_the_grace(sessions: sessionmaker[Session]) -> None:
    _claim(sessions, 300)
    assert _queued(sessions, NOW + claims.HELD_GRACE)["azure-a"] == 300
    assert _queued(sessions, NOW + claims.HELD_GRACE + timedelta(seconds=1))["azure-a"] == 0


def test_the_upstreams_figure_corrects_the_ledger_while_fresh(sessions: sessionmaker[Session]) -> None:
    _claim(sessions, 100)  # azure-a: 100 in the ledger
    with sessions.begin() as session:
        # the upstream holds more (another client's batches, or the estimate's drift)
        claims.record_success(session, target="azure-a", now=NOW, enqueued=700)
    _claim(sessions, 50, now=NOW + timedelta(seconds=1))  # goes to b (most headroom)
    later = NOW + timedelta(seconds=2)
    assert _claim(sessions, 50, now=later).target.name == "azure-c"
    assert _queued(sessions, later)["azure-a"] == 700
    stale = NOW + claims.REPORT_TRUST + timedelta(seconds=1)
    assert _queued(sessions, stale)["azure-a"] == 100  # the ledger alone once the figure is stale


def test_a_full_refusal_without_a_figure_fills_the_target_to_its_quota(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        claims.record_full(session, target=TARGETS[0], now=NOW, error="token_limit_exceeded")
    assert _queued(sessions)["azure-a"] == 1000
    assert _claim(sessions, 1).target.name == "azure-b"


def test_a_cooling_target_is_skipped_and_retry_after_counts_down_to_it(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for _ in range(3):
            claims.record_failure(session, target="azure-a", now=NOW, error="503")
        claims.record_failure(session, target="azure-b", now=NOW, error="429", retry_after=12)
        claims.record_full(session, target=TARGETS[2], now=NOW, error="token_limit_exceeded", enqueued=1000)
    with pytest.raises(claims.NoRoom) as refused:
        _claim(sessions, 10)
    assert (refused.value.retry_after, refused.value.full) == (12, False)
    assert "azure-a is cooling after failures; azure-b is cooling after failures" in str(refused.value)
    assert _claim(sessions, 10, now=NOW + timedelta(seconds=13)).target.name == "azure-b"  # its probe
    with sessions.begin() as session:
        claims.record_success(session, target="azure-b", now=NOW + timedelta(seconds=14))
    probe = _claim(sessions, 10, now=NOW + timedelta(seconds=31))
    assert probe.target.name == "azure-a" and probe.figures.health == "probing"
    # one probe at a time: the next create does not go there while it is in flight
    assert _claim(sessions, 10, now=NOW + timedelta(seconds=32)).target.name == "azure-b"


def test_excluded_targets_are_named_in_the_refusal(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(claims.NoRoom) as refused:
        _claim(sessions, 10, targets=TARGETS[:1], exclude=("azure-a",))
    assert str(refused.value) == ("No deployment of gpt-4o-mini can take this batch of 10 queued tokens now "
                                  "(azure-a refused it).")


def test_forty_racing_threads_fill_three_quotas_exactly(sessions: sessionmaker[Session]) -> None:
    results: list[str] = []
    barrier = threading.Barrier(40)

    def place() -> None:
        barrier.wait()
        try:
            results.append(_claim(sessions, 100, now=datetime.now(UTC)).target.name)
        except claims.NoRoom:
            results.append("refused")
        except Exception as exc:  # "database is locked" or a deadlock would land here
            results.append(f"error: {exc}")

    threads = [threading.Thread(target=place) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert Counter(results) == {"azure-a": 10, "azure-b": 10, "azure-c": 10, "refused": 10}


def _replica(url: str, count: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    for _ in range(count):
        try:
            out.put(_claim(sessions, 70, now=datetime.now(UTC)).target.name)
        except claims.NoRoom:
            out.put("refused")
        except Exception as exc:
            out.put(f"error: {exc}")
    engine.dispose()


def test_two_processes_placing_at_once_never_overfill(sessions: sessionmaker[Session], database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    replicas = [context.Process(target=_replica, args=(database_url, 30, out)) for _ in range(2)]
    for replica in replicas:
        replica.start()
    results = Counter(out.get(timeout=120) for _ in range(60))
    for replica in replicas:
        replica.join(timeout=60)
    # 14 batches of 70 fit in each quota of 1000 (980 tokens); the other 18 are refused
    assert results == {"azure-a": 14, "azure-b": 14, "azure-c": 14, "refused": 18}
    with sessions() as session:
        held = Counter(p.target for p in session.scalars(select(Placement)))
    assert held == {"azure-a": 14, "azure-b": 14, "azure-c": 14}
