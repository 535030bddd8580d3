"""Each catalog deployment as `vbp models` shows it: where it is, its quota, what the ledger has queued on it, and
its health.

Queued work is read from the ledger: the deployment's unfinished jobs (recorded on it and not ended) and, as their
queued tokens, the byte size of their input files. That is an upper bound on their text prompt tokens, not an
estimate: OpenAI's tokenizers are byte-level, so a token covers at least one byte of text, and a line's JSON is
longer than the text it carries (image parts are the exception: a short URL can cost hundreds of tokens).

Health is the last upstream outcome recorded for the deployment; nothing records one yet, so it is "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from proxy.catalog.catalog import Catalog
from proxy.catalog.deployment import Deployment
from proxy.ledger.models import Job, OpenAIBatch, OpenAIFile
from proxy.providers.registry import UnknownProvider, get_provider

HEALTH_UNKNOWN = "unknown"


@dataclass(frozen=True)
class DeploymentStatus:
    """One deployment with the ledger's view of its queue."""

    deployment: Deployment
    unfinished_jobs: int = 0
    queued_tokens_at_most: int = 0
    health: str = HEALTH_UNKNOWN

    def to_json(self) -> dict[str, Any]:
        """The `vbp models --json` record (never a key: only the name of the env var that holds it)."""
        d = self.deployment
        return {"name": d.name, "provider": d.provider, "model": d.model, "where": where(d), "weight": d.weight,
                "enqueued_token_quota": d.enqueued_token_quota, "unfinished_jobs": self.unfinished_jobs,
                "queued_tokens_at_most": self.queued_tokens_at_most, "health": self.health}


def where(deployment: Deployment) -> str:
    """Where the deployment runs, as one string: a Vertex project/location, an OpenAI base URL, an Azure deployment."""
    if deployment.provider == "vertex":
        return f"projects/{deployment.project}/locations/{deployment.location}"
    if deployment.provider == "azure":
        return f"{deployment.base_url.rstrip('/')}/openai/deployments/{deployment.deployment}"
    return deployment.base_url


def _ended(provider: str, state: str) -> bool:
    try:
        return get_provider(provider).ended(state)
    except UnknownProvider:  # a provider this proxy cannot read: its metering state alone says it is unfinished
        return False


def deployment_statuses(session: Session, catalog: Catalog) -> list[DeploymentStatus]:
    """Every deployment of the catalog, in file order, with its unfinished jobs and their input bytes."""
    names = [deployment.name for deployment in catalog.deployments]
    counts: dict[str, list[int]] = {name: [0, 0] for name in names}
    if names:
        # Not metered and not due for metering: the job has not been seen to end.
        query = (select(Job.deployment, Job.provider, Job.state, func.coalesce(OpenAIFile.bytes, 0))
                 .outerjoin(OpenAIBatch, OpenAIBatch.job_pk == Job.id)
                 .outerjoin(OpenAIFile, OpenAIFile.id == OpenAIBatch.input_file_id)
                 .where(Job.deployment.in_(names), Job.cost_status.is_(None), Job.metering_state.is_(None)))
        for deployment, provider, state, size in session.execute(query):
            if deployment is None or _ended(provider, state):
                continue
            counts[deployment][0] += 1
            counts[deployment][1] += int(size)
    return [DeploymentStatus(deployment, unfinished_jobs=counts[deployment.name][0],
                             queued_tokens_at_most=counts[deployment.name][1]) for deployment in catalog.deployments]
