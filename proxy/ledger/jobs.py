"""Writing what passes through the proxy into the ledger: jobs, the states seen, cancels, deletes, requests.

Every function takes the session explicitly and commits nothing: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from proxy.clock import parse_rfc3339, utcnow
from proxy.ledger.models import Job, JobEvent, RequestLog
from proxy.providers.registry import DEFAULT_PROVIDER
from proxy.providers.vertex.resources import JobName, model_id
from proxy.providers.vertex.states import JobState, advances, parse_state
from proxy.tenancy.keys import Principal
from proxy.webhooks.outbox import enqueue_job_ended


def _int(value: object) -> int | None:
    # completionStats are int64, which JSON carries as strings.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit():
        return int(value)
    return None


def _input_uris(body: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    config = body.get("inputConfig") or {}
    uris = list((config.get("gcsSource") or {}).get("uris") or [])
    bigquery = (config.get("bigquerySource") or {}).get("inputUri")
    if bigquery:
        uris.append(bigquery)
    return config.get("instancesFormat"), [str(u) for u in uris]


def _output_prefix(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    config = body.get("outputConfig") or {}
    prefix = (config.get("gcsDestination") or {}).get("outputUriPrefix")
    if prefix is None:
        prefix = (config.get("bigqueryDestination") or {}).get("outputUri")
    return config.get("predictionsFormat"), prefix


def _output_directory(reply: Mapping[str, Any]) -> str | None:
    info = reply.get("outputInfo") or {}
    if info.get("gcsOutputDirectory"):
        return str(info["gcsOutputDirectory"])
    dataset = info.get("bigqueryOutputDataset")
    if dataset:
        table = info.get("bigqueryOutputTable")
        return f"{dataset}/{table}" if table else str(dataset)
    return None


def record_created(session: Session, *, reply: Mapping[str, Any], request: Mapping[str, Any],
                   principal: Principal, api_version: str, project: str, location: str,
                   origin: str = "create", provider: str = DEFAULT_PROVIDER, deployment: str | None = None) -> Job:
    """Insert the job Vertex just created (or that reconciliation found), with its owner and first state.

    Another provider's reply is given in the same shape (its `name` its own, plus a `jobId`: see
    `proxy.providers.openai_batch.job_fields`)."""
    parsed = JobName.parse(str(reply.get("name", "")))
    if parsed is not None:
        name, job_id = str(parsed), parsed.job_id
        project_number = parsed.project if parsed.project.isdigit() else None
    elif provider != DEFAULT_PROVIDER and reply.get("name") and reply.get("jobId"):
        name, job_id, project_number = str(reply["name"]), str(reply["jobId"]), None
    else:
        raise ValueError("the create reply carries no job name")
    now = utcnow()
    state = parse_state(reply.get("state")) or JobState.JOB_STATE_PENDING
    input_format, input_uris = _input_uris(request)
    output_format, output_prefix = _output_prefix(request)
    model = str(reply.get("model") or request.get("model") or "")
    job = Job(
        name=name, job_id=job_id, key_id=principal.key_id, team=principal.team, project=project,
        project_number=project_number, location=location, deployment=deployment,
        api_version=api_version, model=model,
        model_id=model_id(model) or (model if provider != DEFAULT_PROVIDER else None),
        display_name=str(reply.get("displayName") or request.get("displayName") or ""),
        input_format=input_format, input_uris=input_uris, output_format=output_format, output_prefix=output_prefix,
        output_directory=_output_directory(reply), labels=dict(reply.get("labels") or request.get("labels") or {}),
        state=state.name, create_time=parse_rfc3339(reply.get("createTime")) or now, recorded_at=now, origin=origin,
        next_poll_at=now, provider=provider,
    )
    _apply_details(job, reply)
    _mark_due_if_ended(job, source=origin)
    session.add(job)
    session.flush()
    session.add(JobEvent(job_pk=job.id, state=state.name, source=origin, seen_at=now))
    if state.terminal:  # adopted (or created) already ended: announced like any other end
        enqueue_job_ended(session, job=job)
    return job


def _apply_details(job: Job, reply: Mapping[str, Any]) -> None:
    job.start_time = parse_rfc3339(reply.get("startTime")) or job.start_time
    job.end_time = parse_rfc3339(reply.get("endTime")) or job.end_time
    job.update_time = parse_rfc3339(reply.get("updateTime")) or job.update_time
    stats = reply.get("completionStats")
    if isinstance(stats, Mapping):
        # proto3 JSON leaves out zero counts
        job.succeeded_count = _int(stats.get("successfulCount", 0))
        job.failed_count = _int(stats.get("failedCount", 0))
        job.incomplete_count = _int(stats.get("incompleteCount", 0))
    job.output_directory = _output_directory(reply) or job.output_directory
    if isinstance(reply.get("error"), Mapping):
        job.error = dict(reply["error"])


def record_seen(session: Session, *, job: Job, reply: Mapping[str, Any], source: str) -> bool:
    """Record what a reply says of a known job; a state never goes backwards. True when the state advanced."""
    seen = parse_state(reply.get("state"))
    if seen is None:
        return False
    current = parse_state(job.state)
    advanced = advances(current, seen)
    if advanced or seen == current:
        _apply_details(job, reply)
    if advanced:
        job.state = seen.name
        session.add(JobEvent(job_pk=job.id, state=seen.name, source=source, seen_at=utcnow()))
        if seen.terminal:  # in this transaction; the outbox keeps one event per job whoever saw the end first
            enqueue_job_ended(session, job=job)
    _mark_due_if_ended(job, source=source)
    return advanced


def _mark_due_if_ended(job: Job, *, source: str) -> None:
    """Once a job has ended its outputs are final: hand it to the metering pass.

    Where its output directory is not known yet (a list reply trimmed by a readMask shows no outputInfo), the
    poller first fetches the whole job, so partial outputs of a failed or cancelled job are never missed.
    """
    state = parse_state(job.state)
    if state is None or not state.terminal or job.metering_state is not None:
        return
    if job.output_directory or job.output_format == "bigquery" or source == "poller":
        job.metering_state = "due"
        job.next_poll_at = None
    else:
        job.next_poll_at = utcnow()


def find_job(session: Session, *, job_id: str, location: str, projects: Iterable[str]) -> Job | None:
    """The ledger's row for a job addressed by project id or number, location and id."""
    wanted = [p for p in projects if p]
    return session.scalars(
        select(Job).where(Job.job_id == job_id, Job.location == location,
                          or_(Job.project.in_(wanted), Job.project_number.in_(wanted)))
    ).first()


def find_jobs_by_name(session: Session, *, names: Iterable[str]) -> dict[str, Job]:
    wanted = list(names)
    if not wanted:
        return {}
    return {job.name: job for job in session.scalars(select(Job).where(Job.name.in_(wanted)))}


def record_cancel(session: Session, *, job: Job) -> None:
    job.cancel_requested_at = utcnow()
    session.add(JobEvent(job_pk=job.id, state=job.state, source="cancel", seen_at=utcnow(), detail="cancel requested"))


def record_delete(session: Session, *, job: Job) -> None:
    job.deleted_at = utcnow()
    session.add(JobEvent(job_pk=job.id, state=job.state, source="delete", seen_at=utcnow(), detail="deleted"))


def schedule_poll(job: Job, *, now: datetime, base_interval: float) -> None:
    """Check young jobs at the base pace and older ones less often (up to 20x slower)."""
    age = (now - job.create_time).total_seconds()
    factor = 1 if age < 600 else 2 if age < 3600 else 5 if age < 6 * 3600 else 20
    job.next_poll_at = now + timedelta(seconds=base_interval * factor)


REQUEST_LOG = RequestLog.metadata.tables[RequestLog.__tablename__]
REQUEST_LOG_COLUMNS = tuple(c.name for c in REQUEST_LOG.columns if not c.primary_key)


def log_requests(session: Session, *, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert request-log rows with one Core executemany (the ORM's bulk path costs several times as much)."""
    # One statement serves the whole batch, so every row names every column (missing ones are NULL).
    session.connection().execute(insert(REQUEST_LOG),
                                 [{name: row.get(name) for name in REQUEST_LOG_COLUMNS} for row in rows])
