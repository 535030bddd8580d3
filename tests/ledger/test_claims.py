"""Metering claims on SQLite and PostgreSQL: one claim wins, a lapsed lease is taken over, a lost one writes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.ledger import jobs as ledger
from proxy.ledger.models import Job, JobMetering
from proxy.metering import claims
from proxy.tenancy.keys import Principal, create_key
from tests.ledger.test_ledger import NAME, REPLY, REQUEST


@pytest.fixture
def ended_job(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        key, _ = create_key(session, team="a")
        ended = {**REPLY, "state": "JOB_STATE_SUCCEEDED", "outputInfo": {"gcsOutputDirectory": "gs://b/out/p"}}
        row = ledger.record_created(session, reply=ended, request=REQUEST,
                                    principal=Principal(key.id, "a"), api_version="v1", project="p1",
                                    location="us-central1")
        return row.id


def _history(job_pk: int) -> JobMetering:
    return JobMetering(job_pk=job_pk, at=utcnow(), reason="meter", cost_status="priced", cost_pico=5)


def test_only_one_claim_wins_and_a_lapsed_lease_is_taken_over(sessions: sessionmaker[Session], ended_job: int) -> None:
    now = utcnow()
    with sessions.begin() as session:
        assert claims.claimable_jobs(session, now=now) == [ended_job]
        first = claims.claim(session, job_pk=ended_job, now=now, lease=60)
    with sessions.begin() as session:
        assert claims.claim(session, job_pk=ended_job, now=now, lease=60) is None
        assert claims.claimable_jobs(session, now=now) == []
    later = now + timedelta(seconds=61)
    with sessions.begin() as session:
        second = claims.claim(session, job_pk=ended_job, now=later, lease=60)
    assert first and second and first != second

    # The first claimant comes back: its token is gone, it writes nothing.
    with pytest.raises(claims.LostClaim), sessions.begin() as session:
        claims.finish(session, job_pk=ended_job, token=first, now=later, state="metered",
                      figures={"cost_pico": 1, "cost_status": "priced"}, history=_history(ended_job))
    with sessions.begin() as session:
        claims.finish(session, job_pk=ended_job, token=second, now=later, state="metered",
                      figures={"cost_pico": 5, "cost_status": "priced"}, history=_history(ended_job))
    with sessions() as session:
        job = session.scalars(select(Job).where(Job.name == NAME)).one()
        assert (job.metering_state, job.cost_pico, job.metering_attempts) == ("metered", 5, 2)
        assert len(session.scalars(select(JobMetering)).all()) == 1


def test_give_up_makes_the_job_due_after_a_backoff(sessions: sessionmaker[Session], ended_job: int) -> None:
    now = utcnow()
    with sessions.begin() as session:
        token = claims.claim(session, job_pk=ended_job, now=now, lease=60)
        assert token is not None
        claims.give_up(session, job_pk=ended_job, token=token, now=now, error="read failed", retry_in=30)
    with sessions() as session:
        assert claims.claimable_jobs(session, now=now + timedelta(seconds=29)) == []
        assert claims.claimable_jobs(session, now=now + timedelta(seconds=31)) == [ended_job]
        job = session.get(Job, ended_job)
        assert job is not None and job.metering_error == "read failed"


def test_force_claims_a_job_waiting_for_its_retry_but_never_a_live_claim(sessions: sessionmaker[Session],
                                                                         ended_job: int) -> None:
    now = utcnow()
    with sessions.begin() as session:
        token = claims.claim(session, job_pk=ended_job, now=now, lease=60)
        assert token is not None
        claims.give_up(session, job_pk=ended_job, token=token, now=now, error="no output yet", retry_in=3600)
    with sessions.begin() as session:
        assert claims.claimable_jobs(session, now=now) == []
        assert claims.claimable_jobs(session, now=now, force=True) == [ended_job]
        assert claims.claim(session, job_pk=ended_job, now=now, lease=60) is None
        forced = claims.claim(session, job_pk=ended_job, now=now, lease=60, force=True)
    assert forced is not None
    with sessions.begin() as session:  # held by a live claim: not even an operator takes it over
        assert claims.claimable_jobs(session, now=now, force=True) == []
        assert claims.claim(session, job_pk=ended_job, now=now, lease=60, force=True) is None


def test_give_up_with_refetch_hands_the_job_back_to_the_poller(sessions: sessionmaker[Session],
                                                               ended_job: int) -> None:
    now = utcnow()
    with sessions.begin() as session:
        token = claims.claim(session, job_pk=ended_job, now=now, lease=60)
        assert token is not None
        claims.give_up(session, job_pk=ended_job, token=token, now=now, error="no outputInfo yet", retry_in=60,
                       refetch=True)
    with sessions.begin() as session:
        job = session.get(Job, ended_job)
        assert job is not None
        assert (job.metering_state, job.metering_error, job.claim_token) == (None, "no outputInfo yet", None)
        assert job.next_poll_at == now + timedelta(seconds=60)
        assert claims.claimable_jobs(session, now=now, force=True) == []  # the poller fetches it first
        ledger.record_seen(session, job=job, reply={**REPLY, "state": "JOB_STATE_SUCCEEDED"}, source="poller")
        assert job.metering_state == "due"
