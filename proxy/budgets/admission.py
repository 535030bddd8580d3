"""The create path's budget gate: estimate the batch, then reserve its `high`, or refuse before the upstream.

One object per process (`Services.budgets`), shared by the native door's create and `POST /v1/estimates` (and by
the OpenAI door's create, which calls `admit` with the Vertex body it builds for a Gemini model, and
`admit_estimate` with `estimate_openai_file` for an OpenAI or Azure model). Without a budget covering the key
nothing is read and nothing reserved: the create goes on as before. Under a budget, an input the proxy cannot
estimate (BigQuery, a model without a price, storage that cannot be read) is refused with 400
FAILED_PRECONDITION, unless every covering budget allows unestimated jobs (`vbp budgets set --allow-unestimated`).

Blocking work (Cloud Storage reads, the reservation's transaction) runs in worker threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

from anyio import to_thread
from google.cloud import storage
from sqlalchemy.orm import Session, sessionmaker

from proxy.budgets import inputs, reservation, store
from proxy.budgets.estimate import Estimate, EstimateError, LineEstimator
from proxy.budgets.openai_estimate import OpenAILineEstimator, deployment_prices
from proxy.clock import utcnow
from proxy.errors import FailedPrecondition, ResourceExhausted
from proxy.metering.pricing import PricingTable, Rates
from proxy.metering.pricing_reload import PricingWatcher
from proxy.providers.registry import DEFAULT_PROVIDER
from proxy.settings import Settings
from proxy.tenancy.keys import Principal

_PRICED_MODELS = 256  # the most models the gate keeps looked-up rates for
READER_THREADS = 32  # estimates reading at once; more wait for a reader (anyio runs at most 40 blocking calls)
PRICING_CHECK_SECONDS = 1.0  # a changed pricing folder reaches estimates within this time


class Unestimable(Exception):
    """A create whose cost cannot be estimated before it runs; the message says why."""


@dataclass(frozen=True)
class Admitted:
    """A create let through: its reservation (None when no budget covers the key) and estimate (if one was made)."""

    reservation_id: str | None
    estimate: Estimate | None


class BudgetGate:
    """Estimates and reservations for creates; the pricing table is loaded on first use and follows its files."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], *,
                 storage_factory: Any = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self._storage_factory = storage_factory or storage.Client
        self._storage: storage.Client | None = None
        self._watcher: PricingWatcher | None = None
        self._lock = threading.Lock()
        self._readers: ThreadPoolExecutor | None = None  # the read-ahead threads of estimates, started once
        self._checked = 0.0  # when the pricing folder was last looked at (time.monotonic())
        # (model as written, pricing version, UTC day) -> (rates, max output, canonical id): rates change only with
        # the table or the day (`effective_from`), so a create does not look them up again
        self._priced: dict[tuple[str, str, date], tuple[Rates, int, str | None]] = {}

    def pricing(self) -> PricingTable:
        """The pricing table metering uses (VBP_PRICING_DIR), reloaded when its files change (looked at once a
        second at most: the look is a `stat` of every file, a fixed cost every create would otherwise pay)."""
        with self._lock:
            now = time.monotonic()
            if self._watcher is None:
                self._watcher = PricingWatcher(PricingTable.load(self.settings.pricing_path))
                self._checked = now
            elif now - self._checked >= PRICING_CHECK_SECONDS:
                self._watcher.check()
                self._checked = now
            return self._watcher.table

    def close(self) -> None:
        """Close the Cloud Storage client, if one was made (left to the garbage collector, its socket stays open)."""
        with self._lock:
            if self._storage is not None:
                self._storage.close()
                self._storage = None
            if self._readers is not None:
                self._readers.shutdown(wait=False, cancel_futures=True)
                self._readers = None

    def storage(self) -> storage.Client:
        with self._lock:
            if self._storage is None:
                self._storage = self._storage_factory()
            return self._storage

    def readers(self) -> ThreadPoolExecutor:
        """The threads that read inputs ahead of the estimate (one per estimate in progress, kept between them)."""
        with self._lock:
            if self._readers is None:
                self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="vbp-estimate-read")
            return self._readers

    def estimator(self, model: str) -> LineEstimator:
        """A line estimator priced for `model` (any Vertex model resource form) as of now."""
        table, now = self.pricing(), utcnow()
        key = (model, table.version, now.date())
        priced = self._priced.get(key)
        if priced is None:
            rates = table.rates_for(DEFAULT_PROVIDER, model, now)
            if rates is None:
                raise EstimateError(f"the model {model!r} has no price in the pricing table")
            max_output = table.max_output_tokens(DEFAULT_PROVIDER, model)
            if max_output is None:
                raise EstimateError(f"the pricing table gives no max_output_tokens for the model {model!r}")
            priced = (rates, max_output, table.canonical(DEFAULT_PROVIDER, model))
            with self._lock:
                if len(self._priced) >= _PRICED_MODELS:  # a new day or table, or callers naming many models
                    self._priced.clear()
                self._priced[key] = priced
        rates, max_output, canonical = priced
        return LineEstimator(rates, max_output=max_output, model=canonical)

    def openai_estimator(self, deployments: Sequence[tuple[str, str]], *, model: str) -> OpenAILineEstimator:
        """An estimator of OpenAI-format lines of `model`, priced for the `(provider, model)` deployments it may run
        on as of now (EstimateError when one is unpriced)."""
        return OpenAILineEstimator(deployment_prices(self.pricing(), deployments, utcnow()), model=model)

    def estimate_job(self, job: dict[str, Any]) -> Estimate:
        """Estimate a (checked, camelCase) Vertex create body from its gs:// input; Unestimable says why not."""
        source = job.get("inputConfig") or {}
        if "gcsSource" not in source:
            kind = "BigQuery" if "bigquerySource" in source else "this"
            raise Unestimable(f"the proxy cannot read {kind} input to estimate its cost")
        try:
            estimator = self.estimator(str(job.get("model") or ""))
            client = self.storage()
            objects, notes = inputs.input_objects(client, source["gcsSource"].get("uris") or [])
            estimate = inputs.estimate_objects(client, objects, estimator,
                                               deadline=time.monotonic() + self.settings.estimate_seconds,
                                               pool=self.readers())
        except (EstimateError, inputs.InputUnreadable) as exc:
            raise Unestimable(str(exc)) from exc
        estimate.notes[:0] = notes
        return estimate

    def estimate_openai_file(self, uri: str, deployments: Sequence[tuple[str, str]], *, model: str) -> Estimate:
        """Estimate an OpenAI-format batch file (`gs://` URI of the caller's kept bytes) for the `(provider, model)`
        deployments it may run on (`proxy.budgets.openai_estimate`); Unestimable says why not."""
        try:
            estimator = self.openai_estimator(deployments, model=model)
            client = self.storage()
            objects, notes = inputs.input_objects(client, [uri])
            estimate = inputs.estimate_objects(client, objects, estimator,
                                               deadline=time.monotonic() + self.settings.estimate_seconds,
                                               pool=self.readers())
        except (EstimateError, inputs.InputUnreadable) as exc:
            raise Unestimable(str(exc)) from exc
        estimate.notes[:0] = notes
        return estimate

    def covering(self, principal: Principal) -> list[store.BudgetStatus]:
        """The budgets covering the key, with their current figures (blocking)."""
        with self.sessions() as session:
            now = utcnow()
            return [store.status(session, budget, now=now)
                    for budget in store.covering(session, team=principal.team, key_id=principal.key_id)]

    def reserve(self, principal: Principal, estimate: Estimate, *, project: str, location: str) -> str | None:
        """Hold the estimate's high (blocking); BudgetExceeded when a budget cannot take it."""
        with self.sessions.begin() as session:
            held = reservation.reserve(session, team=principal.team, key_id=principal.key_id, model=estimate.model,
                                       high_pico=estimate.high_pico, low_pico=estimate.low_pico, project=project,
                                       location=location, now=utcnow())
            return held.id if held is not None else None

    async def admit(self, principal: Principal, job: dict[str, Any], *, project: str, location: str) -> Admitted:
        """Estimate and reserve for a create, or raise the refusal (429 RESOURCE_EXHAUSTED, 400
        FAILED_PRECONDITION) before anything reaches the upstream."""
        return await self.admit_estimate(principal, lambda: self.estimate_job(job), project=project,
                                         location=location)

    async def admit_estimate(self, principal: Principal, estimate_of: Callable[[], Estimate], *, project: str,
                             location: str) -> Admitted:
        """`admit` for any input: `estimate_of` (blocking; raises Unestimable) is called only under a budget."""
        budgets = await to_thread.run_sync(self.covering, principal)
        if not budgets:
            return Admitted(None, None)
        try:
            estimate = await to_thread.run_sync(estimate_of)
        except Unestimable as exc:
            if all(status.budget.allow_unestimated for status in budgets):
                return Admitted(None, None)
            names = ", ".join(status.name for status in budgets if not status.budget.allow_unestimated)
            raise FailedPrecondition(f"The budget of {names} needs an estimate before a batch runs, and {exc}. An "
                                     "admin may allow unestimated jobs: vbp budgets set --allow-unestimated.") from None
        try:
            held = await to_thread.run_sync(lambda: self.reserve(principal, estimate, project=project,
                                                                 location=location))
        except reservation.BudgetExceeded as exc:
            raise ResourceExhausted(exc.refusal.message()) from None
        return Admitted(held, estimate)

    def release(self, reservation_id: str, note: str) -> None:
        """Let go of a reservation whose create produced no job (blocking)."""
        with self.sessions.begin() as session:
            reservation.release(session, reservation_id=reservation_id, now=utcnow(), note=note)
