"""The job meter asks each job's own provider; a job of a provider this proxy does not know waits, unread."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
from google.cloud import storage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger.models import Job
from proxy.metering.job_meter import JobMeter
from proxy.metering.poller import Poller
from proxy.metering.pricing import PricingTable
from proxy.services import close_services, open_services
from proxy.settings import Settings
from proxy.upstream import AiohttpUpstream, RetryPolicy


def no_storage() -> storage.Client:
    raise AssertionError("a job of an unknown provider must not be read")


def test_a_job_of_an_unknown_provider_waits_for_a_proxy_that_knows_it(sessions: sessionmaker[Session]) -> None:
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    with sessions.begin() as session:
        job = Job(name="jobs/1", job_id="1", team="team-a", project="p", location="here", api_version="v1",
                  model="m", state="completed", create_time=moment, recorded_at=moment, end_time=moment,
                  metering_state="due", provider="elsewhere")
        session.add(job)
        session.flush()
        pk = job.id
    meter = JobMeter(sessions, pricing=PricingTable.load(), storage_factory=no_storage)
    try:
        [outcome] = meter.meter_due(force=True)
    finally:
        meter.close()
    assert (outcome.name, outcome.result) == ("jobs/1", "retry")
    assert outcome.detail.startswith("no provider is called 'elsewhere' (known: vertex, openai, azure), so this "
                                     "proxy cannot read its outputs; next try at ")
    with sessions() as session:
        job = session.get(Job, pk)
        assert job is not None
        assert (job.metering_state, job.cost_status, job.metering_error) == (
            "due", None,
            "no provider is called 'elsewhere' (known: vertex, openai, azure), so this proxy cannot read its outputs")


def test_the_poller_backs_off_a_job_of_an_unknown_provider_and_checks_the_others(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upstream = AiohttpUpstream(tokens=None, timeout=5.0, connect_timeout=1.0, retry=RetryPolicy(attempts=1))
    services = open_services(Settings(database_url=url, poll_interval=10.0), upstream=upstream)
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        with services.sessions.begin() as session:
            job = Job(name="jobs/1", job_id="1", team="team-a", project="p", location="here", api_version="v1",
                      model="m", state="running", create_time=moment, recorded_at=moment, next_poll_at=moment,
                      provider="elsewhere")
            session.add(job)
        meter = JobMeter(services.sessions, pricing=PricingTable.load(), storage_factory=no_storage)
        checked = anyio.run(lambda: Poller(services, meter).check_jobs(everything=True))
        meter.close()
        with services.sessions() as session:
            [job] = session.scalars(select(Job)).all()
            assert (checked, job.poll_failures, job.metering_state) == (1, 1, None)
            assert job.next_poll_at is not None and job.next_poll_at.replace(tzinfo=UTC) > datetime.now(UTC)
    finally:
        anyio.run(close_services, services)
