"""Files as OpenAI shows them (FileObject): uploaded files from their row; a batch's output and error files from
the batch and its job.

An output or error file exists once its batch's job has ended: the output file when any request succeeded (or the
job succeeded), the error file when any request failed or went unanswered. Its `bytes` is exact once a read has
streamed the converted file to its end (then kept on the batch row); before that it is null.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from proxy.ledger.models import Job, OpenAIBatch, OpenAIFile
from proxy.providers.vertex.states import JobState, parse_state


def _unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def file_object(row: OpenAIFile) -> dict[str, Any]:
    """An uploaded file (purpose `batch`)."""
    return {"id": row.id, "object": "file", "bytes": row.bytes, "created_at": _unix(row.created_at),
            "filename": row.filename, "purpose": row.purpose, "status": "processed",
            "expires_at": _unix(row.expires_at), "status_details": None}


def has_output(job: Job) -> bool:
    """Whether the ended job has an output file to show: it succeeded, or some of its requests did."""
    return parse_state(job.state) == JobState.JOB_STATE_SUCCEEDED or (job.succeeded_count or 0) > 0


def has_errors(job: Job, lines: int) -> bool:
    """Whether the ended job has an error file to show: a request failed, or some of its `lines` (of the Vertex
    input) went unanswered."""
    answered = (job.succeeded_count or 0) + (job.failed_count or 0)
    return (job.failed_count or 0) > 0 or answered < lines


def ended(job: Job | None) -> bool:
    state = parse_state(job.state) if job is not None else None
    return state is not None and state.terminal


def output_file_object(batch: OpenAIBatch, job: Job, which: str) -> dict[str, Any]:
    """A batch's `output` or `error` file (purpose `batch_output`)."""
    file_id = batch.output_file_id if which == "output" else batch.error_file_id
    size = batch.output_bytes if which == "output" else batch.error_bytes
    created = job.end_time or job.update_time or batch.created_at
    return {"id": file_id, "object": "file", "bytes": size, "created_at": _unix(created),
            "filename": f"{batch.id}_{which}.jsonl", "purpose": "batch_output", "status": "processed",
            "expires_at": None, "status_details": None}


def batch_files(batch: OpenAIBatch, job: Job, lines: int) -> list[tuple[str, dict[str, Any]]]:
    """The output and error files an ended batch shows, as (which, FileObject)."""
    shown = []
    if has_output(job):
        shown.append(("output", output_file_object(batch, job, "output")))
    if has_errors(job, lines):
        shown.append(("error", output_file_object(batch, job, "error")))
    return shown
