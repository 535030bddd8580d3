"""OpenAI's Batches API, each batch run as a Vertex batch job (errors in OpenAI's envelope).

    POST /v1/batches               {input_file_id, endpoint, completion_window: "24h", metadata?}
    GET  /v1/batches/{id}          the Batch; a job not ended yet is read from Vertex first (and recorded)
    GET  /v1/batches               ?limit(1..100, default 20)&after: the team's batches, newest first
    POST /v1/batches/{id}/cancel   cancels the job; the batch shows `cancelling`, then `cancelled`

A create writes the batch row first, holds the job's estimate against the key's budgets (as a native create does;
for an OpenAI or Azure model the estimate of the caller's file, `file_jobs.openai_file_estimate`, bound to the
batch's job when it is recorded and released when every deployment refused the create), then creates the job with
the `vbp-team`, `vbp-key` and `vbp-batch` labels: placed among the catalog's Vertex deployments of the model that the
key may use (`_place_job`: the most weighted headroom first, failing or full ones routed around, as the README's
"Placement" says), or in VBP_DEFAULT_PROJECT / VBP_DEFAULT_LOCATION when the catalog has none; then records the job
linked to the batch (`record_create`, as the native door does). Should the proxy die between Vertex's reply and that
write, reconciliation adopts the job from its labels and links it to the batch. Keys' scopes (operations, projects,
locations, models) apply as on the native door; another team's batch answers 404 like a missing one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from anyio import to_thread
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from proxy.budgets import reservation as reservations
from proxy.budgets.admission import Admitted
from proxy.budgets.reservation import LABEL as RESERVATION_LABEL
from proxy.catalog.deployment import Deployment
from proxy.clock import utcnow
from proxy.errors import ApiError, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from proxy.ledger import jobs as ledger
from proxy.ledger.batch_links import link_batch
from proxy.ledger.models import Job, OpenAIBatch, OpenAIFile
from proxy.ledger.request_log import record_of
from proxy.openai_door import records
from proxy.openai_door.batch_views import batch_object
from proxy.openai_door.bucket import INDEX
from proxy.openai_door.compat import check_provider, decode_file_id
from proxy.openai_door.door import Door
from proxy.openai_door.file_jobs import file_job_body, openai_file_estimate
from proxy.openai_door.file_views import ended
from proxy.openai_door.ids import batch_file_id, new_batch_id
from proxy.openai_door.placement_seam import UpstreamRefused, choose, no_room_error, place_batch
from proxy.openai_door.upstream_batches import as_api_error, cancel_on
from proxy.openai_door.upstream_errors import translate
from proxy.placement import claims as placements
from proxy.placement.claims import NoRoom
from proxy.placement.state import deployment_target
from proxy.providers.registry import get_provider
from proxy.providers.vertex.create_body import BATCH_LABEL, prepare_create_body
from proxy.providers.vertex.create_record import record_create
from proxy.providers.vertex.pool_create import place_on_vertex, pool_tokens
from proxy.providers.vertex.resources import google_base_url
from proxy.tenancy.key_api import read_body
from proxy.tenancy.keys import Principal
from proxy.tenancy.scopes import check_model, check_scope
from proxy.upstream import UpstreamResponse
from proxy.upstream.headers import request_headers

API_VERSION = "v1"
# OpenAI's batch endpoints, and those this door runs (Gemini chat and embedding models on Vertex).
OPENAI_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations",
                    "/v1/images/generations", "/v1/images/edits", "/v1/videos")
SERVED_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
CREATE_FIELDS = {"input_file_id", "endpoint", "completion_window", "metadata", "custom_llm_provider"}
MAX_METADATA, MAX_KEY, MAX_VALUE = 16, 64, 512
MAX_LIST, DEFAULT_LIST = 100, 20


def _not_found(batch_id: str) -> NotFound:
    shown = batch_id if len(batch_id) <= 100 else batch_id[:100] + "..."
    return NotFound(f"No batch found with id {shown!r}.", param="batch_id")


def _create_fields(body: dict[str, Any]) -> tuple[str, str, dict[str, str] | None]:
    """(input_file_id, endpoint, metadata) of a create body, each checked; 400 naming the first bad one."""
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        name = unknown[0] if len(unknown[0]) <= 40 else unknown[0][:40] + "..."
        raise InvalidArgument(f"Unsupported parameter: {name!r} is not supported by this proxy.", param=name,
                              code="unsupported_parameter")
    file_id, endpoint, window = body.get("input_file_id"), body.get("endpoint"), body.get("completion_window")
    if not isinstance(file_id, str) or not file_id:
        raise InvalidArgument("input_file_id (a file id) is required.", param="input_file_id")
    if endpoint not in OPENAI_ENDPOINTS:
        raise InvalidArgument(f"endpoint must be one of {', '.join(OPENAI_ENDPOINTS)}.", param="endpoint")
    if endpoint not in SERVED_ENDPOINTS:
        raise InvalidArgument(f"endpoint {endpoint} is not served here: only {' and '.join(SERVED_ENDPOINTS)}.",
                              param="endpoint")
    if window != "24h":
        raise InvalidArgument("completion_window must be \"24h\".", param="completion_window")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in metadata.items()):
            raise InvalidArgument("metadata must be an object of strings.", param="metadata")
        if len(metadata) > MAX_METADATA or any(len(k) > MAX_KEY or len(v) > MAX_VALUE for k, v in metadata.items()):
            raise InvalidArgument(f"metadata holds at most {MAX_METADATA} pairs, keys of at most {MAX_KEY} and "
                                  f"values of at most {MAX_VALUE} characters.", param="metadata")
    return decode_file_id(file_id), str(endpoint), metadata


def _view(session: Session, batch: OpenAIBatch) -> dict[str, Any]:
    job = batch.job
    file = session.get(OpenAIFile, batch.input_file_id)
    events = records.job_events(session, job_pk=job.id) if job is not None else []
    return batch_object(batch, job, file, events, lines=file.vertex_lines if file is not None else 0)


def _load_view(door: Door, team: str, batch_id: str) -> dict[str, Any] | None:
    with door.services.sessions() as session:
        batch = records.find_batch(session, team=team, batch_id=batch_id)
        return _view(session, batch) if batch is not None else None


async def _check_scope(door: Door, principal: Principal, operation: str, place: tuple[str, str], *,
                       provider: str = "vertex") -> None:
    project, location = place
    if provider != "vertex":
        # Projects and locations are Vertex's: on OpenAI and Azure only the key's operations apply.
        check_scope(principal, operation=operation, projects=tuple(principal.projects),
                    location=principal.locations[0] if principal.locations else location)
        return
    check_scope(principal, operation=operation, projects=await door.project_names_of(project), location=location)


def _jobs_url(door: Door, location: str, path: str) -> str:
    base = door.services.settings.vertex_base_url or google_base_url(location)
    return f"{base.rstrip('/')}/{API_VERSION}/{path}"


async def create(request: Request, door: Door) -> Response:
    principal = await door.caller(request, "batches.create")
    bucket = door.bucket
    body = await read_body(request)
    check_provider(request, body.get("custom_llm_provider"))
    file_id, endpoint, metadata = _create_fields(body)

    def find_file() -> OpenAIFile | None:
        with door.services.sessions() as session:
            return records.find_file(session, team=principal.team, file_id=file_id)

    file = await to_thread.run_sync(find_file)
    if file is None:
        raise NotFound(f"No such File object: {file_id[:200]}", param="input_file_id")
    if endpoint != file.endpoint:
        raise InvalidArgument(f"endpoint {endpoint} does not match the file's requests, which are for "
                              f"{file.endpoint}.", param="endpoint", code="url_mismatch")
    candidates = choose(door.services.catalog, file.model)
    vertex: tuple[Deployment, ...] = ()  # the catalog's Vertex deployments of a Gemini model the key may use
    if file.provider != "vertex":
        if not candidates:
            raise InvalidArgument(f"The model catalog no longer serves {file.model!r}.", param="input_file_id",
                                  code="model_not_found")
        project, location = "", file.provider
    elif vertex := await _allowed(door, principal, tuple(d for d in candidates if d.provider == "vertex")):
        project, location = vertex[0].project, vertex[0].location
    else:
        project, location = await door.place()
    await _check_scope(door, principal, "create", (project, location), provider=file.provider)
    check_model(principal, model=file.model)

    batch_id = new_batch_id()
    folder = bucket.batch_folder(principal.team, batch_id)
    batch = OpenAIBatch(id=batch_id, team=principal.team, key_id=principal.key_id, input_file_id=file.id,
                        endpoint=endpoint, completion_window="24h", metadata_=metadata, created_at=utcnow(),
                        output_file_id=batch_file_id(batch_id, "output"),
                        error_file_id=batch_file_id(batch_id, "error"))

    def write_batch() -> None:
        with door.services.sessions.begin() as session:
            session.add(batch)

    await to_thread.run_sync(write_batch)
    try:
        if file.provider != "vertex":
            reservation_id = await _reserve_file(door, principal, file, candidates)
            await _create_upstream(request, door, principal, batch_id, file, candidates, reservation_id)
            return JSONResponse(await to_thread.run_sync(_load_view, door, principal.team, batch_id))
        # The batch keeps its own copy of the index: its outputs stay readable if the input file is deleted.
        await to_thread.run_sync(bucket.copy, bucket.path_of(file.index_uri), folder + INDEX)
        job_body = prepare_create_body(file_job_body(file, display_name=batch_id, output_uri=bucket.uri(folder)),
                                       principal=principal, aliases={})
        job_body["labels"][BATCH_LABEL] = batch_id
        reservation_id, tokens = await _reserve(door, principal, job_body, project, location)
        if vertex:
            await _place_job(request, door, principal, job_body, batch_id, vertex, reservation_id, tokens,
                             model=file.model)
        else:
            await _create_job(request, door, principal, job_body, batch_id, project, location, reservation_id)
    except ApiError as exc:
        await to_thread.run_sync(_record_failure, door, batch_id, exc)
        raise
    view = await to_thread.run_sync(_load_view, door, principal.team, batch_id)
    return JSONResponse(view)


async def _allowed(door: Door, principal: Principal, deployments: tuple[Deployment, ...]) -> tuple[Deployment, ...]:
    """The Vertex deployments whose project and location the key's scopes allow; the first one's PermissionDenied
    when there are some but the key may use none."""
    allowed: list[Deployment] = []
    refusal: PermissionDenied | None = None
    for deployment in deployments:
        try:
            await _check_scope(door, principal, "create", (deployment.project, deployment.location))
        except PermissionDenied as exc:
            refusal = refusal or exc
            continue
        allowed.append(deployment)
    if refusal is not None and not allowed:
        raise refusal
    return tuple(allowed)


async def _reserve(door: Door, principal: Principal, job_body: dict[str, Any], project: str,
                   location: str) -> tuple[str | None, int | None]:
    """Hold the job's estimate against the key's budgets, as a native create does (429 when they cannot take it);
    the reservation's label lets reconciliation bind it to a job whose create reply was lost. Also the job's
    queued tokens (its estimate's input tokens) when the estimate was made."""
    gate = door.services.budgets
    if gate is None:
        return None, None
    admitted = await _admitted(gate.admit(principal, job_body, project=project, location=location))
    if admitted.reservation_id is not None:
        job_body["labels"][RESERVATION_LABEL] = admitted.reservation_id
    return admitted.reservation_id, admitted.estimate.input_tokens if admitted.estimate is not None else None


async def _reserve_file(door: Door, principal: Principal, file: OpenAIFile,
                        candidates: tuple[Deployment, ...]) -> str | None:
    """Hold the estimate of an OpenAI/Azure batch's file (429 when a budget cannot take it). The reservation names
    the first candidate deployment: reconciliation of that provider releases it if no batch carries its label."""
    gate = door.services.budgets
    if gate is None:
        return None
    estimate_of = openai_file_estimate(gate, door.services.catalog, file)
    admitted = await _admitted(gate.admit_estimate(principal, estimate_of, project=candidates[0].name,
                                                   location=candidates[0].provider))
    return admitted.reservation_id


async def _admitted(admission: Awaitable[Admitted]) -> Admitted:
    """An admitted create; a refusal keeps the SDK from retrying it."""
    try:
        admitted = await admission
    except ResourceExhausted as exc:
        exc.headers.setdefault("x-should-retry", "false")  # a budget does not refill in the SDK's retry window
        raise
    return admitted


async def _create_upstream(request: Request, door: Door, principal: Principal, batch_id: str, file: OpenAIFile,
                           candidates: tuple[Deployment, ...], reservation_id: str | None) -> None:
    """Place the batch on the candidate deployment with the most room that takes it (`placement_seam`); when none
    does, its reservation is released (should one have made it unanswered, adopting it holds it again)."""
    record = record_of(request.scope)
    gate = door.services.budgets

    async def release(why: str) -> None:
        if reservation_id is not None and gate is not None:
            await to_thread.run_sync(gate.release, reservation_id, why)

    try:
        record.job_name = await place_batch(door.placer, candidates, services=door.services, bucket=door.bucket,
                                            principal=principal, batch_id=batch_id, file=file,
                                            endpoint=file.endpoint, reservation_id=reservation_id,
                                            not_placed=release)
    except ApiError as exc:
        record.upstream_status = exc.http_status
        raise
    record.upstream_status = 200


async def _create_job(request: Request, door: Door, principal: Principal, job_body: dict[str, Any], batch_id: str,
                      project: str, location: str, reservation_id: str | None) -> None:
    """Create the job in one project/location (no catalog deployment of the model) and record it."""
    reply = await _send_create(request, door, job_body, project, location)
    await _finish_create(request, door, principal, job_body, batch_id, project, location, reservation_id, reply)


async def _place_job(request: Request, door: Door, principal: Principal, job_body: dict[str, Any], batch_id: str,
                     deployments: tuple[Deployment, ...], reservation_id: str | None, tokens: int | None, *,
                     model: str) -> None:
    """Create the job on the Vertex deployment with the most weighted headroom that takes it (429, 5xx and
    unreachable routed around; a timeout not, the job may exist), as pools do; the reservation, made once before,
    is released when none can take it (429 + Retry-After)."""
    if tokens is None:
        tokens = await pool_tokens(door.services.budgets, job_body)
    by_name = {deployment.name: deployment for deployment in deployments}
    try:
        created = await place_on_vertex(
            door.placer, places={d.name: (d.project, d.location) for d in deployments},
            targets=[deployment_target(d) for d in deployments], team=principal.team, model=model, tokens=tokens,
            send=lambda project, location: _send_create(request, door, job_body, project, location))
    except NoRoom as exc:
        record_of(request.scope).upstream_status = 429
        if reservation_id is not None and door.services.budgets is not None:
            await to_thread.run_sync(door.services.budgets.release, reservation_id,
                                     "no deployment could take the batch")
        raise no_room_error(exc) from None
    deployment = by_name[created.claim.target.name]
    await _finish_create(request, door, principal, job_body, batch_id, created.project, created.location,
                         reservation_id, created.reply, deployment=deployment.name,
                         placement_id=created.claim.placement_id)


async def _send_create(request: Request, door: Door, job_body: dict[str, Any], project: str,
                       location: str) -> UpstreamResponse:
    url = _jobs_url(door, location, f"projects/{project}/locations/{location}/batchPredictionJobs")
    return await door.services.upstream.send(
        "POST", url, headers=request_headers([("content-type", "application/json")],
                                             request_id=record_of(request.scope).request_id),
        body=json.dumps(job_body).encode(), idempotent=False)


async def _finish_create(request: Request, door: Door, principal: Principal, job_body: dict[str, Any], batch_id: str,
                         project: str, location: str, reservation_id: str | None, reply: UpstreamResponse, *,
                         deployment: str | None = None, placement_id: str | None = None) -> None:
    """Record the job Vertex created (its reservation and placement bound to it), or release them and answer
    Vertex's refusal (a 504's placement stays held: the job may exist, reconciliation adopts it)."""
    record = record_of(request.scope)
    data = await reply.read()
    record.upstream_status = reply.status
    if reply.status != 200:
        if placement_id is not None and reply.status != 504:
            await to_thread.run_sync(door.placer.release, placement_id, f"the upstream refused it ({reply.status})")
        if reservation_id is not None and door.services.budgets is not None:
            await to_thread.run_sync(door.services.budgets.release, reservation_id,
                                     f"the upstream refused the create ({reply.status})")
        raise translate(reply.status, data, reply.headers, doing="create the batch's job", create=True)

    def link(session: Session, job: Job) -> None:
        link_batch(session, job=job, batch_id=batch_id)
        if reservation_id is not None:
            reservations.bind(session, reservation_id=reservation_id, job=job, now=utcnow())
        if placement_id is not None:
            placements.bind(session, placement_id=placement_id, job_pk=job.id, now=utcnow())

    record.job_name = await record_create(
        door.services, data=data, request=job_body, principal=principal, api_version=API_VERSION, project=project,
        location=location, project_names=door.project_names, link=link, deployment=deployment)


def _record_failure(door: Door, batch_id: str, error: ApiError) -> None:
    """A create that failed shows as a failed batch with the reason (unless its job was recorded after all)."""
    with door.services.sessions.begin() as session:
        batch = session.get(OpenAIBatch, batch_id)
        if batch is not None and batch.job_pk is None:
            batch.errors = [{"code": error.code or error.status.lower(), "message": error.message,
                             "param": error.param, "line": None}]


async def retrieve(request: Request, door: Door) -> Response:
    principal = await door.caller(request, "batches.get")
    check_provider(request)
    batch_id = request.path_params["batch_id"]
    view = await _refreshed_view(door, principal, batch_id, "get")
    return JSONResponse(view)


async def _refreshed_view(door: Door, principal: Principal, batch_id: str, operation: str) -> dict[str, Any]:
    """The batch, its job first read from Vertex (and the state recorded) while it has not ended."""
    def load() -> tuple[str, str, str, str, str, bool] | None:
        with door.services.sessions() as session:
            batch = records.find_batch(session, team=principal.team, batch_id=batch_id)
            if batch is None:
                raise _not_found(batch_id)
            job = batch.job
            if job is None:
                return None
            return job.provider, job.name, job.api_version, job.project, job.location, ended(job)

    job = await to_thread.run_sync(load)
    if job is not None:
        await _check_scope(door, principal, operation, (job[3], job[4]), provider=job[0])
    else:
        await _check_scope(door, principal, operation, await door.place())
    if job is not None and not job[5]:
        provider_name, name, api_version, _, location, _ = job
        provider = get_provider(provider_name, door.services.settings)
        reply = await provider.read_job(door.services.upstream, name=name, api_version=api_version,
                                        location=location)
        if reply is not None:
            await to_thread.run_sync(door.services.record_seen, [reply], operation)
    view = await to_thread.run_sync(_load_view, door, principal.team, batch_id)
    if view is None:
        raise _not_found(batch_id)
    return view


async def list_batches(request: Request, door: Door) -> Response:
    principal = await door.caller(request, "batches.list")
    check_provider(request)
    await _check_scope(door, principal, "list", await door.place())
    text = request.query_params.get("limit", "")
    if text and (not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIST):
        raise InvalidArgument(f"limit must be a whole number from 1 to {MAX_LIST}.", param="limit")
    limit = int(text) if text else DEFAULT_LIST
    after = request.query_params.get("after") or None

    def read() -> list[dict[str, Any]]:
        with door.services.sessions() as session:
            batches = records.list_batches(session, team=principal.team, limit=limit + 1, after=after)
            return [_view(session, batch) for batch in batches]

    views = await to_thread.run_sync(read)
    page = views[:limit]
    return JSONResponse({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                         "last_id": page[-1]["id"] if page else None, "has_more": len(views) > limit})


async def cancel(request: Request, door: Door) -> Response:
    principal = await door.caller(request, "batches.cancel")
    check_provider(request)
    batch_id = request.path_params["batch_id"]

    def load() -> tuple[str | None, str, str, str, bool, bool, Job | None]:
        with door.services.sessions() as session:
            batch = records.find_batch(session, team=principal.team, batch_id=batch_id)
            if batch is None:
                raise _not_found(batch_id)
            job = batch.job
            if job is None:
                return None, "", "", "", False, bool(batch.errors), None
            return job.name, job.api_version, job.project, job.location, ended(job), False, job

    name, api_version, project, location, done, failed, job = await to_thread.run_sync(load)
    provider = job.provider if job is not None else "vertex"
    await _check_scope(door, principal, "cancel", (project, location) if name else await door.place(),
                       provider=provider)
    if name is None:
        raise FailedPrecondition(f"Batch {batch_id} failed to start" if failed else
                                 f"Batch {batch_id} is still being created; try again in a moment.",
                                 param="batch_id")
    if done:
        view = await to_thread.run_sync(_load_view, door, principal.team, batch_id)
        raise FailedPrecondition(f"Batch {batch_id} has already ended ({view['status'] if view else 'ended'}): "
                                 "it cannot be cancelled.", param="batch_id")
    if job is not None and provider != "vertex":
        try:
            await cancel_on(door.services, job)
        except UpstreamRefused as exc:
            raise as_api_error(exc, doing="cancel the batch") from None
    else:
        await _cancel_vertex(request, door, name, location)

    def record_cancel() -> None:
        with door.services.sessions.begin() as session:
            batch = records.find_batch(session, team=principal.team, batch_id=batch_id)
            if batch is not None and batch.job is not None:
                batch.cancel_requested_at = utcnow()
                ledger.record_cancel(session, job=batch.job)

    await to_thread.run_sync(record_cancel)
    view = await to_thread.run_sync(_load_view, door, principal.team, batch_id)
    return JSONResponse(view)


async def _cancel_vertex(request: Request, door: Door, name: str, location: str) -> None:
    reply = await door.services.upstream.send(
        "POST", _jobs_url(door, location, f"{name}:cancel"),
        headers=request_headers([("content-type", "application/json")],
                                request_id=record_of(request.scope).request_id),
        body=b"{}", idempotent=False)
    data = await reply.read()
    record_of(request.scope).upstream_status = reply.status
    if reply.status != 200:
        raise translate(reply.status, data, reply.headers, doing="cancel the batch's job")
