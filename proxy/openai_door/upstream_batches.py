"""A door batch on an OpenAI or Azure OpenAI deployment: created, cancelled and shown through one deployment.

Create (`create_on`): the caller's file, kept unchanged in VBP_FILES_BUCKET, is copied line by line into a spooled
temporary file with each line's `url` set to the batch's endpoint and its `body.model` to the deployment's (Azure wants
its deployment name), uploaded to the deployment, and a batch made of it whose metadata carries the proxy's labels
(`vbp-team`, `vbp-key`, `vbp-batch`, `vbp-deployment`, and under a budget `vbp-reservation`: reconciliation adopts a
batch whose create reply was lost, binding its reservation, and the client looks a lost create up by its `vbp-batch`
before sending it again). The caller's own metadata stays in the proxy's batch row. The job is recorded, linked to the
batch (and to its placement), in the same way as a Vertex job (`record_create`). Upstream file and batch ids stay in the
ledger. A create the deployment refuses (at once, or as a batch failed at once for `token_limit_exceeded`) leaves
nothing there: the uploaded file is deleted. Azure's enqueued-token headers come back for placement.

An `UpstreamRefused` from the deployment becomes OpenAI's envelope (`as_api_error`):

    deployment says                      the door answers
    429 (Retry-After)                    429 with the same Retry-After
    400 token_limit_exceeded             429 (its queue is full: later, or elsewhere)
    other 400 / 404 / 409 / 422          400 invalid_request_error (the deployment's message)
    401 / 403                            500: the proxy's own credentials were refused, nothing the caller can fix
    5xx, a broken connection             503     no connection            503     timeout     504
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from typing import IO, Any

from anyio import to_thread
from sqlalchemy.orm import Session

from proxy.budgets import reservation as reservations
from proxy.budgets.reservation import LABEL as RESERVATION_LABEL
from proxy.catalog.deployment import Deployment
from proxy.clock import utcnow
from proxy.errors import ApiError, DeadlineExceeded, Internal, InvalidArgument, ResourceExhausted, Unavailable
from proxy.ledger.batch_links import link_batch
from proxy.ledger.models import Job, OpenAIFile
from proxy.openai_door.bucket import FilesBucket
from proxy.placement import claims as placements
from proxy.providers.openai_batch.errors import UpstreamRefused
from proxy.providers.openai_batch.job_fields import job_reply
from proxy.providers.openai_batch.names import DEPLOYMENT_LABEL
from proxy.providers.openai_batch.provider import API_VERSION, OpenAIBatchProvider
from proxy.providers.registry import get_provider
from proxy.providers.vertex.create_body import BATCH_LABEL, KEY_LABEL, TEAM_LABEL
from proxy.providers.vertex.create_record import record_create
from proxy.services import Services
from proxy.settings import MissingSecret
from proxy.tenancy.keys import Principal

log = logging.getLogger(__name__)

SPOOL_BYTES = 8 << 20
FULL_CODE = "token_limit_exceeded"
ENQUEUED_HEADER, QUOTA_HEADER = "deployment-enqueued-tokens", "deployment-maximum-enqueued-tokens"


@dataclass(frozen=True)
class Created:
    """A batch created on a deployment: its job's name (None: left to reconciliation), and the deployment's
    enqueued-token figures when it gave them (Azure's create headers)."""

    name: str | None
    enqueued: int | None = None
    quota: int | None = None


def _figure(headers: dict[str, str], name: str) -> int | None:
    value = next((v for k, v in headers.items() if k.lower() == name), None)
    text = value.strip() if value is not None else ""
    return int(text) if text.isascii() and text.isdigit() else None  # isdigit() alone takes '²'


def failed_full(batch: dict[str, Any]) -> str | None:
    """The message of a batch the deployment failed at once for its quota (`token_limit_exceeded`), else None."""
    errors = batch.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else None
    if batch.get("status") != "failed" or not isinstance(data, list):
        return None
    for error in data:
        if isinstance(error, dict) and error.get("code") == FULL_CODE:
            return str(error.get("message") or FULL_CODE)
    return None


def provider_for(services: Services, deployment: Deployment) -> OpenAIBatchProvider:
    provider = get_provider(deployment.provider, services.settings)
    assert isinstance(provider, OpenAIBatchProvider)
    return provider


def upstream_endpoint(deployment: Deployment, endpoint: str) -> str:
    """The batch endpoint as the deployment names it (Azure's lines and batches leave out the `/v1`)."""
    return endpoint.removeprefix("/v1") if deployment.provider == "azure" else endpoint


def rewrite_lines(chunks: Any, sink: IO[bytes], *, model: str, url: str) -> int:
    """Copy the caller's JSONL into `sink`, each line's `url` and `body.model` set (a line already right is copied
    as it is); returns the lines written. The file was checked at upload, so every line is a request object."""
    pending, lines = b"", 0

    def line(raw: bytes) -> None:
        nonlocal lines
        if not raw.strip():
            return
        item = json.loads(raw)
        if item.get("url") != url or item["body"].get("model") != model:
            item["url"] = url
            item["body"]["model"] = model
            raw = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()
        sink.write(raw.rstrip(b"\r") + b"\n")
        lines += 1

    for chunk in chunks:
        data = pending + chunk
        *whole, pending = data.split(b"\n")
        for raw in whole:
            line(raw)
    line(pending)
    return lines


async def create_on(deployment: Deployment, *, services: Services, bucket: FilesBucket, principal: Principal,
                    batch_id: str, file: OpenAIFile, endpoint: str, placement_id: str | None = None,
                    reservation_id: str | None = None) -> Created:
    """Create the batch on `deployment` and record its job (bound to its placement and budget reservation; the
    reservation's label in the batch's metadata lets reconciliation bind it too). Raises UpstreamRefused (see the
    module docstring)."""
    provider = provider_for(services, deployment)
    target = upstream_endpoint(deployment, endpoint)
    try:
        client = provider.client(deployment)
    except MissingSecret as exc:  # names the variable, never a value
        raise Internal(f"The proxy has no credentials for deployment {deployment.name}: {exc}.") from None
    labels = {TEAM_LABEL: principal.team, KEY_LABEL: principal.key_id, BATCH_LABEL: batch_id,
              DEPLOYMENT_LABEL: deployment.name}
    if reservation_id is not None:
        labels[RESERVATION_LABEL] = reservation_id
    async with client:
        with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as spool:
            await to_thread.run_sync(lambda: rewrite_lines(bucket.stream(bucket.path_of(file.input_uri)), spool,
                                                           model=deployment.upstream_model, url=target))
            uploaded = await client.upload_file(spool, filename=f"{batch_id}.jsonl")
            try:
                batch, headers = await client.create_batch(input_file_id=str(uploaded["id"]), endpoint=target,
                                                           metadata=labels, label=BATCH_LABEL)
                full = failed_full(batch)
                if full is not None:  # Azure's other quota mode: the batch exists, failed; another may take it
                    raise UpstreamRefused(full, status=400, code=FULL_CODE, deployment=deployment.name)
            except UpstreamRefused as refused:
                if refused.status is not None:  # refused for sure (no answer: the batch may exist and need it)
                    await _delete_quietly(client, str(uploaded["id"]))
                raise
    reply = job_reply(batch, provider=deployment.provider, deployment=deployment.name, model=deployment.model)

    def link(session: Session, job: Job) -> None:
        link_batch(session, job=job, batch_id=batch_id)
        if placement_id is not None:
            placements.bind(session, placement_id=placement_id, job_pk=job.id, now=utcnow())
        if reservation_id is not None:
            reservations.bind(session, reservation_id=reservation_id, job=job, now=utcnow())

    name = await record_create(services, data=json.dumps(reply).encode(), request={"model": deployment.model},
                               principal=principal, api_version=API_VERSION, project=deployment.name,
                               location=deployment.provider, link=link, provider=deployment.provider,
                               deployment=deployment.name)
    return Created(name, _figure(headers, ENQUEUED_HEADER), _figure(headers, QUOTA_HEADER))


async def _delete_quietly(client: Any, file_id: str) -> None:
    """Delete a file the refused batch would have read: nothing is left behind upstream (a failure is logged)."""
    try:
        await client.delete_file(file_id)
    except UpstreamRefused as exc:
        log.warning("could not delete the file %s of a refused create: %s", file_id, exc.message)


async def cancel_on(services: Services, job: Job) -> None:
    """Ask the job's deployment to cancel its batch (UpstreamRefused when it says no)."""
    from proxy.providers.openai_batch.names import BatchName

    name = BatchName.parse(job.name)
    provider = get_provider(job.provider, services.settings)
    assert isinstance(provider, OpenAIBatchProvider) and name is not None
    deployment = provider.deployment(name.deployment)
    if deployment is None:
        raise Internal(f"The batch runs on deployment {name.deployment!r}, which the model catalog no longer has.")
    async with provider.client(deployment) as client:
        await client.cancel_batch(name.batch_id)


def as_api_error(failure: UpstreamRefused, *, doing: str) -> ApiError:
    """The door's answer to a deployment's refusal (see the module docstring); never the deployment's raw body."""
    message = f"Could not {doing}: {failure.message}"
    status = failure.status
    if status is None:
        return DeadlineExceeded(message) if failure.reason == "timeout" else Unavailable(message)
    retry = str(int(failure.retry_after)) if failure.retry_after is not None else "30"
    if status == 429 or failure.code == "token_limit_exceeded":
        code = failure.code if failure.code == "token_limit_exceeded" else "rate_limit_exceeded"
        return ResourceExhausted(message, headers={"retry-after": retry}, code=code)
    if status in (400, 404, 409, 422):
        return InvalidArgument(message, code=failure.code)
    if status in (401, 403):
        return Internal(message)
    return Unavailable(message) if status >= 500 else Internal(message)
