"""The door in front of the emulator's OpenAI and Azure stand-ins: a catalog in which the Azure deployments of a
model come first (the emulator's own lists OpenAI first), so that `gpt-4o-mini` runs on Azure and `gpt-4.1-mini`
(OpenAI only) on OpenAI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from proxy.emulator.catalog import provider_first
from proxy.emulator.stack import EmulatorStack
from proxy.ledger.models import Job, OpenAIBatch
from tests.openai_door.conftest import door_env
from tests.providers.vertex.conftest import Proxied

OPENAI_MODEL, AZURE_MODEL = "gpt-4.1-mini", "gpt-4o-mini"
OPENAI_DEPLOYMENT, AZURE_DEPLOYMENT = "openai-gpt-4.1-mini", "azure-eastus-gpt-4o-mini"


def azure_first(stack: EmulatorStack) -> Path:
    """The emulator's catalog with its Azure deployments moved first."""
    return provider_first(stack.models_path, "azure", stack.models_path.with_name("azure-first.toml"))


def upstream_door(tmp: Path, **options: Any) -> Iterator[Proxied]:
    yield from door_env(tmp, models_file=azure_first, job_seconds=0.4, **options)


def job_of(env: Proxied, batch_id: str) -> Job:
    with env.sessions() as session:
        batch = session.get(OpenAIBatch, batch_id)
        assert batch is not None and batch.job is not None
        job = batch.job
        session.expunge(job)
        return job
