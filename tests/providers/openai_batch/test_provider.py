"""The `openai` and `azure` providers through the seam, without a server: states, names, what the ledger records of
a Batch object, and which deployments reconciliation lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.providers.openai_batch.job_fields import job_reply
from proxy.providers.openai_batch.names import BatchName
from proxy.providers.registry import get_provider
from proxy.settings import Settings

CATALOG = '''
[[deployment]]
name = "oa"
provider = "openai"
model = "gpt-4o-mini"
api_key_env = "K"

[[deployment]]
name = "az"
provider = "azure"
model = "gpt-4o-mini"
base_url = "https://r.openai.azure.com"
deployment = "mini-batch"
api_version = "2024-10-21"
api_key_env = "K"
'''


@pytest.mark.parametrize(("status", "failed", "state", "shown", "ended"), [
    ("validating", 0, "JOB_STATE_PENDING", "validating", False),
    ("in_progress", 0, "JOB_STATE_RUNNING", "in_progress", False),
    ("finalizing", 0, "JOB_STATE_RUNNING", "in_progress", False),
    ("completed", 0, "JOB_STATE_SUCCEEDED", "completed", True),
    ("completed", 2, "JOB_STATE_PARTIALLY_SUCCEEDED", "completed", True),
    ("Failed", 0, "JOB_STATE_FAILED", "failed", True),  # Azure's older capitalised spelling
    ("cancelling", 0, "JOB_STATE_CANCELLING", "cancelling", False),
    ("cancelled", 0, "JOB_STATE_CANCELLED", "cancelled", True),
    ("expired", 0, "JOB_STATE_EXPIRED", "expired", True),
])
def test_statuses_become_the_ledgers_states(status: str, failed: int, state: str, shown: str, ended: bool) -> None:
    reply = job_reply({"id": "batch_0123456789abcdef0123456789abcdef", "status": status,
                       "request_counts": {"total": 5, "completed": 5 - failed, "failed": failed}},
                      provider="openai", deployment="oa", model="gpt-4o-mini")
    assert reply["state"] == state
    provider = get_provider("openai")
    assert (provider.state_name(state), provider.ended(state)) == (shown, ended)


def test_a_batch_as_the_ledger_records_it() -> None:
    batch = {"id": "batch_1b2c3d4e-0000-4000-8000-123456789abc", "status": "failed", "model": "mini-batch",
             "created_at": 1764500000, "in_progress_at": 1764500010, "failed_at": 1764500070,
             "request_counts": {"total": 3, "completed": 1, "failed": 2},
             "metadata": {"vbp-team": "team-a", "vbp-batch": "batch_door"},
             "errors": {"object": "list", "data": [{"code": "token_limit_exceeded", "message": "too many"}]}}
    reply = job_reply(batch, provider="azure", deployment="az", model="gpt-4o-mini", output_directory="gs://b/f/")
    assert reply == {
        "name": "azure/az/batches/batch_1b2c3d4e-0000-4000-8000-123456789abc",
        "jobId": "1b2c3d4e000040008000123456789abc", "state": "JOB_STATE_FAILED",
        "createTime": "2025-11-30T10:53:20Z", "startTime": "2025-11-30T10:53:30Z", "endTime": "2025-11-30T10:54:30Z",
        "updateTime": "2025-11-30T10:54:30Z", "completionStats": {"successfulCount": 1, "failedCount": 2},
        "labels": {"vbp-team": "team-a", "vbp-batch": "batch_door"}, "model": "gpt-4o-mini",
        "displayName": "batch_door", "error": {"code": "token_limit_exceeded", "message": "too many"},
        "outputInfo": {"gcsOutputDirectory": "gs://b/f/"}}
    assert BatchName.parse(str(reply["name"])) == BatchName("azure", "az", batch["id"])
    assert BatchName.parse("projects/p/locations/l/batchPredictionJobs/1") is None


def test_each_provider_serves_its_own_catalog_deployments(tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text(CATALOG)
    settings = Settings(models_file=str(models))
    openai, azure = get_provider("openai", settings), get_provider("azure", settings)
    assert [openai.served("oa", "openai"), openai.served("az", "openai"), openai.served("oa", "azure")] == [
        True, False, False]
    assert [azure.served("az", "azure"), azure.served("oa", "azure")] == [True, False]
    assert (openai.model_id(" gpt-4o-mini "), azure.label_value("Team.Data Science")) == (
        "gpt-4o-mini", "Team.Data Science")
