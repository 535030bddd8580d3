"""Batches as OpenAI shows them (the Batch object), from the batch row, its Vertex job and the states the ledger saw.

    Vertex job state                        OpenAI status
    (no job yet)                            validating (failed, with `errors`, when the create failed)
    QUEUED, PENDING, UNSPECIFIED            validating
    RUNNING, PAUSED, UPDATING               in_progress (cancelling once a cancel was asked)
    SUCCEEDED, PARTIALLY_SUCCEEDED          completed (failed requests counted in request_counts.failed)
    FAILED                                  failed (with `errors`)
    CANCELLING / CANCELLED                  cancelling / cancelled
    EXPIRED                                 expired

Each `*_at` is when the ledger first saw the job in that state (its events), else Vertex's own start/end time.
`request_counts` are Vertex's completion stats, in its lines: the caller's requests, except for an embedding file
whose lines carry several inputs, where each input counts. `usage` appears once the job is metered: input_tokens =
prompt + tool-use prompt (+ embedding) tokens, cached, output_tokens = candidates + thoughts, reasoning = thoughts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from proxy.ledger.models import Job, JobEvent, OpenAIBatch, OpenAIFile
from proxy.openai_door.file_views import ended, has_errors, has_output
from proxy.providers.vertex.states import JobState, parse_state

COMPLETION_WINDOW = timedelta(hours=24)
S = JobState
_STATUS = {
    S.JOB_STATE_UNSPECIFIED: "validating", S.JOB_STATE_QUEUED: "validating", S.JOB_STATE_PENDING: "validating",
    S.JOB_STATE_RUNNING: "in_progress", S.JOB_STATE_PAUSED: "in_progress", S.JOB_STATE_UPDATING: "in_progress",
    S.JOB_STATE_SUCCEEDED: "completed", S.JOB_STATE_PARTIALLY_SUCCEEDED: "completed", S.JOB_STATE_FAILED: "failed",
    S.JOB_STATE_CANCELLING: "cancelling", S.JOB_STATE_CANCELLED: "cancelled", S.JOB_STATE_EXPIRED: "expired",
}
# Why the requests no row answered went unanswered, by the job's end (the error file's `error.code`).
UNANSWERED = {"cancelled": "batch_cancelled", "expired": "batch_expired", "failed": "batch_failed",
              "completed": "batch_failed"}


def status_of(batch: OpenAIBatch, job: Job | None) -> str:
    if job is None:
        return "failed" if batch.errors else "validating"
    state = parse_state(job.state) or S.JOB_STATE_UNSPECIFIED
    status = _STATUS[state]
    if batch.cancel_requested_at is not None and not state.terminal:
        return "cancelling"
    return status


def _unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def _first_seen(events: list[JobEvent], *states: JobState) -> datetime | None:
    names = {state.name for state in states}
    return next((event.seen_at for event in events if event.state in names and event.source != "cancel"), None)


def _times(batch: OpenAIBatch, job: Job | None, events: list[JobEvent], status: str) -> dict[str, int | None]:
    times: dict[str, int | None] = dict.fromkeys(
        ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
         "cancelled_at"))
    if job is None:
        times["failed_at"] = _unix(batch.created_at) if batch.errors else None
        return times
    times["in_progress_at"] = _unix(_first_seen(events, S.JOB_STATE_RUNNING) or job.start_time)
    end = _first_seen(events, *(s for s in S if s.terminal)) or job.end_time
    cancelling = batch.cancel_requested_at or _first_seen(events, S.JOB_STATE_CANCELLING)
    if status in ("cancelling", "cancelled"):
        times["cancelling_at"] = _unix(cancelling)
    if status == "completed":
        times["finalizing_at"] = times["completed_at"] = _unix(end)
    elif status in ("failed", "expired", "cancelled"):
        times[f"{status}_at"] = _unix(end)
    return times


def _errors(batch: OpenAIBatch, job: Job | None) -> dict[str, Any] | None:
    if job is None:
        return {"object": "list", "data": batch.errors} if batch.errors else None
    if parse_state(job.state) != S.JOB_STATE_FAILED:
        return None
    error = job.error or {}
    message = str(error.get("message") or "The Vertex batch job failed.")
    # OpenAI and Azure name the reason (e.g. token_limit_exceeded); Vertex's codes are numbers.
    code = error["code"] if isinstance(error.get("code"), str) and error["code"] else "batch_failed"
    return {"object": "list", "data": [{"code": code, "message": message, "param": None, "line": None}]}


def _usage(job: Job | None) -> dict[str, Any] | None:
    if job is None or job.cost_status is None:
        return None
    input_tokens = job.prompt_tokens + job.tool_use_prompt_tokens + job.embedding_tokens
    output_tokens = job.candidates_tokens + job.thoughts_tokens
    return {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": job.cached_tokens},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": job.thoughts_tokens},
            "total_tokens": input_tokens + output_tokens}


def batch_object(batch: OpenAIBatch, job: Job | None, file: OpenAIFile | None, events: list[JobEvent],
                 *, lines: int) -> dict[str, Any]:
    """The Batch object; `lines` is the input file's count of Vertex lines (kept if the file was deleted since)."""
    status = status_of(batch, job)
    done = job is not None and ended(job)
    return {
        "id": batch.id, "object": "batch", "endpoint": batch.endpoint, "model": file.model if file else None,
        "errors": _errors(batch, job), "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window, "status": status,
        "output_file_id": batch.output_file_id if done and job is not None and has_output(job) else None,
        "error_file_id": batch.error_file_id if done and job is not None and has_errors(job, lines) else None,
        "created_at": _unix(batch.created_at), "expires_at": _unix(batch.created_at + COMPLETION_WINDOW),
        **_times(batch, job, events, status),
        "request_counts": {"total": lines, "completed": (job.succeeded_count or 0) if job else 0,
                           "failed": (job.failed_count or 0) if job else 0},
        "usage": _usage(job), "metadata": batch.metadata_,
    }
