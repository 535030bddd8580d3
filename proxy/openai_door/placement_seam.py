"""Where a batch runs: the one place the OpenAI door chooses deployments, and the one place it creates a batch on
one of them. The placement work (issue 16) replaces `choose`; `create_on`'s contract stays.

- `choose(catalog, model)` -> the candidate deployments, best first. For now: the first catalog deployment that
  serves the model (none without a catalog: the door then runs Gemini on VBP_DEFAULT_PROJECT/LOCATION).
- `create_on(deployment, ...)` creates the batch there and records its job, or raises `UpstreamRefused`, whose
  `retryable` says whether another candidate (or a later try) may take it.
"""

from __future__ import annotations

from proxy.catalog.catalog import Catalog
from proxy.catalog.deployment import Deployment
from proxy.openai_door.upstream_batches import create_on
from proxy.providers.openai_batch.errors import UpstreamRefused

__all__ = ["choose", "create_on", "UpstreamRefused"]


def choose(catalog: Catalog | None, model: str) -> tuple[Deployment, ...]:
    """The deployments to try for a batch of `model`, in order (empty: the catalog does not serve it)."""
    if not catalog:
        return ()
    return catalog.serving(model)[:1]
