"""The completion poller: checks unfinished jobs against their provider, and meters the ones that ended.

Runs inside `vbp serve` (every VBP_POLL_INTERVAL seconds) and once with `vbp meter`. Young jobs are checked at
the base pace and older ones less often; a job whose check fails (429, 5xx, no connection) backs off. `vbp meter`
asks for everything now: every unfinished job is checked and every ended one metered, whatever its next time.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import anyio
from anyio import to_thread
from sqlalchemy import select

from proxy.clock import utcnow
from proxy.ledger import jobs as ledger
from proxy.ledger.models import Job
from proxy.metering.job_meter import JobMeter, Outcome
from proxy.providers.registry import UnknownProvider, get_provider
from proxy.services import Services

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600.0
_BATCH = 100


class Poller:
    """One per process; several processes (replicas) may poll the same ledger safely."""

    def __init__(self, services: Services, meter: JobMeter) -> None:
        self.services = services
        self.meter = meter
        meter.observe = services.metrics.observe_metering
        self._metering = anyio.CapacityLimiter(1)

    async def run(self) -> None:
        """Poll and meter until cancelled."""
        interval = self.services.settings.poll_interval
        while True:
            started = time.perf_counter()
            try:
                await self.pass_once()
            except Exception:  # a bad pass must not end the loop
                log.exception("poller pass failed")
            self.services.metrics.observe_poll_pass(time.perf_counter() - started)
            await anyio.sleep(min(interval, 5.0) if interval > 0 else 1.0)

    async def pass_once(self, *, name: str | None = None, everything: bool = False) -> list[Outcome]:
        """Check the jobs that are due for a check, then meter every ended job that is ready.

        `name` (that job) or `everything` (every job): now, whatever their next check or retry time.
        """
        await self.check_jobs(name=name, everything=everything)
        force = everything or name is not None
        limit = 1_000_000 if everything else 50
        return await to_thread.run_sync(lambda: self.meter.meter_due(name=name, force=force, limit=limit),
                                        limiter=self._metering)

    async def check_jobs(self, *, name: str | None = None, everything: bool = False) -> int:
        """GET each unfinished job whose next check is due (`name`: that job; `everything`: all of them, in batches);
        record what the provider says. Returns how many were checked."""
        now = utcnow()

        def batch(after: int) -> list[tuple[int, str, str, str, str]]:
            with self.services.sessions() as session:
                query = select(Job.id, Job.name, Job.api_version, Job.location, Job.provider).where(
                    Job.metering_state.is_(None), Job.deleted_at.is_(None))
                if name:
                    query = query.where(Job.name == name)
                elif everything:
                    query = query.where(Job.id > after).order_by(Job.id)
                else:
                    query = query.where(Job.next_poll_at <= now).order_by(Job.next_poll_at)
                rows = session.execute(query.limit(_BATCH)).all()
                return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

        checked, after = 0, 0
        while True:
            jobs = await to_thread.run_sync(batch, after)
            async with anyio.create_task_group() as group:
                limiter = anyio.CapacityLimiter(8)
                for job in jobs:
                    group.start_soon(self._check_one, *job, limiter)
            checked += len(jobs)
            if not everything or len(jobs) < _BATCH:
                return checked
            after = jobs[-1][0]

    async def _check_one(self, job_pk: int, name: str, api_version: str, location: str, provider: str,
                         limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            try:
                upstream = get_provider(provider, self.services.settings)
            except UnknownProvider as exc:  # recorded by a newer proxy: checked less and less often, as a failure
                log.warning("poll of %s skipped: %s", name, exc)
                reply = None
            else:
                reply = await upstream.read_job(self.services.upstream, name=name, api_version=api_version,
                                                location=location)
            await to_thread.run_sync(self._record, job_pk, reply)

    def _record(self, job_pk: int, reply: dict[str, object] | None) -> None:
        now = utcnow()
        interval = self.services.settings.poll_interval
        with self.services.sessions.begin() as session:
            job = session.get(Job, job_pk)
            if job is None or job.metering_state is not None:
                return
            if reply is None:
                job.poll_failures += 1
                job.next_poll_at = now + timedelta(seconds=min(interval * 2 ** job.poll_failures, MAX_BACKOFF_SECONDS))
                return
            job.poll_failures = 0
            ledger.record_seen(session, job=job, reply=reply, source="poller")
            if job.metering_state is None:
                ledger.schedule_poll(job, now=now, base_interval=interval)
        self.services.jobs.remember(job)
