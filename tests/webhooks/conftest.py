"""Webhook tests: a ledger, endpoints registered on it, and a dispatcher driven pass by pass."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger.models import WebhookDelivery
from proxy.settings import Settings
from proxy.webhooks.delivery import Dispatcher
from proxy.webhooks.url_safety import UrlPolicy

LOOPBACK = UrlPolicy(allow_loopback=True)


def dispatcher(sessions: sessionmaker[Session], **settings: object) -> Dispatcher:
    """A dispatcher that may call the loopback receiver, retrying fast."""
    options: dict[str, object] = {"webhook_allow_loopback": True, "webhook_first_retry_seconds": 0.05,
                                  "webhook_timeout": 3.0, **settings}
    return Dispatcher(sessions, Settings(**options))  # type: ignore[arg-type]


def deliver_until(sessions: sessionmaker[Session], worker: Dispatcher, done: Callable[[list[WebhookDelivery]], bool],
                  timeout: float = 20.0) -> list[WebhookDelivery]:
    """Run delivery passes until `done(every delivery row)`; returns the rows."""
    deadline = time.monotonic() + timeout
    while True:
        with sessions() as session:
            rows = list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        if done(rows):
            return rows
        assert time.monotonic() < deadline, [(r.state, r.attempts, r.last_error) for r in rows]
        anyio.run(worker.deliver_due)
        time.sleep(0.02)
