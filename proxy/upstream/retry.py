"""When a call to Vertex is tried again: jittered exponential backoff that honours Retry-After, within bounds."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from proxy.errors import Unavailable
from proxy.settings import default
from proxy.upstream.response import UpstreamResponse

# Statuses a read is tried again on: Vertex's quota and overload answers.
RETRY_STATUSES = frozenset({429, 503})


class ConnectFailed(Unavailable):
    """No connection could be made: nothing reached Vertex, so even a create may be tried again."""


class ConnectionLost(Unavailable):
    """The connection broke after the request may have reached Vertex: only a read may be tried again."""


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts at most, and how long in total to back off between them (seconds)."""

    attempts: int = field(default_factory=partial(default, "retry_attempts"))
    max_seconds: float = field(default_factory=partial(default, "retry_max_seconds"))
    base_delay: float = 0.1
    max_delay: float = 2.0

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based): doubling, capped, upper half jittered."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        # Jitter spreads the retries of many callers that failed together; keeping half fixed keeps the growth.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_after(headers: Iterable[tuple[str, str]], *, now: float | None = None) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or an HTTP date), or None."""
    value = next((v.strip() for k, v in headers if k.lower() == "retry-after"), None)
    if not value:
        return None
    if value.isascii() and value.isdigit():  # str.isdigit() also takes '²', which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


async def with_retries(once: Callable[[], Awaitable[UpstreamResponse]], *, policy: RetryPolicy,
                       retry_statuses: bool, retry_lost: bool, replayable: bool) -> UpstreamResponse:
    """Call `once` until it succeeds or the policy says stop; the last reply is returned, the last error raised.

    `replayable`: the body can be sent again (bytes or none). `retry_statuses`: 429/503 replies may be
    retried (reads only). `retry_lost`: a broken connection may be retried (reads only). A failed
    connect is retried whenever the body can be resent, since nothing reached the upstream.
    """
    slept = 0.0
    attempt = 1
    while True:
        try:
            response = await once()
        except (ConnectFailed, ConnectionLost) as exc:
            allowed = replayable and (isinstance(exc, ConnectFailed) or retry_lost)
            delay = policy.backoff(attempt)
            if not allowed or attempt >= policy.attempts or slept + delay > policy.max_seconds:
                raise
        else:
            response.attempts = attempt
            if not (retry_statuses and replayable) or response.status not in RETRY_STATUSES:
                return response
            delay = max(policy.backoff(attempt), retry_after(response.headers) or 0.0)
            if attempt >= policy.attempts or slept + delay > policy.max_seconds:
                return response  # the caller sees Vertex's own answer, Retry-After included
            await response.aclose()
        await asyncio.sleep(delay)
        slept += delay
        attempt += 1
