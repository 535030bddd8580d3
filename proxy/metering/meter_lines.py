"""What `vbp meter` and `vbp reprice` print: one line per job, `LABEL NAME  (what was found)`.

A label is what a metering attempt did (metered, unpriced, settled, unmeterable; `waiting` for one left to retry,
`claimed` for one another process holds) or, for a job the pass did not meter, where it stands (running, waiting,
claimed; or, asked for by name, the figure it was metered with before).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from proxy.ledger.models import Job, JobMetering
from proxy.metering.job_meter import Outcome, describe_job
from proxy.metering.progress import Progress, utc_text

# What each metering result is called for people: a job left to retry is waiting; one held elsewhere is claimed.
_RESULT_LABELS = {"retry": "waiting", "skipped": "claimed"}


def _line(label: str, name: str, detail: str) -> str:
    return f"{label:<12} {name}" + (f"  ({detail})" if detail else "")


def outcome_line(outcome: Outcome) -> str:
    """The line of one metering attempt."""
    return _line(_RESULT_LABELS.get(outcome.result, outcome.result), outcome.name, outcome.detail)


def job_exists(session: Session, *, name: str) -> bool:
    return session.scalar(select(Job.id).where(Job.name == name)) is not None


def standing_lines(session: Session, *, name: str | None, done: set[str], now: datetime) -> list[str]:
    """A line for each job without a (new) figure, other than those in `done`: why, and when it is looked at again.
    With `name`, that job only, also when it was metered before (its figure, and the reason of a settled one)."""
    query = select(Job, JobMetering.note).outerjoin(
        JobMetering, (JobMetering.job_pk == Job.id) & JobMetering.superseded_at.is_(None))
    if name is not None:
        query = query.where(Job.name == name)
    else:
        query = query.where(Job.deleted_at.is_(None),
                            or_(Job.metering_state.is_(None), Job.metering_state.in_(("due", "claimed"))))
    lines = []
    for job, note in session.execute(query.order_by(Job.id)):
        if job.name in done:
            continue
        if job.metering_state in ("metered", "unmeterable") and job.metered_at is not None:
            figures = note if job.cost_status == "unmeterable" else describe_job(job) + (f"; {note}" if note else "")
            lines.append(_line(str(job.cost_status), job.name, f"metered at {utc_text(job.metered_at)}: {figures}"))
            continue
        progress = Progress.of(job)
        lines.append(_line(progress.kind, job.name, progress.describe(now)))
    return lines
