"""Metering one ended job: claim it, read every final output row from Cloud Storage, price it, write it once.

What an attempt can end in (`Outcome.result`):
- metered / unpriced: the outputs were read; the figures are written (no price for the model: unpriced, never $0).
- settled: the job ended with no output to read (FAILED/CANCELLED/EXPIRED with no output directory, no output
  file, or an output bucket that does not exist and no completed line): 0 lines and nothing billed, with the reason.
- unmeterable: outputs that exist (or existed) but cannot be read (BigQuery; a deleted bucket of a job that
  completed lines): no cost figure, with the reason.
- retry: the outputs may still appear or a read failed: the job waits, with the reason and the next try's time.
- skipped: another process holds the job's claim.

Where a job's outputs are, and how their rows read, is the job's provider's to say (`proxy.providers.base`).
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
from datetime import datetime, timedelta
from typing import Any

from google.cloud import storage
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from proxy.budgets import reservation as reservations
from proxy.clock import utcnow
from proxy.ledger.models import Job, JobMetering
from proxy.metering import claims
from proxy.metering.objects import fingerprint
from proxy.metering.pricing import PricingTable, Rates
from proxy.metering.pricing_reload import PricingWatcher
from proxy.metering.ranges import RangeMeter
from proxy.metering.totals import JobTotals
from proxy.money import format_usd
from proxy.providers.base import (
    BucketMissing,
    NoOutput,
    NotReady,
    OutputMissing,
    OutputObject,
    OutputReadError,
    Unreadable,
)
from proxy.providers.registry import UnknownProvider, get_provider
from proxy.settings import default
from proxy.webhooks.outbox import enqueue_job_metered

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS: float = default("metering_lease_seconds")
RELISTS = 2  # how many times a job whose listed object was replaced mid-read is listed again before it waits


def storage_client() -> storage.Client:
    """Cloud Storage with the platform's credentials (google-cloud-storage itself goes anonymously to a local
    emulator named by STORAGE_EMULATOR_HOST)."""
    return storage.Client()


@dataclass(frozen=True)
class Outcome:
    """What a metering attempt did to one job: the result (see the module docstring) and a sentence for people."""

    name: str
    result: str  # metered | unpriced | settled | unmeterable | retry | skipped
    detail: str = ""


def describe_figures(*, succeeded: int, failed: int, malformed: int, no_usage: int, tokens: dict[str, int],
                     cost_pico: int | None) -> str:
    """`3 lines (2 succeeded, 1 failed, 0 malformed); tokens: 30 prompt, 45 candidates; cost 0.000123 USD`."""
    counted = ", ".join(f"{value:,} {kind}" for kind, value in tokens.items() if value)
    cost = f"cost {format_usd(cost_pico)} USD" if cost_pico is not None else "no cost figure"
    without = f", {no_usage:,} without usage" if no_usage else ""
    return (f"{succeeded + failed + malformed + no_usage:,} lines ({succeeded:,} succeeded, {failed:,} failed, "
            f"{malformed:,} malformed{without}); tokens: {counted or 'none'}; {cost}")


def describe_totals(totals: JobTotals) -> str:
    """What a metering found, in one sentence (see `describe_figures`)."""
    return describe_figures(succeeded=totals.succeeded, failed=totals.failed, malformed=totals.malformed,
                            no_usage=totals.no_usage, cost_pico=totals.cost_pico, tokens={
                                "prompt": totals.prompt, "cached": totals.cached, "candidates": totals.candidates,
                                "thoughts": totals.thoughts, "embedding": totals.embedding_tokens,
                                "characters": totals.embedding_characters})


def describe_job(job: Job) -> str:
    """The figures a job was metered with, in the same sentence."""
    return describe_figures(succeeded=job.lines_succeeded, failed=job.lines_failed, malformed=job.lines_malformed,
                            no_usage=job.lines_no_usage, cost_pico=job.cost_pico, tokens={
                                "prompt": job.prompt_tokens, "cached": job.cached_tokens,
                                "candidates": job.candidates_tokens, "thoughts": job.thoughts_tokens,
                                "embedding": job.embedding_tokens, "characters": job.input_characters})


def _figures(totals: JobTotals, *, cost_status: str, cost_pico: int | None) -> dict[str, Any]:
    return {
        "cost_status": cost_status, "cost_pico": cost_pico,
        "prompt_tokens": totals.prompt, "cached_tokens": totals.cached, "candidates_tokens": totals.candidates,
        "thoughts_tokens": totals.thoughts, "tool_use_prompt_tokens": totals.tool_use_prompt,
        "audio_prompt_tokens": totals.audio_prompt, "embedding_tokens": totals.embedding_tokens,
        "input_characters": totals.embedding_characters, "lines_succeeded": totals.succeeded,
        "lines_failed": totals.failed, "lines_malformed": totals.malformed, "lines_no_usage": totals.no_usage,
    }


class JobMeter:
    """Claims and meters ended jobs; safe to run in any number of processes at once."""

    def __init__(self, sessions: sessionmaker[Session], *, pricing: PricingTable,
                 storage_factory: Callable[[], storage.Client] = storage_client,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, ranges: RangeMeter | None = None,
                 watcher: PricingWatcher | None = None) -> None:
        self.sessions = sessions
        self.ranges = ranges if ranges is not None else RangeMeter()
        self.pricing = pricing
        self.watcher = watcher  # reloads `pricing` when its files change (`vbp serve`)
        self.storage_factory = storage_factory
        self._storage: storage.Client | None = None
        self.lease = lease_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.observe: Callable[[str, float], None] | None = None  # (result, seconds) of each job: metrics

    def close(self) -> None:
        """Stop the metering worker processes, if any were started, and close the Cloud Storage connections."""
        self.ranges.close()
        if self._storage is not None:
            self._storage.close()
            self._storage = None

    def storage(self) -> storage.Client:
        """The one Cloud Storage client of this meter. A client per job left its pooled connection open until a
        full garbage collection found it (the soak saw them pile up in CLOSE_WAIT), and paid its set-up each time;
        jobs are metered one at a time, so one client (one connection pool) serves them all."""
        if self._storage is None:
            self._storage = self.storage_factory()
        return self._storage

    def meter_due(self, *, name: str | None = None, limit: int = 50, force: bool = False) -> list[Outcome]:
        """Meter every job that is ready (or just `name`); `force`: also those waiting for their retry time.
        Returns what happened to each."""
        if self.watcher is not None and self.watcher.check():
            self.pricing = self.watcher.table
        with self.sessions() as session:
            ready = claims.claimable_jobs(session, now=utcnow(), limit=limit, name=name, force=force)
        outcomes = []
        for job_pk in ready:
            started = time.perf_counter()
            outcomes.append(self.meter(job_pk, force=force))
            if self.observe is not None:
                self.observe(outcomes[-1].result, time.perf_counter() - started)
        return outcomes

    def meter(self, job_pk: int, *, force: bool = False) -> Outcome:
        """Claim one job and meter it, or leave it to whoever holds it."""
        with self.sessions.begin() as session:
            token = claims.claim(session, job_pk=job_pk, now=utcnow(), lease=self.lease, force=force)
        with self.sessions() as session:
            job = session.get(Job, job_pk)
            assert job is not None
            session.expunge(job)
        if token is None:
            until = f" until {job.claim_until:%Y-%m-%d %H:%M:%S} UTC" if job.claim_until else ""
            return Outcome(job.name, "skipped", f"another process is metering it (its claim lasts{until})")
        stop = threading.Event()
        keeper = threading.Thread(target=self._keep_lease, args=(job_pk, token, stop), daemon=True,
                                  name="vbp-lease")
        keeper.start()
        try:
            return self._meter_relisting(job, token)
        except (OutputReadError, NotReady) as exc:
            retry_in = min(30.0 * 2 ** job.metering_attempts, 3600.0)
            refetch = isinstance(exc, NotReady) and exc.refetch
            now = utcnow()
            log.warning("metering %s waits, next try in %.0f s: %s", job.name, retry_in, exc)
            with self.sessions.begin() as session:
                claims.give_up(session, job_pk=job_pk, token=token, now=now, error=str(exc), retry_in=retry_in,
                               refetch=refetch)
            when = now + timedelta(seconds=retry_in)
            return Outcome(job.name, "retry", f"{exc}; next try at {when:%Y-%m-%d %H:%M:%S} UTC")
        finally:
            stop.set()
            keeper.join(timeout=5)

    def _meter_relisting(self, job: Job, token: str) -> Outcome:
        """Meter the claimed job; an object replaced while it was read (its listed generation is gone) is listed
        and read again at once, up to RELISTS times, instead of waiting for the next retry time: a rewrite of an
        output file (a mirror written twice) is over by the time its old generation is found gone."""
        for attempt in range(RELISTS + 1):
            try:
                return self._meter_claimed(job, token)
            except OutputMissing as exc:
                if isinstance(exc, BucketMissing) or attempt == RELISTS:
                    raise
                log.info("metering %s lists its outputs again: %s", job.name, exc)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _keep_lease(self, job_pk: int, token: str, stop: threading.Event) -> None:
        while not stop.wait(self.lease / 3):
            with self.sessions.begin() as session:
                if not claims.renew(session, job_pk=job_pk, token=token, now=utcnow(), lease=self.lease):
                    return

    def _meter_claimed(self, job: Job, token: str) -> Outcome:
        pricing = self.pricing  # one table for the whole job, even if a reload swaps `self.pricing` meanwhile
        try:
            provider = get_provider(job.provider)
        except UnknownProvider as exc:  # a job recorded by a newer proxy: it waits for one that knows its provider
            raise NotReady(f"{exc}, so this proxy cannot read its outputs") from exc
        try:
            objects = provider.output_objects(self.storage(), job)
        except NoOutput as exc:
            # Zero lines cost exactly nothing, whether or not the model has a price.
            self._finish(job, token, pricing=pricing, state="metered", cost_status="priced", cost_pico=0,
                         totals=JobTotals(None), rates=None, objects=[], note=str(exc))
            return Outcome(job.name, "settled", f"{exc}; 0 lines, cost 0.00 USD")
        except Unreadable as exc:
            self._finish(job, token, pricing=pricing, state="unmeterable", cost_status="unmeterable", cost_pico=None,
                         totals=JobTotals(None), rates=None, objects=[], note=str(exc))
            return Outcome(job.name, "unmeterable", str(exc))
        rates = pricing.rates_for(job.provider, job.model_id or job.model, job.create_time)
        totals = self.ranges.meter(self.storage(), objects, rates=rates, provider=provider.name)
        status = "priced" if rates is not None else "unpriced"
        note = None if rates is not None else f"no price for model {job.model_id!r} at {job.create_time:%Y-%m-%d}"
        self._finish(job, token, pricing=pricing, state="metered", cost_status=status, cost_pico=totals.cost_pico,
                     totals=totals, rates=rates, objects=objects, note=note)
        detail = describe_totals(totals) + ("" if rates is not None else
                                            f" ({note}: add it to the pricing table, then run `vbp reprice`)")
        return Outcome(job.name, "metered" if rates is not None else "unpriced", detail)

    def _finish(self, job: Job, token: str, *, pricing: PricingTable, state: str, cost_status: str,
                cost_pico: int | None, totals: JobTotals, rates: Rates | None, objects: list[OutputObject],
                note: str | None) -> None:
        now = utcnow()
        with self.sessions.begin() as session:
            previous = session.scalars(select(JobMetering).where(JobMetering.job_pk == job.id,
                                                                 JobMetering.superseded_at.is_(None))).all()
            history = JobMetering(
                job_pk=job.id, at=now, reason="reprice" if previous else "meter", cost_status=cost_status,
                cost_pico=cost_pico, pricing_version=pricing.version,
                pricing_rows=[rates.describe()] if rates is not None else [], fingerprint=fingerprint(objects),
                objects=[{"uri": o.uri, "generation": o.generation, "size": o.size} for o in objects],
                totals=totals.to_dict(), malformed_examples=list(totals.problems), note=note,
            )
            claims.finish(session, job_pk=job.id, token=token, now=now, state=state,
                          figures=_figures(totals, cost_status=cost_status, cost_pico=cost_pico), history=history)
            # In the same transaction as the figures: the job's budget reservation becomes its cost exactly once.
            reservations.settle_for_job(session, job_pk=job.id, cost_pico=cost_pico, cost_status=cost_status,
                                        now=now)
            for row in previous:
                row.superseded_at = now
            enqueue_job_metered(session, job_pk=job.id, metering=history)
        log.info("metered %s: %s, %d lines, cost_pico=%s%s", job.name, cost_status, totals.lines, cost_pico,
                 f" ({note})" if note else "")


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
