"""`create_app`: the proxy's routes, middleware and lifespan, assembled in one visible place."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any

import anyio
from anyio import to_thread
from starlette.applications import Starlette
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from proxy.budgets.api import budget_routes
from proxy.errors import NotFound, Unauthenticated
from proxy.gateway.accounting import RequestAccounting, accounted_as
from proxy.gateway.error_replies import ErrorReplies
from proxy.gateway.request_id import RequestIds
from proxy.ledger.engine import current_revision, head_revision
from proxy.ledger.reconcile import Reconciler, catalog_providers
from proxy.ledger.request_log_retention import keep_pruning
from proxy.metering.poller import Poller
from proxy.openai_door.azure_routes import azure_routes
from proxy.openai_door.routes import openai_routes
from proxy.placement.state import placement_reader
from proxy.providers.vertex.passthrough import Passthrough
from proxy.providers.vertex.paths import is_passthrough_path
from proxy.reports.http import report_routes
from proxy.reports.line_costs_http import line_cost_routes
from proxy.reports.metrics import TimedUpstream
from proxy.services import Services, close_services, open_meter, open_services
from proxy.settings import Settings
from proxy.tenancy.auth import bearer_token
from proxy.tenancy.key_api import key_routes
from proxy.tenancy.team_api import team_routes
from proxy.upstream import Upstream
from proxy.webhooks.api import webhook_routes
from proxy.webhooks.delivery import Dispatcher

log = logging.getLogger("proxy")


ASGIApp = Callable[..., Any]


class Site(Starlette):
    """Starlette without its own error middleware: errors are the gateway's (`ErrorReplies`), whatever the route."""

    def build_middleware_stack(self) -> ASGIApp:
        handlers = {key: value for key, value in self.exception_handlers.items() if key not in (500, Exception)}
        return ExceptionMiddleware(self.router, handlers=handlers)


class ProxyApp:
    """The ASGI entry: the gateway's middleware, then passthrough paths straight to the raw handler and everything
    else to Starlette's routes."""

    def __init__(self, settings: Settings, *, upstream: Upstream | None = None) -> None:
        self.settings = settings
        self._upstream = upstream
        self.services: Services | None = None
        self.passthrough: Passthrough | None = None
        self.poller: Poller | None = None
        self.site = Site(routes=[
            Route("/healthz", accounted_as("healthz", self.healthz)),
            Route("/readyz", accounted_as("readyz", self.readyz)),
            Route("/metrics", accounted_as("metrics", self.metrics)),
            *key_routes(lambda: self.services),
            *team_routes(lambda: self.services),
            *report_routes(lambda: self.services),
            *openai_routes(lambda: self.services),
            *azure_routes(lambda: self.services),
            *budget_routes(lambda: self.services),
            *webhook_routes(lambda: self.services),
            *line_cost_routes(lambda: self.services),
        ], lifespan=self.lifespan, exception_handlers={404: self.not_found, 405: self.not_found})
        # `/v1/keys/` must be a 404, not a redirect to `/v1/keys` built from the Host header the caller sent.
        self.site.router.redirect_slashes = False
        # The gateway: every request, on every route, passes these in order (outermost first).
        layers: list[Callable[[ASGIApp], ASGIApp]] = [
            RequestIds,                                                  # keep or make x-request-id; echo it
            partial(RequestAccounting, services=lambda: self.services),  # one log row + one metrics observation
            ErrorReplies,                                                # ApiError -> the route's dialect; 500s
        ]
        self.stack: ASGIApp = self.dispatch
        for layer in reversed(layers):
            self.stack = layer(self.stack)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.stack(scope, receive, send)

    async def dispatch(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The native door's raw handler for its paths; Starlette's routes for the rest (and the lifespan)."""
        if scope["type"] == "http" and is_passthrough_path(scope.get("raw_path") or scope["path"].encode()):
            assert self.passthrough is not None, "the lifespan has not run"
            await self.passthrough(scope, receive, send)
            return
        await self.site(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        services = await to_thread.run_sync(lambda: open_services(self.settings, upstream=self._upstream))
        services.upstream = TimedUpstream(services.upstream, services.metrics)
        self.services = services
        self.passthrough = Passthrough(services)
        if not self.settings.files_bucket:  # not a start-up failure: the native door serves without it
            log.info("the OpenAI door (/v1/files, /v1/batches) is off: VBP_FILES_BUCKET is not set")
        try:
            async with anyio.create_task_group() as background:
                if self.settings.poller_enabled:
                    self.poller = Poller(services, open_meter(services))
                    background.start_soon(self.poller.run)
                for provider in catalog_providers(services):
                    background.start_soon(Reconciler(services, provider=provider).run)
                background.start_soon(Dispatcher(services.sessions, self.settings).run)
                background.start_soon(partial(keep_pruning, services.engine, keep_days=self.settings.request_log_days,
                                              now=services.now))
                with self._reload_pricing_on_sighup():
                    yield
                background.cancel_scope.cancel()
        finally:
            if self.poller is not None:
                self.poller.meter.close()
            await close_services(services)

    @contextlib.contextmanager
    def _reload_pricing_on_sighup(self) -> Iterator[None]:
        """`kill -HUP` makes the poller load the pricing files at its next pass (only where signals can be
        handled: the main thread, as under `vbp serve`; an app run in a test's thread has no handler)."""
        watcher = self.poller.meter.watcher if self.poller is not None else None
        in_main_thread = threading.current_thread() is threading.main_thread()
        if watcher is None or not hasattr(signal, "SIGHUP") or not in_main_thread:
            yield
            return
        previous = signal.signal(signal.SIGHUP, lambda _signum, _frame: watcher.request_reload())
        try:
            yield
        finally:
            signal.signal(signal.SIGHUP, previous)

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        """Ready when the database answers and its schema is at the newest migration."""
        assert self.services is not None
        try:
            revision = await to_thread.run_sync(current_revision, self.services.engine)
        except Exception as exc:  # any database failure means not ready
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        head = head_revision(self.settings.migrations_path)
        if revision != head:
            return JSONResponse({"status": "unavailable", "reason": f"database at {revision}, code at {head}"},
                                status_code=503)
        return JSONResponse({"status": "ok", "revision": revision})

    async def metrics(self, request: Request) -> Response:
        """Prometheus metrics; with VBP_METRICS_TOKEN set, only for `Authorization: Bearer <that token>`."""
        assert self.services is not None
        token = self.settings.metrics_token
        if token is not None and not _same_secret(bearer_token(request.headers.get("authorization")), token):
            raise Unauthenticated("/metrics needs its bearer token (VBP_METRICS_TOKEN).",
                                  headers={"www-authenticate": 'Bearer realm="metrics"'})
        self.services.metrics.watch_ledger(self.services.sessions,
                                           placement=placement_reader(self.settings, self.services.catalog))
        return PlainTextResponse(await to_thread.run_sync(self.services.metrics.render),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    async def not_found(self, request: Request, _exc: Exception) -> Response:
        raise NotFound(f"The requested URL {request.url.path} was not found on this server.")


def _same_secret(given: str | None, expected: str) -> bool:
    """Compared in constant time, over digests so that not even the length shows."""
    digest = hashlib.sha256((given or "").encode()).digest()
    return given is not None and hmac.compare_digest(digest, hashlib.sha256(expected.encode()).digest())


def create_app(settings: Settings, *, upstream: Upstream | None = None) -> ProxyApp:
    """Build the proxy as an ASGI app; `upstream` lets tests and tools supply their own transport."""
    return ProxyApp(settings, upstream=upstream)
