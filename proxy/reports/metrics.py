"""Prometheus metrics of one proxy process, on a registry of its own (so several apps can live in one test run).

    vbp_requests_total{route,status}             requests: passthrough operations and the site's routes
    vbp_request_seconds{route}                   latency as the client sees it
    vbp_upstream_seconds{method,outcome}         Vertex calls (retries included): outcome is the HTTP status or
                                                 the error raised (DEADLINE_EXCEEDED, UNAVAILABLE)
    vbp_metering_seconds{result}                 one job's metering: metered, unpriced, settled, unmeterable, retry,
                                                 skipped (see proxy.metering.job_meter)
    vbp_poller_pass_seconds, vbp_poller_last_pass_timestamp_seconds
From the ledger, read when scraped (cached for a few seconds, the same on every replica):
    vbp_jobs{state}                              jobs by Vertex state
    vbp_metered_jobs{team,model,cost_status}     metered jobs
    vbp_metered_cost_usd{team,model}             cost of priced jobs (a float: the ledger holds the exact figure)
    vbp_metered_tokens{team,model,kind}          prompt, cached, candidates, thoughts, tool_use_prompt
    vbp_unpriced_jobs{team,model}                metered jobs without a price
    vbp_poller_lag_seconds                       how long the most overdue completion check has waited
    vbp_metering_backlog_jobs                    ended jobs waiting to be metered
    vbp_ledger_up                                1 when those queries worked
    vbp_placement_queued_tokens{target,provider,model}  tokens each placement target (catalog deployment, pooled
                                                 project/location) holds queued (`proxy.placement.claims`)
    vbp_placement_quota_tokens{target}, vbp_placement_headroom_tokens{target}   for targets with a quota
    vbp_placement_health{target,health}          1 for the target's breaker state: healthy, probing, cooling
    vbp_placements{target,state}                 placements made there: held, placed, released
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.errors import ApiError
from proxy.ledger.models import Job, JobRollup

if TYPE_CHECKING:
    from proxy.placement.state import TargetState
    from proxy.upstream import Upstream, UpstreamResponse
    from proxy.upstream.base import Body

log = logging.getLogger(__name__)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_METERING_SECONDS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
TOKEN_KINDS = ("prompt", "cached", "candidates", "thoughts", "tool_use_prompt")


class Metrics:
    """The counters and histograms the proxy updates as it works, and the ledger's figures at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("vbp_requests_total", "Requests by route and status.",
                                ["route", "status"], registry=self.registry)
        self.request_seconds = Histogram("vbp_request_seconds", "Latency as the client sees it, by route.",
                                         ["route"], buckets=_SECONDS, registry=self.registry)
        self.upstream_seconds = Histogram("vbp_upstream_seconds", "Vertex calls until the reply's headers "
                                          "(retries included), by method and outcome.", ["method", "outcome"],
                                          buckets=_SECONDS, registry=self.registry)
        self.metering_seconds = Histogram("vbp_metering_seconds", "Metering one ended job, by result.", ["result"],
                                          buckets=_METERING_SECONDS, registry=self.registry)
        self.poller_pass_seconds = Histogram("vbp_poller_pass_seconds", "One completion-and-metering pass.",
                                             buckets=_METERING_SECONDS, registry=self.registry)
        self.poller_last_pass = Gauge("vbp_poller_last_pass_timestamp_seconds",
                                      "When this process last finished a poller pass (Unix time).",
                                      registry=self.registry)
        self._ledger: LedgerCollector | None = None
        self._lock = threading.Lock()
        # The labelled children, looked up once: `labels()` costs several microseconds on every request.
        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._upstream_children: dict[tuple[str, str], Any] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        children = self._request_children.get((route, status))
        if children is None:
            children = self._request_children[(route, status)] = (self.requests.labels(route, str(status)),
                                                                   self.request_seconds.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def observe_upstream(self, method: str, outcome: str, seconds: float) -> None:
        child = self._upstream_children.get((method, outcome))
        if child is None:
            child = self._upstream_children[(method, outcome)] = self.upstream_seconds.labels(method, outcome)
        child.observe(seconds)

    def observe_metering(self, result: str, seconds: float) -> None:
        self.metering_seconds.labels(result).observe(seconds)

    def observe_poll_pass(self, seconds: float) -> None:
        self.poller_pass_seconds.observe(seconds)
        self.poller_last_pass.set(time.time())

    def watch_ledger(self, sessions: sessionmaker[Session], *, ttl: float = 10.0,
                     placement: Callable[[Session], Sequence[TargetState]] | None = None) -> None:
        """Report the ledger's figures too (once; later calls do nothing); `placement` reads the placement
        targets' state (`proxy.placement.state.placement_state`)."""
        with self._lock:
            if self._ledger is None:
                self._ledger = LedgerCollector(sessions, ttl=ttl, placement=placement)
                self.registry.register(self._ledger)

    def render(self) -> bytes:
        """The exposition text (blocking when the ledger is watched: it may query the database)."""
        return generate_latest(self.registry)


def _usd(micro: Any, rest: Any) -> float:
    return float(Decimal(int(micro)) / 10**6 + Decimal(int(rest)) / 10**12)


class LedgerCollector:
    """Gauges computed from the ledger when scraped, cached for `ttl` seconds so scrapes stay cheap."""

    def __init__(self, sessions: sessionmaker[Session], *, ttl: float,
                 placement: Callable[[Session], Sequence[TargetState]] | None = None) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self.placement = placement
        self._cached: tuple[float, list[Metric]] | None = None
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: registering must not query the database

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or self._cached[0] < time.monotonic():
                self._cached = (time.monotonic() + self.ttl, self._read())
            yield from self._cached[1]

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("vbp_ledger_up", "1 when the ledger's figures could be read.")
        try:
            with self.sessions() as session:
                families = self._families(session)
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("metrics could not read the ledger: %s", exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]

    def _families(self, session: Session) -> list[Metric]:
        jobs = GaugeMetricFamily("vbp_jobs", "Jobs in the ledger by Vertex state.", labels=["state"])
        for state, count in session.execute(select(Job.state, func.count()).group_by(Job.state)):
            jobs.add_metric([state], count)

        metered = GaugeMetricFamily("vbp_metered_jobs", "Metered jobs by team, model and cost status.",
                                    labels=["team", "model", "cost_status"])
        cost = GaugeMetricFamily("vbp_metered_cost_usd", "Cost of priced jobs in USD (the ledger holds the exact "
                                 "figure).", labels=["team", "model"])
        tokens = GaugeMetricFamily("vbp_metered_tokens", "Tokens of metered jobs by kind.",
                                   labels=["team", "model", "kind"])
        unpriced = GaugeMetricFamily("vbp_unpriced_jobs", "Metered jobs that have no price.", labels=["team", "model"])
        r = JobRollup
        query = select(r.team, r.model, r.cost_status, func.sum(r.jobs), func.sum(r.cost_micro),
                       func.sum(r.cost_pico_rest), func.sum(r.prompt_tokens), func.sum(r.cached_tokens),
                       func.sum(r.candidates_tokens), func.sum(r.thoughts_tokens), func.sum(r.tool_use_prompt_tokens)
                       ).group_by(r.team, r.model, r.cost_status)
        costs: dict[tuple[str, str], tuple[int, int]] = {}
        token_sums: dict[tuple[str, str], list[int]] = {}
        unpriced_counts: dict[tuple[str, str], int] = {}
        for team, model, status, count, micro, rest, *kinds in session.execute(query):
            metered.add_metric([team, model, status], int(count))
            micro_sum, rest_sum = costs.get((team, model), (0, 0))
            costs[(team, model)] = (micro_sum + int(micro), rest_sum + int(rest))
            sums = token_sums.setdefault((team, model), [0] * len(TOKEN_KINDS))
            for i, value in enumerate(kinds):
                sums[i] += int(value)
            unpriced_counts[(team, model)] = unpriced_counts.get((team, model), 0) + (
                int(count) if status == "unpriced" else 0)
        for (team, model), (micro, rest) in sorted(costs.items()):
            cost.add_metric([team, model], _usd(micro, rest))
            unpriced.add_metric([team, model], unpriced_counts[(team, model)])
            for kind, value in zip(TOKEN_KINDS, token_sums[(team, model)], strict=True):
                tokens.add_metric([team, model, kind], value)

        now = utcnow()
        oldest = session.scalar(select(func.min(Job.next_poll_at)).where(
            Job.metering_state.is_(None), Job.deleted_at.is_(None), Job.next_poll_at <= now))
        lag = GaugeMetricFamily("vbp_poller_lag_seconds", "How long the most overdue completion check has waited.")
        lag.add_metric([], max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0)
        backlog = GaugeMetricFamily("vbp_metering_backlog_jobs", "Ended jobs waiting to be metered (or re-priced).")
        backlog.add_metric([], int(session.scalar(select(func.count()).select_from(Job).where(
            Job.metering_state.in_(("due", "claimed")))) or 0))
        placement = _placement_gauges(self.placement(session)) if self.placement is not None else []
        return [jobs, metered, cost, tokens, unpriced, lag, backlog, _budget_gauge(session), *placement]


def _placement_gauges(states: Sequence[TargetState]) -> list[Metric]:
    """Queued tokens, quota, headroom, breaker health and placements of every placement target."""
    queued = GaugeMetricFamily("vbp_placement_queued_tokens", "Tokens a placement target holds queued (estimated, "
                               "corrected by the upstream's own figure).", labels=["target", "provider", "model"])
    quota = GaugeMetricFamily("vbp_placement_quota_tokens", "A placement target's enqueued-token quota.",
                              labels=["target"])
    headroom = GaugeMetricFamily("vbp_placement_headroom_tokens", "Quota minus queued tokens.", labels=["target"])
    health = GaugeMetricFamily("vbp_placement_health", "1 for the circuit breaker's state of a placement target.",
                               labels=["target", "health"])
    placements = GaugeMetricFamily("vbp_placements", "Placements made on a target, by state.",
                                   labels=["target", "state"])
    for state in states:
        queued.add_metric([state.name, state.provider, state.model], state.queued_tokens)
        if state.quota is not None and state.headroom is not None:
            quota.add_metric([state.name], state.quota)
            headroom.add_metric([state.name], state.headroom)
        for name in ("healthy", "probing", "cooling"):
            health.add_metric([state.name, name], 1 if state.health == name else 0)
        for name in ("held", "placed", "released"):
            placements.add_metric([state.name, name], state.placements.get(name, 0))
    return [queued, quota, headroom, health, placements]


def _budget_gauge(session: Session) -> Metric:
    """Every budget's limit, spent, reserved and remaining in its current period (USD as floats)."""
    from proxy.budgets.store import list_budgets
    from proxy.clock import utcnow

    gauge = GaugeMetricFamily("vbp_budget_usd", "Budgets in their current period, USD: limit, spent, reserved, "
                                                "remaining.", labels=["team", "key_id", "figure"])
    for status in list_budgets(session, now=utcnow()):
        key = status.budget.key_id or ""
        for figure, pico in (("limit", status.budget.limit_pico), ("spent", status.spent),
                             ("reserved", status.reserved), ("remaining", status.remaining)):
            gauge.add_metric([status.budget.team, key, figure], float(Decimal(pico) / 10**12))
    return gauge


class TimedUpstream:
    """Wraps the upstream so every Vertex call is timed into `vbp_upstream_seconds`."""

    def __init__(self, inner: Upstream, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def send(self, method: str, url: str, *, headers: list[tuple[str, str]], body: Body,
                   idempotent: bool) -> UpstreamResponse:
        started = time.perf_counter()
        try:
            response = await self.inner.send(method, url, headers=headers, body=body, idempotent=idempotent)
        except ApiError as exc:
            self.metrics.observe_upstream(method, exc.status, time.perf_counter() - started)
            raise
        self.metrics.observe_upstream(method, str(response.status), time.perf_counter() - started)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
