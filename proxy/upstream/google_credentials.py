"""The Google credentials the proxy injects: a cached access token, and the same as an `httpx.Auth`.

google-auth refreshes with blocking HTTP calls, so a refresh runs on one dedicated worker thread: the
event loop keeps serving while it waits, concurrent callers share the one refresh in flight, and a busy
default executor (database work) cannot queue the refresh behind it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator, Generator
from typing import Any

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport
import google.auth.transport.requests
import httpx

from proxy.errors import ApiError, Internal, Unavailable

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"

log = logging.getLogger(__name__)


class _BoundedRequest(google.auth.transport.Request):
    """google-auth's requests transport with a ceiling on each call, so a hung token endpoint cannot hang us."""

    def __init__(self, timeout: float) -> None:
        self._inner = google.auth.transport.requests.Request()
        self._timeout = timeout

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: float | None = None, **kwargs: Any) -> Any:
        limit = self._timeout if timeout is None else min(timeout, self._timeout)
        return self._inner(url, method=method, body=body, headers=headers, timeout=limit, **kwargs)


class TokenSource:
    """Cached Google access token; refreshes in a worker thread, single flight, `margin` seconds before expiry."""

    def __init__(self, credentials: google.auth.credentials.Credentials | None = None, *, margin: float = 300.0,
                 refresh_timeout: float = 30.0) -> None:
        if credentials is None:
            credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
        self._credentials = google.auth.credentials.with_scopes_if_required(credentials, [CLOUD_PLATFORM])
        self._margin = margin
        self._request = _BoundedRequest(refresh_timeout)
        self._token: str | None = None
        self._refresh_at = 0.0  # wall-clock seconds, like the credentials' expiry
        self._expires_at = 0.0
        self._state_lock = threading.Lock()  # held briefly, also from the event loop thread
        self._refresh_lock = threading.Lock()  # held across the token endpoint call: one refresh at a time
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._inflight: asyncio.Task[str] | None = None
        self.refresh_count = 0

    @classmethod
    def from_environment(cls, *, margin: float = 300.0) -> TokenSource:
        """Application default credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud's file, or the metadata server."""
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
        return cls(credentials, margin=margin)

    def __repr__(self) -> str:
        remaining = self._expires_at - time.time() if self._token is not None else None
        expiry = "none" if remaining is None else ("never" if math.isinf(remaining) else f"{remaining:.0f}s")
        return (f"TokenSource(credentials={type(self._credentials).__name__}, refreshes={self.refresh_count}, "
                f"expires_in={expiry})")

    async def token(self) -> str:
        """A valid access token, refreshed first if it is missing, invalidated or within `margin` of expiry."""
        token = self._token
        if token is not None and time.time() < self._refresh_at:
            return token
        loop = asyncio.get_running_loop()
        task = self._inflight
        if task is None or task.done():
            task = loop.create_task(self._refresh(loop, token))
            # Mark a failure as seen even if every waiter was cancelled; the next call starts afresh.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._inflight = task
        elif task.get_loop() is not loop:
            # Another event loop owns the refresh in flight; the worker thread still runs one at a time.
            return await loop.run_in_executor(self._worker(), self._refresh_blocking, token)
        # shield: one caller giving up must not cancel the refresh the others are waiting for.
        return await asyncio.shield(task)

    def token_blocking(self) -> str:
        """The same as `token()` for synchronous callers (refreshes in the calling thread)."""
        token = self._token
        if token is not None and time.time() < self._refresh_at:
            return token
        return self._refresh_blocking(token)

    def invalidate(self, token: str) -> None:
        """After an upstream 401: the next call refreshes, unless `token` has already been replaced."""
        with self._state_lock:
            if token == self._token:
                self._refresh_at = 0.0

    def close(self) -> None:
        """Stop the refresh thread (a later refresh starts a new one)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def _worker(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                                   thread_name_prefix="vbp-google-token")
        return self._executor

    async def _refresh(self, loop: asyncio.AbstractEventLoop, seen: str | None) -> str:
        return await loop.run_in_executor(self._worker(), self._refresh_blocking, seen)

    def _refresh_blocking(self, seen: str | None) -> str:
        with self._refresh_lock:
            with self._state_lock:
                if self._token is not None and self._token != seen and time.time() < self._refresh_at:
                    return self._token  # refreshed by someone else while this caller waited
            started = time.monotonic()
            try:
                self._credentials.refresh(self._request)
            except google.auth.exceptions.GoogleAuthError as exc:
                raise _translate(exc) from exc
            token = self._credentials.token
            if not token:
                raise Internal("Google credentials refreshed without an access token")
            now = time.time()
            with self._state_lock:
                self._expires_at, self._refresh_at = self._deadlines(self._credentials.expiry, now)
                self._token = token
                self.refresh_count += 1
        lifetime = self._expires_at - now
        log.info("Google access token refreshed in %.0f ms (%s)", (time.monotonic() - started) * 1000,
                 "no expiry" if math.isinf(lifetime) else f"valid for {lifetime:.0f} s")
        return token

    def _deadlines(self, expiry: datetime.datetime | None, now: float) -> tuple[float, float]:
        """When the token expires and when to refresh it (wall clock)."""
        if expiry is None:
            return math.inf, math.inf
        # google-auth keeps expiry as a naive UTC datetime.
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=datetime.UTC)
        expires_at = expiry.timestamp()
        # A token shorter-lived than twice the margin is refreshed at half its life, not on every call.
        lead = min(self._margin, max(0.0, expires_at - now) / 2)
        return expires_at, expires_at - lead


def _translate(exc: google.auth.exceptions.GoogleAuthError) -> ApiError:
    """google-auth's failure as the proxy's error; the message names no secret."""
    if isinstance(exc, google.auth.exceptions.TransportError) or getattr(exc, "retryable", False):
        return Unavailable("cannot obtain Google credentials right now: the token endpoint did not answer")
    return Internal("the proxy's Google credentials were refused by the token endpoint")


def _replayable(request: httpx.Request) -> bool:
    """Only a body held in memory can be sent twice; a streamed one is gone once read."""
    return isinstance(request.stream, httpx.ByteStream)


class GoogleAuth(httpx.Auth):
    """Bearer token from a TokenSource; on a 401 reply, refresh once and resend (when the body can be resent)."""

    def __init__(self, source: TokenSource) -> None:
        self.source = source

    def __repr__(self) -> str:
        return f"GoogleAuth({self.source!r})"

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.source.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and _replayable(request):
            self.source.invalidate(token)
            request.headers["Authorization"] = f"Bearer {await self.source.token()}"
            yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.source.token_blocking()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and _replayable(request):
            self.source.invalidate(token)
            request.headers["Authorization"] = f"Bearer {self.source.token_blocking()}"
            yield request
