"""Linking an OpenAI-door batch to the Vertex job that runs it: on the create's own write, or by reconciliation
when the job was created but its reply never got recorded (the job's `vbp-batch` label names the batch)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from proxy.ledger.models import Job, OpenAIBatch


def link_batch(session: Session, *, job: Job, batch_id: str) -> bool:
    """Point the batch at `job` and name the job by the batch; only a batch of the job's team with no job yet.

    True when linked; False (nothing changed) for an unknown batch, another team's, or one already linked.
    """
    batch = session.get(OpenAIBatch, batch_id)
    if batch is None or batch.team != job.team or (batch.job_pk is not None and batch.job_pk != job.id):
        return False
    batch.job_pk = job.id
    batch.errors = None  # a create that looked failed (its reply lost) did create the job
    job.batch_id = batch.id
    return True
