"""The ledger's name of a job on an OpenAI or Azure deployment: `{provider}/{deployment}/batches/{upstream id}`.

The upstream batch id stays inside the proxy (the ledger, this name); callers only ever see the door's own ids.
`jobs.job_id` (32 characters) holds the id without its `batch_` prefix and dashes, cut to 32.
"""

from __future__ import annotations

from dataclasses import dataclass

# The metadata label naming the catalog deployment a batch was created on: several deployments may share one
# account (one listing), and reconciliation adopts each batch under its own deployment only.
DEPLOYMENT_LABEL = "vbp-deployment"


@dataclass(frozen=True)
class BatchName:
    provider: str
    deployment: str
    batch_id: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.deployment}/batches/{self.batch_id}"

    @property
    def job_id(self) -> str:
        return self.batch_id.removeprefix("batch_").replace("-", "")[:32]

    @classmethod
    def parse(cls, name: str) -> BatchName | None:
        parts = name.split("/")
        if len(parts) != 4 or parts[2] != "batches" or not all(parts):
            return None
        return cls(parts[0], parts[1], parts[3])
