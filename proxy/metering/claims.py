"""Exactly-once metering: a job is claimed with a conditional update, and its figures are written only under
the claim that read them.

    due --claim (UPDATE ... WHERE state is due or the lease lapsed)--> claimed(token, until)
    claimed --finish (UPDATE ... WHERE token still ours), in one transaction with the history row--> metered
    claimed --give_up--> due (not before a backoff), or back to the poller when the job must be fetched again

Two replicas may both try to claim; the database lets one UPDATE match. A process that dies mid-read leaves a
lease that lapses, and the next pass claims the job again and reads it from the start. A slow process whose
lease lapsed and was taken over finds its token gone at `finish` and writes nothing, so no cost is counted twice.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from proxy.ledger.models import Job, JobMetering


class LostClaim(Exception):
    """The claim under which a job was read is no longer ours: another process metered or took it."""


def _claimable(now: datetime, *, force: bool = False) -> Any:
    due = Job.metering_state == "due"
    if not force:  # `force`: an operator asked for it now (`vbp meter`), whatever its retry time
        due = and_(due, or_(Job.next_poll_at.is_(None), Job.next_poll_at <= now))
    return or_(due, and_(Job.metering_state == "claimed", Job.claim_until < now))


def claimable_jobs(session: Session, *, now: datetime, limit: int = 50, name: str | None = None,
                   force: bool = False) -> list[int]:
    """Primary keys of jobs that are ready to meter (oldest first); `force` ignores their retry times."""
    query = select(Job.id).where(_claimable(now, force=force)).order_by(Job.end_time, Job.id).limit(limit)
    if name is not None:
        query = query.where(Job.name == name)
    return list(session.scalars(query))


def claim(session: Session, *, job_pk: int, now: datetime, lease: float, force: bool = False) -> str | None:
    """Try to claim one job; the token returned is the proof of ownership, None when someone else has it."""
    token = secrets.token_hex(16)
    result = session.execute(
        update(Job).where(Job.id == job_pk, _claimable(now, force=force)).values(
            metering_state="claimed", claim_token=token, claim_until=now + timedelta(seconds=lease),
            metering_attempts=Job.metering_attempts + 1,
        ).execution_options(synchronize_session=False)
    )
    return token if result.rowcount == 1 else None  # type: ignore[attr-defined]


def renew(session: Session, *, job_pk: int, token: str, now: datetime, lease: float) -> bool:
    """Extend a lease while a long output is still being read."""
    result = session.execute(
        update(Job).where(Job.id == job_pk, Job.claim_token == token, Job.metering_state == "claimed")
        .values(claim_until=now + timedelta(seconds=lease)).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def finish(session: Session, *, job_pk: int, token: str, now: datetime, state: str, figures: Mapping[str, Any],
           history: JobMetering) -> None:
    """Write the job's figures and its history row, only if the claim is still ours; else raise LostClaim."""
    result = session.execute(
        update(Job).where(Job.id == job_pk, Job.claim_token == token, Job.metering_state == "claimed")
        .values(metering_state=state, claim_token=None, claim_until=None, metered_at=now, metering_error=None,
                **figures)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LostClaim(f"job {job_pk} is no longer claimed by this process")
    session.add(history)


def give_up(session: Session, *, job_pk: int, token: str, now: datetime, error: str, retry_in: float,
            refetch: bool = False) -> None:
    """Release a claim after a failed read: the job is due again after `retry_in` seconds. With `refetch`, it goes
    back to the poller instead, which fetches the job from its provider again (its output directory was missing)."""
    session.execute(
        update(Job).where(Job.id == job_pk, Job.claim_token == token, Job.metering_state == "claimed")
        .values(metering_state=None if refetch else "due", claim_token=None, claim_until=None,
                metering_error=error[:2000], next_poll_at=now + timedelta(seconds=retry_in))
        .execution_options(synchronize_session=False)
    )
