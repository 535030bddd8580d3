"""Metering one ended job: claim it, read every final output row from Cloud Storage, price it, write it once.

Blocking code (Cloud Storage reads and row parsing are CPU and I/O work): the poller runs it in a worker thread.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.ledger.models import Job, JobMetering
from proxy.metering import claims
from proxy.metering.pricing import PricingTable, Rates
from proxy.metering.ranges import RangeMeter
from proxy.metering.totals import JobTotals
from proxy.providers.vertex.outputs import (
    OutputMissing,
    OutputObject,
    OutputReadError,
    fingerprint,
    list_output_objects,
)
from proxy.providers.vertex.states import JobState, parse_state

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 120.0
_SUCCESS_STATES = {JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_PARTIALLY_SUCCEEDED}


def storage_client() -> storage.Client:
    """Cloud Storage with the platform's credentials, or anonymous against a local emulator."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project="vbp-local", credentials=AnonymousCredentials())
    return storage.Client()


@dataclass(frozen=True)
class Outcome:
    """What a metering attempt did to one job."""

    name: str
    result: str  # metered | unpriced | unmeterable | retry | skipped
    detail: str = ""


class NotReady(Exception):
    """The job's outputs are not there (yet): try again later."""


def _figures(totals: JobTotals, *, cost_status: str) -> dict[str, Any]:
    return {
        "cost_status": cost_status, "cost_pico": totals.cost_pico,
        "prompt_tokens": totals.prompt, "cached_tokens": totals.cached, "candidates_tokens": totals.candidates,
        "thoughts_tokens": totals.thoughts, "tool_use_prompt_tokens": totals.tool_use_prompt,
        "audio_prompt_tokens": totals.audio_prompt, "embedding_tokens": totals.embedding_tokens,
        "input_characters": totals.embedding_characters, "lines_succeeded": totals.succeeded,
        "lines_failed": totals.failed, "lines_malformed": totals.malformed, "lines_no_usage": totals.no_usage,
    }


def is_bigquery(job: Job) -> bool:
    return job.output_format == "bigquery" or any(
        (value or "").startswith("bq://") for value in (job.output_prefix, job.output_directory))


class JobMeter:
    """Claims and meters ended jobs; safe to run in any number of processes at once."""

    def __init__(self, sessions: sessionmaker[Session], *, pricing: PricingTable,
                 storage_factory: Callable[[], storage.Client] = storage_client,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, ranges: RangeMeter | None = None) -> None:
        self.sessions = sessions
        self.ranges = ranges if ranges is not None else RangeMeter()
        self.pricing = pricing
        self.storage_factory = storage_factory
        self.lease = lease_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.observe: Callable[[str, float], None] | None = None  # (result, seconds) of each job: metrics

    def close(self) -> None:
        """Stop the metering worker processes, if any were started."""
        self.ranges.close()

    def meter_due(self, *, name: str | None = None, limit: int = 50) -> list[Outcome]:
        """Meter every job that is ready (or just `name`); returns what happened to each."""
        with self.sessions() as session:
            ready = claims.claimable_jobs(session, now=utcnow(), limit=limit, name=name)
        outcomes = []
        for job_pk in ready:
            started = time.perf_counter()
            outcomes.append(self.meter(job_pk))
            if self.observe is not None:
                self.observe(outcomes[-1].result, time.perf_counter() - started)
        return outcomes

    def meter(self, job_pk: int) -> Outcome:
        """Claim one job and meter it, or leave it to whoever holds it."""
        with self.sessions.begin() as session:
            token = claims.claim(session, job_pk=job_pk, now=utcnow(), lease=self.lease)
        with self.sessions() as session:
            job = session.get(Job, job_pk)
            assert job is not None
            session.expunge(job)
        if token is None:
            return Outcome(job.name, "skipped", "claimed elsewhere")
        stop = threading.Event()
        keeper = threading.Thread(target=self._keep_lease, args=(job_pk, token, stop), daemon=True,
                                  name="vbp-lease")
        keeper.start()
        try:
            return self._meter_claimed(job, token)
        except (OutputReadError, NotReady) as exc:
            retry_in = 3600.0 if isinstance(exc, OutputMissing) else min(30.0 * 2 ** job.metering_attempts, 3600.0)
            log.warning("metering %s failed, retrying in %.0f s: %s", job.name, retry_in, exc)
            with self.sessions.begin() as session:
                claims.give_up(session, job_pk=job_pk, token=token, now=utcnow(), error=str(exc), retry_in=retry_in)
            return Outcome(job.name, "retry", str(exc))
        finally:
            stop.set()
            keeper.join(timeout=5)

    def _keep_lease(self, job_pk: int, token: str, stop: threading.Event) -> None:
        while not stop.wait(self.lease / 3):
            with self.sessions.begin() as session:
                if not claims.renew(session, job_pk=job_pk, token=token, now=utcnow(), lease=self.lease):
                    return

    def _meter_claimed(self, job: Job, token: str) -> Outcome:
        if is_bigquery(job):
            totals = JobTotals(None)
            self._finish(job, token, state="unmeterable", cost_status="unmeterable", totals=totals, rates=None,
                         objects=[], note="BigQuery outputs cannot be metered yet; this job has no cost figure.")
            return Outcome(job.name, "unmeterable", "bigquery output")
        objects = self._objects(job)
        rates = self.pricing.rates_for(job.model_id or job.model, job.create_time)
        totals = self.ranges.meter(self.storage_factory(), objects, rates=rates)
        status = "priced" if rates is not None else "unpriced"
        note = None if rates is not None else f"no price for model {job.model_id!r} at {job.create_time:%Y-%m-%d}"
        self._finish(job, token, state="metered", cost_status=status, totals=totals, rates=rates, objects=objects,
                     note=note)
        return Outcome(job.name, "metered" if rates is not None else "unpriced")

    def _objects(self, job: Job) -> list[OutputObject]:
        state = parse_state(job.state)
        if not job.output_directory:
            if state in _SUCCESS_STATES:
                raise NotReady(f"{job.name} ended {job.state} but shows no output directory yet")
            return []  # it ended before writing anything: nothing was completed, nothing is billed
        objects = list_output_objects(self.storage_factory(), job.output_directory)
        if not objects and state in _SUCCESS_STATES and (job.succeeded_count or 0) > 0:
            raise NotReady(f"no output files under {job.output_directory} yet")
        return objects

    def _finish(self, job: Job, token: str, *, state: str, cost_status: str, totals: JobTotals,
                rates: Rates | None, objects: list[OutputObject], note: str | None) -> None:
        now = utcnow()
        with self.sessions.begin() as session:
            previous = session.scalars(select(JobMetering).where(JobMetering.job_pk == job.id,
                                                                 JobMetering.superseded_at.is_(None))).all()
            history = JobMetering(
                job_pk=job.id, at=now, reason="reprice" if previous else "meter", cost_status=cost_status,
                cost_pico=totals.cost_pico, pricing_version=self.pricing.version,
                pricing_rows=[rates.describe()] if rates is not None else [], fingerprint=fingerprint(objects),
                objects=[{"uri": o.uri, "generation": o.generation, "size": o.size} for o in objects],
                totals=totals.to_dict(), malformed_examples=list(totals.problems), note=note,
            )
            claims.finish(session, job_pk=job.id, token=token, now=now, state=state,
                          figures=_figures(totals, cost_status=cost_status), history=history)
            for row in previous:
                row.superseded_at = now
        log.info("metered %s: %s, %d lines, cost_pico=%s", job.name, cost_status, totals.lines, totals.cost_pico)


def request_reprice(session: Session, *, name: str | None, every_version: bool, current_version: str,
                    now: datetime) -> int:
    """Send metered jobs back to metering: unpriced ones; with `every_version`, also those priced with another
    table version; with `name`, that one job. Their current figure stays until the new one replaces it."""
    query = update(Job).where(Job.metering_state.in_(("metered", "unmeterable")))
    if name is not None:
        query = query.where(Job.name == name)
    elif every_version:
        stale = select(JobMetering.job_pk).where(JobMetering.superseded_at.is_(None),
                                                 JobMetering.pricing_version != current_version)
        query = query.where((Job.cost_status == "unpriced") | Job.id.in_(stale))
    else:
        query = query.where(Job.cost_status == "unpriced")
    result = session.execute(query.values(metering_state="due", next_poll_at=None, metering_attempts=0)
                             .execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]
