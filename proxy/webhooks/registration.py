"""Endpoints and the delivery log, for admins (`vbp webhooks`, `/v1/webhooks`). Data-access functions: the caller
owns the transaction.

An endpoint's view never shows its secret: `add_endpoint` returns it once, to be handed to the team.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from proxy.clock import format_rfc3339, utcnow
from proxy.ledger.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from proxy.tenancy.keys import TEAM_RE
from proxy.webhooks.outbox import EVENT_TYPES
from proxy.webhooks.signing import new_secret
from proxy.webhooks.url_safety import UrlPolicy, check_url

DELIVERY_STATES = ("pending", "delivered", "failed")


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_rfc3339(value)


def add_endpoint(session: Session, *, team: str, url: str, events: Sequence[str], actor: str,
                 policy: UrlPolicy) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint (its URL checked by `url_safety`, resolving its host); returns it and its secret.
    ValueError (UnsafeUrl among them) names what is wrong."""
    if not TEAM_RE.fullmatch(team):
        raise ValueError(f"team {team!r} must be 1-63 lowercase letters, digits, '-' or '_'")
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    check_url(url, policy)
    secret = new_secret()
    endpoint = WebhookEndpoint(id="wh_" + secrets.token_hex(8), team=team, url=url, events=sorted(set(events)),
                               secret=secret, created_at=utcnow(), created_by=actor)
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def endpoint_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """An endpoint as the API and `--json` show it (never its secret)."""
    return {"id": endpoint.id, "team": endpoint.team, "url": endpoint.url, "events": list(endpoint.events),
            "created_at": _time(endpoint.created_at), "created_by": endpoint.created_by,
            "removed_at": _time(endpoint.removed_at)}


def list_endpoints(session: Session, *, team: str | None = None) -> list[WebhookEndpoint]:
    """The endpoints that receive events (of one team, or of every team), oldest first."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.removed_at.is_(None))
    if team is not None:
        query = query.where(WebhookEndpoint.team == team)
    return list(session.scalars(query.order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)))


def remove_endpoint(session: Session, *, endpoint_id: str) -> bool:
    """Stop sending to an endpoint: its pending deliveries are marked failed. False when there is no such one."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.removed_at is not None:
        return False
    now = utcnow()
    endpoint.removed_at = now
    session.execute(update(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id,
                                                  WebhookDelivery.state == "pending")
                    .values(state="failed", last_error="the endpoint was removed", claim_token=None,
                            claim_until=None).execution_options(synchronize_session=False))
    return True


def delivery_view(delivery: WebhookDelivery, event: WebhookEvent, url: str) -> dict[str, Any]:
    """One row of the delivery log."""
    return {"id": delivery.id, "webhook_id": event.id, "type": event.type, "team": delivery.team,
            "endpoint_id": delivery.endpoint_id, "url": url, "state": delivery.state, "attempts": delivery.attempts,
            "next_attempt_at": _time(delivery.next_attempt_at) if delivery.state == "pending" else None,
            "last_attempt_at": _time(delivery.last_attempt_at), "last_status": delivery.last_status,
            "last_error": delivery.last_error, "delivered_at": _time(delivery.delivered_at),
            "created_at": _time(event.created_at), "data": event.payload.get("data")}


def list_deliveries(session: Session, *, failed_only: bool = False, team: str | None = None,
                    endpoint_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest deliveries first (`failed_only`: those that gave up), as `delivery_view`s."""
    query = (select(WebhookDelivery, WebhookEvent, WebhookEndpoint.url)
             .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
             .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id))
    if failed_only:
        query = query.where(WebhookDelivery.state == "failed")
    if team is not None:
        query = query.where(WebhookDelivery.team == team)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    rows = session.execute(query.order_by(WebhookDelivery.id.desc()).limit(limit))
    return [delivery_view(delivery, event, url) for delivery, event, url in rows]


def redeliver(session: Session, *, delivery_id: int) -> dict[str, Any] | None:
    """Send a delivery again now, with the same `webhook-id`, and a fresh series of retries. None when there is no
    such delivery; ValueError when its endpoint was removed."""
    row = session.execute(select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
                          .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                          .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                          .where(WebhookDelivery.id == delivery_id)).first()
    if row is None:
        return None
    delivery, event, endpoint = row
    if endpoint.removed_at is not None:
        raise ValueError(f"the endpoint {endpoint.id} of delivery {delivery_id} was removed")
    now = utcnow()
    delivery.state, delivery.attempts, delivery.scheduled_at, delivery.next_attempt_at = "pending", 0, now, now
    delivery.claim_token = delivery.claim_until = None
    return delivery_view(delivery, event, endpoint.url)
