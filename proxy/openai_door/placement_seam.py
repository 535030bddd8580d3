"""Where a batch runs: the one place the OpenAI door chooses deployments, and the one place it creates a batch on
one of them.

- `choose(catalog, model)` -> every deployment that serves the model, in catalog order (none without a catalog:
  the door then runs Gemini on VBP_DEFAULT_PROJECT/LOCATION). Placement orders them per batch.
- `place_batch(...)` places an OpenAI/Azure batch among them (`proxy.placement`): it claims the file's queued
  tokens on the deployment with the most weighted headroom, creates the batch there (`create_on`), and when that
  deployment refuses in a way another may not (full: `token_limit_exceeded` at create or as an immediate batch
  failure; 429; 5xx; no answer; its credentials refused) releases the claim, records the outcome for the
  circuit breaker and tries the next, so the caller sees one batch. A refusal any deployment would give (a bad
  request) is the caller's answer at once. When no deployment can take the batch: 429 with a Retry-After, and
  nothing was left upstream (the file uploaded to a deployment that refused is deleted there).
- `create_on(deployment, ...)` creates the batch there and records its job, or raises `UpstreamRefused`.
- Gemini batches (Vertex deployments) are placed by the same `Placer` in `batches_api` (their create is a Vertex
  job, `proxy.providers.vertex.pool_create.place_on_vertex`); `no_room_error` is both doors' 429.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from anyio import to_thread

from proxy.catalog.catalog import Catalog
from proxy.catalog.deployment import Deployment
from proxy.errors import ResourceExhausted
from proxy.ledger.models import OpenAIFile
from proxy.openai_door.bucket import FilesBucket
from proxy.openai_door.upstream_batches import as_api_error, create_on
from proxy.placement.claims import Claim, NoRoom
from proxy.placement.placer import FAILED, FINAL, FULL, Outcome, Placer, TargetRefused
from proxy.placement.queued_tokens import QueuedTokens
from proxy.placement.state import deployment_target
from proxy.providers.openai_batch.errors import UpstreamRefused
from proxy.services import Services
from proxy.tenancy.keys import Principal

__all__ = ["choose", "create_on", "no_room_error", "place_batch", "UpstreamRefused"]

FULL_CODE = "token_limit_exceeded"


def choose(catalog: Catalog | None, model: str) -> tuple[Deployment, ...]:
    """The deployments that may run a batch of `model`, in catalog order (empty: the catalog does not serve it)."""
    if not catalog:
        return ()
    return catalog.serving(model)


class _Refused(TargetRefused):
    """A deployment's refusal, kept whole for the caller's answer when it is final."""

    def __init__(self, failure: UpstreamRefused) -> None:
        # refused credentials are that deployment's trouble, not the caller's: another may take the batch
        kind = FULL if failure.code == FULL_CODE else FAILED if failure.retryable or failure.status in (401, 403) \
            else FINAL
        super().__init__(failure.message, kind=kind, retry_after=failure.retry_after)
        self.failure = failure


def queued_tokens(bucket: FilesBucket, file: OpenAIFile) -> int:
    """The file's queued tokens (`proxy.placement.queued_tokens`), read from the proxy's copy (blocking)."""
    counter = QueuedTokens()
    for chunk in bucket.stream(bucket.path_of(file.input_uri)):
        counter.feed(chunk)
    return counter.close()


async def place_batch(placer: Placer, candidates: tuple[Deployment, ...], *, services: Services,
                      bucket: FilesBucket, principal: Principal, batch_id: str, file: OpenAIFile,
                      endpoint: str, reservation_id: str | None = None,
                      not_placed: Callable[[str], Awaitable[None]] | None = None) -> str | None:
    """Create the batch on the best deployment that takes it; its job's name (None: left to reconciliation).
    `not_placed(why)` is awaited before the refusal is raised when no deployment took the batch (not when one
    may have made it unanswered, or made it and the ledger refused the job: reconciliation finds those)."""
    tokens = await to_thread.run_sync(queued_tokens, bucket, file)
    by_name = {deployment.name: deployment for deployment in candidates}

    async def create(claim: Claim) -> Outcome[str | None]:
        try:
            created = await create_on(by_name[claim.target.name], services=services, bucket=bucket,
                                      principal=principal, batch_id=batch_id, file=file, endpoint=endpoint,
                                      placement_id=claim.placement_id, reservation_id=reservation_id)
        except UpstreamRefused as failure:
            raise _Refused(failure) from None
        return Outcome(created.name, enqueued=created.enqueued, quota=created.quota)

    try:
        placed = await placer.place(targets=[deployment_target(d) for d in candidates], tokens=tokens,
                                    team=principal.team, model=file.model, create=create)
    except _Refused as refused:
        error = as_api_error(refused.failure, doing="create the batch")
        if not_placed is not None and refused.failure.status is not None:
            await not_placed(f"the upstream refused the create ({error.http_status})")
        raise error from None
    except NoRoom as exc:
        if not_placed is not None:
            await not_placed("no deployment took the create")
        raise no_room_error(exc) from None
    return placed.result


def no_room_error(exc: NoRoom) -> ResourceExhausted:
    """The door's answer when no deployment can take a batch: 429 in OpenAI's envelope with a Retry-After."""
    # The SDK would wait and retry on its own; the caller decides (Retry-After says when there may be room).
    return ResourceExhausted(str(exc), code=FULL_CODE if exc.full else "rate_limit_exceeded",
                             headers={"retry-after": str(exc.retry_after), "x-should-retry": "false"})
