"""The long-lived parts of a running proxy, built once at start-up and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.ledger import jobs as ledger
from proxy.ledger.job_index import JobIndex
from proxy.ledger.request_log import RequestLogWriter
from proxy.reports.metrics import Metrics
from proxy.settings import Settings
from proxy.tenancy.keys import KeyStore
from proxy.tenancy.team_policy import TeamPolicies
from proxy.upstream import Upstream

if TYPE_CHECKING:
    from proxy.budgets.admission import BudgetGate
    from proxy.catalog.catalog import Catalog
    from proxy.metering.job_meter import JobMeter
    from proxy.metering.ranges import RangeMeter


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keys: KeyStore
    jobs: JobIndex
    upstream: Upstream
    request_log: RequestLogWriter
    teams: TeamPolicies
    metrics: Metrics = field(default_factory=Metrics)
    budgets: BudgetGate | None = None  # estimates and reservations for creates (`open_services` sets it)
    # The model catalog (VBP_MODELS_FILE); None without one: Gemini on Vertex in VBP_DEFAULT_PROJECT/LOCATION.
    catalog: Catalog | None = None

    @staticmethod
    def now() -> datetime:
        return utcnow()

    def record_seen(self, replies: list[dict[str, Any]], source: str) -> None:
        """Record the states that replies show for jobs of the ledger (blocking: run in a thread)."""
        names = [str(r["name"]) for r in replies]
        with self.sessions.begin() as session:
            jobs = ledger.find_jobs_by_name(session, names=names)
            for reply in replies:
                job = jobs.get(str(reply["name"]))
                if job is not None:
                    ledger.record_seen(session, job=job, reply=reply, source=source)
        for job in jobs.values():
            self.jobs.remember(job)


def open_services(settings: Settings, *, upstream: Upstream | None = None) -> Services:
    """Build the shared parts (migrating the database first when VBP_AUTO_MIGRATE is on)."""
    from proxy.budgets.admission import BudgetGate
    from proxy.catalog.load import load_catalog
    from proxy.ledger.engine import make_engine, make_sessionmaker, upgrade
    from proxy.tenancy.keys import KeyStore

    if settings.auto_migrate:
        upgrade(settings.database_url, settings.migrations_path)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    request_log = RequestLogWriter(sessions)
    request_log.start()
    return Services(settings=settings, engine=engine, sessions=sessions,
                    keys=KeyStore(sessions, ttl=settings.key_cache_seconds), jobs=JobIndex(sessions),
                    upstream=upstream or default_upstream(settings), request_log=request_log,
                    teams=TeamPolicies(sessions, templates=settings.team_gcs_prefixes,
                                       ttl=settings.team_cache_seconds),
                    budgets=BudgetGate(settings, sessions),
                    catalog=load_catalog(settings.models_file) if settings.models_file else None)


async def close_services(services: Services) -> None:
    await services.upstream.aclose()
    if services.budgets is not None:
        services.budgets.close()
    services.request_log.close()
    services.engine.dispose()


def default_upstream(settings: Settings) -> Upstream:
    """The production upstream: aiohttp on the hot path, Google's application default credentials injected."""
    from proxy.upstream import AiohttpUpstream, RetryPolicy
    from proxy.upstream.google_credentials import TokenSource

    return AiohttpUpstream(
        tokens=TokenSource.from_environment(), timeout=settings.upstream_timeout,
        connect_timeout=settings.upstream_connect_timeout,
        retry=RetryPolicy(attempts=settings.retry_attempts, max_seconds=settings.retry_max_seconds),
        max_connections=settings.upstream_max_connections, keepalive_seconds=settings.upstream_keepalive_seconds,
    )


def open_meter(services: Services) -> JobMeter:
    """The job meter, with the pricing table of VBP_PRICING_DIR (reloaded when its files change)."""
    from proxy.metering.job_meter import JobMeter
    from proxy.metering.pricing import PricingTable
    from proxy.metering.pricing_reload import PricingWatcher
    from proxy.providers.vertex.scanner import warn_if_pure_python

    warn_if_pure_python()
    settings = services.settings
    pricing = PricingTable.load(settings.pricing_path)
    return JobMeter(services.sessions, pricing=pricing, lease_seconds=settings.metering_lease_seconds,
                    ranges=range_meter(settings), watcher=PricingWatcher(pricing))


def range_meter(settings: Settings) -> RangeMeter:
    """The parallel metering of large outputs, sized by VBP_METER_PROCESSES and VBP_METER_RANGE_MB."""
    from proxy.metering.ranges import RangeMeter

    return RangeMeter(processes=settings.meter_processes, min_bytes=settings.meter_range_mb * 1024 * 1024)
