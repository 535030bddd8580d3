"""The outbox: events written in the same transaction as the change they report, one delivery row per endpoint.

`enqueue_event(session, team=..., type=..., data=..., dedupe_key=...)` is the one call a writer makes (the ledger
when a job reaches a terminal state, metering when it settles a job, budgets later). The event is inserted with
ON CONFLICT DO NOTHING on its `dedupe_key`: whichever path sees a job end first (a client's get or list, the
poller, reconciliation), in whichever replica, the ledger holds one event, and so each endpoint gets one
delivery. If the caller's transaction rolls back, the event goes with it: nothing is announced that did not
happen.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from proxy.clock import utcnow
from proxy.ledger.models import Job, JobMetering, WebhookDelivery, WebhookEndpoint, WebhookEvent
from proxy.money import format_usd
from proxy.providers.registry import UnknownProvider, get_provider
from proxy.reports.render import TOKEN_FIELDS

JOB_ENDED_TYPES = {"SUCCEEDED": "job.succeeded", "PARTIALLY_SUCCEEDED": "job.succeeded", "COMPLETED": "job.succeeded",
                   "FAILED": "job.failed", "CANCELLED": "job.cancelled", "EXPIRED": "job.expired"}
EVENT_TYPES = ("job.succeeded", "job.failed", "job.cancelled", "job.expired", "job.metered", "budget.threshold")


def new_event_id() -> str:
    """A message id in Standard Webhooks' style (`msg_` and 26 random characters)."""
    return "msg_" + secrets.token_hex(13)


def enqueue_event(session: Session, *, team: str, type: str, data: dict[str, Any], dedupe_key: str) -> str | None:
    """Write one event and a pending delivery to each of the team's endpoints that takes its type, in the caller's
    transaction. Returns the event id, or None when an event of that `dedupe_key` was already written."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {type!r}")
    now = utcnow()
    event_id = new_event_id()
    body = {"type": type, "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "data": data}
    values = {"id": event_id, "team": team, "type": type, "dedupe_key": dedupe_key, "payload": body,
              "created_at": now}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    written = session.execute(insert(WebhookEvent).values(**values)
                              .on_conflict_do_nothing(index_elements=["dedupe_key"])
                              .returning(WebhookEvent.id)).scalar()
    if written is None:
        return None
    endpoints = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.team == team,
                                                              WebhookEndpoint.removed_at.is_(None)))
    for endpoint in endpoints:
        if not endpoint.events or type in endpoint.events:
            session.add(WebhookDelivery(event_id=event_id, endpoint_id=endpoint.id, team=team, state="pending",
                                        attempts=0, scheduled_at=now, next_attempt_at=now))
    return event_id


def _state_name(job: Job) -> str:
    try:
        return get_provider(job.provider).state_name(job.state)
    except UnknownProvider:
        return job.state


def job_data(job: Job) -> dict[str, Any]:
    """What every job event says of its job: native name, batch id (OpenAI door), team, key, model, provider."""
    return {"job": job.name, "batch_id": getattr(job, "batch_id", None), "team": job.team, "key_id": job.key_id,
            "model": job.model_id or job.model, "provider": job.provider, "state": _state_name(job)}


def enqueue_job_ended(session: Session, *, job: Job) -> str | None:
    """The job reached a terminal state: its `job.<succeeded|failed|cancelled|expired>` event, once per job."""
    type = JOB_ENDED_TYPES.get(_state_name(job).upper())
    if type is None:
        return None
    return enqueue_event(session, team=job.team, type=type, data=job_data(job), dedupe_key=f"job.ended:{job.id}")


def enqueue_job_metered(session: Session, *, job_pk: int, metering: JobMetering) -> str | None:
    """Metering (or re-pricing) settled the job: its `job.metered` event with the figures, once per metering.

    Called after the figures are written in the same transaction, so they are read back from the job's row."""
    session.flush()
    job = session.get(Job, job_pk, populate_existing=True)
    assert job is not None
    data = {**job_data(job), "reason": metering.reason, "cost_status": job.cost_status,
            "cost_usd": None if job.cost_pico is None else format_usd(job.cost_pico),
            # the report document's `tokens` object, from the job's `<kind>_tokens` columns
            "tokens": {name: getattr(job, f"{name}_tokens") for name in TOKEN_FIELDS},
            "lines": {"succeeded": job.lines_succeeded, "failed": job.lines_failed,
                      "malformed": job.lines_malformed}}
    return enqueue_event(session, team=job.team, type="job.metered", data=data,
                         dedupe_key=f"job.metered:{metering.id}")
