"""A catalog that drops a deployment still holding unfinished batches stops `vbp serve` at start, naming it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from proxy.ledger.models import Job
from proxy.settings import Settings
from proxy.startup import StartupError, check_catalog_keeps_unfinished

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
CATALOG = """
[[deployment]]
name = "azure-eastus"
provider = "azure"
model = "gpt-4o-mini"
base_url = "https://res-eastus.openai.azure.com"
deployment = "gpt-4o-mini-batch"
api_version = "2024-10-21"
api_key_env = "AZURE_KEY"
"""


def _job(sessions: sessionmaker[Session], n: int, deployment: str | None, *, ended: bool = False) -> None:
    with sessions.begin() as session:
        session.add(Job(name=f"azure/{deployment}/batches/{n}", job_id=str(n), team="ml", project=deployment or "p",
                        location="azure", api_version="v1", model="gpt-4o-mini", state="in_progress",
                        create_time=NOW, recorded_at=NOW, deployment=deployment,
                        metering_state="metered" if ended else None))


def test_a_removed_deployment_with_unfinished_batches_is_refused(sessions: sessionmaker[Session],
                                                                 database_url: str, tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text(CATALOG)
    settings = Settings(database_url=database_url, models_file=str(models))
    _job(sessions, 1, "azure-eastus")
    _job(sessions, 2, "azure-westus", ended=True)
    _job(sessions, 3, None)  # a native job names no deployment
    check_catalog_keeps_unfinished(settings)  # westus's batch has ended: it may go
    _job(sessions, 4, "azure-westus")
    _job(sessions, 5, "azure-westus")
    _job(sessions, 6, "openai-gpt-4o-mini")
    with pytest.raises(StartupError) as refused:
        check_catalog_keeps_unfinished(settings)
    assert str(refused.value) == (
        f"the model catalog ({models}) no longer has deployments that still hold unfinished batches: "
        "azure-westus (2 unfinished batches), openai-gpt-4o-mini (1 unfinished batch). Put them back until their "
        "batches end: retrieve, cancel, output and metering reach a batch only through the deployment it runs on.")
