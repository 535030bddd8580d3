"""Delivering the outbox: a background task of `vbp serve` (beside the poller) in every replica.

    pending --claim (one process: FOR UPDATE SKIP LOCKED on PostgreSQL, a conditional UPDATE on both)--> claimed
    claimed --POST, 2xx--> delivered
    claimed --anything else (an error status, a timeout, a refused address)--> pending again, after a backoff:
        the first retry VBP_WEBHOOK_FIRST_RETRY_SECONDS later (30 s), each next one twice as long, until
        VBP_WEBHOOK_GIVE_UP_SECONDS (a day) after the first try: then failed

At least once: the claim is a lease; a process killed mid-delivery leaves it to lapse, and the delivery is sent
again (with the same `webhook-id`, so the receiver can drop the repeat). A process whose lease lapsed and was
taken over writes nothing at the end (its token is gone).

Each attempt: the URL is checked again (`url_safety`, on the addresses resolved now) and the connection goes to the
checked address (TLS still verifies the host name); redirects are not followed; the whole attempt has
VBP_WEBHOOK_TIMEOUT seconds; at most MAX_REPLY_BYTES of the reply are read.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import httpx
import msgspec
from anyio import to_thread
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from proxy.clock import utcnow
from proxy.ledger.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from proxy.settings import Settings
from proxy.webhooks.signing import signed_headers
from proxy.webhooks.url_safety import Target, UnsafeUrl, UrlPolicy, check_url

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 4096
BATCH = 20  # deliveries claimed at once by one process
CONCURRENCY = 8  # of them sent at once
IDLE_SECONDS = 0.5  # between looks at the outbox when nothing was due
USER_AGENT = "vertex-batch-proxy-webhooks"


@dataclass(frozen=True)
class Claimed:
    """A delivery this process holds (`token`), with what it takes to send it."""

    id: int
    token: str
    message_id: str
    body: str
    url: str
    secret: str
    attempts: int
    scheduled_at: datetime


@dataclass(frozen=True)
class Attempt:
    """How one try ended: the reply's status (None: no reply) and, unless it was a 2xx, why it failed."""

    status: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def url_policy(settings: Settings) -> UrlPolicy:
    """The URL rules of the settings (VBP_WEBHOOK_ALLOW_LOOPBACK, VBP_WEBHOOK_ALLOWED_NETWORKS)."""
    return UrlPolicy(allow_loopback=settings.webhook_allow_loopback,
                     allowed_networks=settings.webhook_allowed_networks)


def lease_seconds(timeout: float) -> float:
    """How long a claim lasts: well past the longest attempt, so that only a dead process loses one."""
    return 2 * timeout + 10


def _due(now: datetime) -> Any:
    return and_(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.claim_until.is_(None), WebhookDelivery.claim_until < now))


def claim_due(session: Session, *, now: datetime, lease: float, limit: int = BATCH) -> list[Claimed]:
    """Claim up to `limit` due deliveries for this process (the caller commits)."""
    candidates = session.scalars(select(WebhookDelivery.id).where(_due(now)).order_by(WebhookDelivery.next_attempt_at)
                                 .limit(limit).with_for_update(skip_locked=True)).all()
    tokens: dict[int, str] = {}
    for delivery_id in candidates:
        token = secrets.token_hex(16)
        result = session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id, _due(now))
                                 .values(claim_token=token, claim_until=now + timedelta(seconds=lease))
                                 .execution_options(synchronize_session=False))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            tokens[delivery_id] = token
    if not tokens:
        return []
    rows = session.execute(select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
                           .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                           .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                           .where(WebhookDelivery.id.in_(list(tokens))))
    encode = msgspec.json.encode
    return [Claimed(id=delivery.id, token=tokens[delivery.id], message_id=event.id,
                    body=encode(event.payload).decode(), url=endpoint.url, secret=endpoint.secret,
                    attempts=delivery.attempts, scheduled_at=delivery.scheduled_at)
            for delivery, event, endpoint in rows]


def retry_delay(attempts: int, first_retry: float) -> float:
    """Seconds before the next try after `attempts` failed ones: the first retry's, doubled for each one after."""
    return first_retry * 2 ** (attempts - 1)


def record_attempt(session: Session, *, claimed: Claimed, attempt: Attempt, now: datetime, first_retry: float,
                   give_up: float) -> str | None:
    """Write how a try ended, if the claim is still ours: the delivery's new state, or None (someone else's now)."""
    attempts = claimed.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_attempt_at": now, "last_status": attempt.status,
                              "last_error": attempt.error, "claim_token": None, "claim_until": None}
    if attempt.delivered:
        values.update(state="delivered", delivered_at=now)
    else:
        retry_at = now + timedelta(seconds=retry_delay(attempts, first_retry))
        gave_up = retry_at > claimed.scheduled_at + timedelta(seconds=give_up)
        values.update(state="failed" if gave_up else "pending", next_attempt_at=retry_at)
    result = session.execute(update(WebhookDelivery).where(WebhookDelivery.id == claimed.id,
                                                           WebhookDelivery.claim_token == claimed.token)
                             .values(**values).execution_options(synchronize_session=False))
    return str(values["state"]) if result.rowcount == 1 else None  # type: ignore[attr-defined]


def pinned_url(target: Target, url: str) -> str:
    """`url` with its host replaced by the checked address (the Host header and TLS keep the name)."""
    return str(httpx.URL(url).copy_with(host=str(target.address), port=target.port))


async def send(claimed: Claimed, *, policy: UrlPolicy, timeout: float) -> Attempt:
    """One try: check the URL, POST the signed body to the checked address, read a little of the reply."""
    try:
        target = await to_thread.run_sync(check_url, claimed.url, policy)
    except UnsafeUrl as exc:
        return Attempt(None, f"refused: {exc}")
    default_port = 443 if target.scheme == "https" else 80
    headers = {"content-type": "application/json", "user-agent": USER_AGENT,
               "host": target.host if target.port == default_port else f"{target.host}:{target.port}",
               **signed_headers(claimed.secret, message_id=claimed.message_id, at=utcnow(), body=claimed.body)}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with anyio.fail_after(timeout):
            # A client per attempt: no connection (nor its TLS name) is shared between endpoints; no proxies
            # from the environment, no cookies, no redirects.
            async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout) as client:
                request = client.build_request("POST", pinned_url(target, claimed.url), content=claimed.body,
                                               headers=headers, extensions=extensions)
                reply = await client.send(request, stream=True)
                try:
                    head = b""
                    async for chunk in reply.aiter_raw():
                        head += chunk
                        if len(head) >= MAX_REPLY_BYTES:
                            break
                finally:
                    await reply.aclose()
    except TimeoutError:
        return Attempt(None, f"no reply within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= reply.status_code < 300:
        return Attempt(reply.status_code)
    text = head[:300].decode("utf-8", "replace")
    return Attempt(reply.status_code, f"answered {reply.status_code}" + (f": {text}" if text else ""))


class Dispatcher:
    """Claims and sends due deliveries until cancelled; safe to run in every replica."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions = sessions
        self.policy = url_policy(settings)
        self.timeout = settings.webhook_timeout
        self.first_retry = settings.webhook_first_retry_seconds
        self.give_up = settings.webhook_give_up_seconds

    async def run(self) -> None:
        """Deliver until cancelled; a failed pass (the database away) is logged and the loop goes on."""
        while True:
            try:
                sent = await self.deliver_due()
            except Exception:
                log.exception("webhook delivery pass failed")
                sent = 0
            if not sent:
                await anyio.sleep(IDLE_SECONDS)

    async def deliver_due(self) -> int:
        """Claim what is due and send it; returns how many were tried."""
        def claim() -> list[Claimed]:
            with self.sessions.begin() as session:
                return claim_due(session, now=utcnow(), lease=lease_seconds(self.timeout))

        claimed = await to_thread.run_sync(claim)
        limiter = anyio.CapacityLimiter(CONCURRENCY)
        async with anyio.create_task_group() as group:
            for item in claimed:
                group.start_soon(self._deliver, item, limiter)
        return len(claimed)

    async def _deliver(self, claimed: Claimed, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            attempt = await send(claimed, policy=self.policy, timeout=self.timeout)

        def write() -> str | None:
            with self.sessions.begin() as session:
                return record_attempt(session, claimed=claimed, attempt=attempt, now=utcnow(),
                                      first_retry=self.first_retry, give_up=self.give_up)

        state = await to_thread.run_sync(write)
        if not attempt.delivered:
            log.warning("webhook %s to %s, try %d: %s (now %s)", claimed.message_id, claimed.url,
                        claimed.attempts + 1, attempt.error, state or "taken over")
