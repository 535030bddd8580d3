"""The door's rows in the ledger: files and batches, always looked up within the caller's team.

Every function takes the session explicitly and commits nothing. Another team's file or batch is found exactly
like a missing one (None), so that routes answer both with the same 404.
"""

from __future__ import annotations

from sqlalchemy import or_, select, tuple_
from sqlalchemy.orm import Session

from proxy.ledger.models import Job, JobEvent, OpenAIBatch, OpenAIFile
from proxy.providers.vertex.states import TERMINAL_STATES

_ENDED = [state.name for state in TERMINAL_STATES]


def find_file(session: Session, *, team: str, file_id: str) -> OpenAIFile | None:
    """The team's live uploaded file, by its id or (LiteLLM's ids) by its stored gs:// URI."""
    if file_id.startswith("gs://"):
        where = or_(OpenAIFile.input_uri == file_id, OpenAIFile.converted_uri == file_id)
    else:
        where = OpenAIFile.id == file_id
    return session.scalars(select(OpenAIFile).where(where, OpenAIFile.team == team,
                                                    OpenAIFile.deleted_at.is_(None))).first()


def find_batch(session: Session, *, team: str, batch_id: str) -> OpenAIBatch | None:
    return session.scalars(select(OpenAIBatch).where(OpenAIBatch.id == batch_id,
                                                     OpenAIBatch.team == team)).first()


def find_output_batch(session: Session, *, team: str, file_id: str) -> tuple[OpenAIBatch, str] | None:
    """The team's batch whose output or error file `file_id` is, and which of the two it is."""
    batch = session.scalars(select(OpenAIBatch).where(
        or_(OpenAIBatch.output_file_id == file_id, OpenAIBatch.error_file_id == file_id),
        OpenAIBatch.team == team)).first()
    if batch is None:
        return None
    return batch, "output" if batch.output_file_id == file_id else "error"


def batches_needing(session: Session, *, file_id: str) -> list[str]:
    """Ids of the batches that still need the file: created (or being created) and not ended."""
    rows = session.execute(
        select(OpenAIBatch.id).outerjoin(Job, Job.id == OpenAIBatch.job_pk).where(
            OpenAIBatch.input_file_id == file_id,
            or_(Job.id.is_(None) & OpenAIBatch.errors.is_(None), Job.state.not_in(_ENDED)))).all()
    return [row[0] for row in rows]


def list_files(session: Session, *, team: str) -> list[OpenAIFile]:
    return list(session.scalars(select(OpenAIFile).where(OpenAIFile.team == team, OpenAIFile.deleted_at.is_(None))))


def ended_batches(session: Session, *, team: str) -> list[tuple[OpenAIBatch, Job, int]]:
    """The team's batches whose job has ended (their output and error files exist), with the job and the input
    file's count of Vertex lines."""
    query = select(OpenAIBatch, Job, OpenAIFile.vertex_lines).join(Job, Job.id == OpenAIBatch.job_pk).join(
        OpenAIFile, OpenAIFile.id == OpenAIBatch.input_file_id).where(OpenAIBatch.team == team, Job.state.in_(_ENDED))
    rows = session.execute(query).all()
    return [(row[0], row[1], int(row[2])) for row in rows]


def list_batches(session: Session, *, team: str, limit: int, after: str | None) -> list[OpenAIBatch]:
    """The team's batches, newest first, starting after the batch `after` (none of the team's: from the start)."""
    query = select(OpenAIBatch).where(OpenAIBatch.team == team)
    if after:
        mark = find_batch(session, team=team, batch_id=after)
        if mark is not None:
            query = query.where(tuple_(OpenAIBatch.created_at, OpenAIBatch.id) < (mark.created_at, mark.id))
    query = query.order_by(OpenAIBatch.created_at.desc(), OpenAIBatch.id.desc()).limit(limit)
    return list(session.scalars(query))


def job_events(session: Session, *, job_pk: int) -> list[JobEvent]:
    return list(session.scalars(select(JobEvent).where(JobEvent.job_pk == job_pk).order_by(JobEvent.id)))
