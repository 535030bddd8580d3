"""OpenAI's Files API, for batch files (errors in OpenAI's envelope: `proxy.gateway.dialects`).

    POST   /v1/files                 multipart `file` + `purpose=batch`: checked and converted line by line while the
                                     caller's bytes and the Vertex input upload (`file_store`), then the custom_id
                                     index stored, then the row; a file of a model the catalog serves on OpenAI or
                                     Azure is checked the same way and kept unchanged (its `provider` on the row)
    GET    /v1/files                 ?purpose&limit(1..10000)&order(asc|desc)&after: the team's files, uploads and
                                     the output/error files of its ended batches
    GET    /v1/files/{id}            the FileObject
    GET    /v1/files/{id}/content    an upload: the caller's bytes; an output/error file: converted on the fly
    DELETE /v1/files/{id}            an upload no running batch needs: its row marked deleted, its objects removed

A refused file (FileRejected: 400 naming the line) leaves nothing behind: no object, no row. `{id}` may also be
a gs:// URI (LiteLLM's file ids), percent-encoded once or twice. Another team's file answers 404 like a missing one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, BinaryIO

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from proxy.clock import utcnow
from proxy.errors import FailedPrecondition, InvalidArgument, NotFound
from proxy.ledger.models import OpenAIFile
from proxy.openai_door import records
from proxy.openai_door.bucket import CONVERTED, INDEX, INPUT, FilesBucket
from proxy.openai_door.compat import check_provider, decode_file_id
from proxy.openai_door.door import Door
from proxy.openai_door.file_conversion import FileRejected
from proxy.openai_door.file_store import convert_and_upload
from proxy.openai_door.file_views import batch_files, ended, file_object
from proxy.openai_door.ids import new_file_id
from proxy.openai_door.output_content import converted_lines
from proxy.openai_door.upload import Upload, read_upload
from proxy.tenancy.data_boundaries import gcs_input
from proxy.tenancy.keys import Principal
from proxy.tenancy.team_policy import TeamPolicy

log = logging.getLogger(__name__)

UPLOAD_PURPOSES = ("batch",)
OUTPUT_PURPOSE = "batch_output"
MAX_LIST = 10_000


async def create(request: Request, door: Door) -> Response:
    principal = await door.caller(request, "files.create")
    bucket = door.bucket
    upload = await read_upload(request, max_bytes=door.services.settings.openai_max_file_bytes)
    try:
        check_provider(request, upload.fields.get("custom_llm_provider"))
        purpose = upload.fields.get("purpose")
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidArgument(f"purpose {purpose!r} is not served here: this proxy keeps batch files only "
                                  "(purpose=batch).", param="purpose")
        policy = await door.team_policy(principal.team)
        row = await to_thread.run_sync(lambda: _store(door, bucket, principal, policy, upload))
    finally:
        upload.close()
    return JSONResponse(file_object(row))


def _store(door: Door, bucket: FilesBucket, principal: Principal, policy: TeamPolicy, upload: Upload) -> OpenAIFile:
    """Convert while uploading, store the index, write the row; on a failure other than a rejected file (which
    stores nothing) remove what was stored (blocking)."""
    settings = door.services.settings
    source: BinaryIO = upload.file.file
    source.seek(0)
    file_id = new_file_id()
    folder = bucket.file_folder(principal.team, file_id)
    try:
        result = convert_and_upload(bucket, folder, source, max_lines=settings.openai_max_file_lines,
                                    max_bytes=settings.openai_max_file_bytes,
                                    check_gcs_uri=lambda uri: _check_uri(uri, policy),
                                    keep=lambda model: door.provider_of(model) != "vertex")
    except FileRejected as exc:
        raise InvalidArgument(exc.message, param=exc.param, code=exc.code) from None
    except BaseException:
        _remove_quietly(bucket, [folder + INPUT, folder + CONVERTED])
        raise
    try:
        bucket.upload_bytes(folder + INDEX, result.index.to_bytes(), content_type="application/octet-stream")
        row = OpenAIFile(id=file_id, team=principal.team, key_id=principal.key_id, purpose="batch",
                         filename=(upload.file.filename or "batch.jsonl")[:300], bytes=result.bytes,
                         lines=result.lines, vertex_lines=result.vertex_lines or result.lines,
                         model=result.model, endpoint=result.endpoint,
                         input_uri=bucket.uri(folder + INPUT), converted_uri=bucket.uri(folder + CONVERTED),
                         index_uri=bucket.uri(folder + INDEX), created_at=utcnow(), expires_at=None,
                         provider=door.provider_of(result.model) if result.kept else "vertex")
        with door.services.sessions.begin() as session:
            session.add(row)
        return row
    except BaseException:
        _remove_quietly(bucket, [folder + name for name in (INPUT, CONVERTED, INDEX)])
        raise


def _check_uri(uri: str, policy: TeamPolicy) -> None:
    """A gs:// URI a line references (an image part) must lie within the team's data boundaries (else 403)."""
    gcs_input(uri, policy)


def _remove_quietly(bucket: FilesBucket, paths: list[str]) -> None:
    try:
        bucket.delete(paths)
    except Exception:
        log.warning("could not remove %s after a failed upload", ", ".join(paths), exc_info=True)


def _file_id(request: Request) -> str:
    return decode_file_id(request.path_params["file_id"])


def _not_found(file_id: str) -> NotFound:
    shown = file_id if len(file_id) <= 200 else file_id[:200] + "..."
    return NotFound(f"No such File object: {shown}", param="id")


def _listing(door: Door, team: str, purpose: str | None) -> list[tuple[int, str, dict[str, Any]]]:
    """(created_at, id, FileObject) of every file of the team, uploads and batch outputs (blocking)."""
    views: list[dict[str, Any]] = []
    with door.services.sessions() as session:
        if purpose in (None, *UPLOAD_PURPOSES):
            views += [file_object(row) for row in records.list_files(session, team=team)]
        if purpose in (None, OUTPUT_PURPOSE):
            for batch, job, lines in records.ended_batches(session, team=team):
                views += [view for _, view in batch_files(batch, job, lines)]
    return [(view["created_at"], view["id"], view) for view in views]


async def list_files(request: Request, door: Door) -> Response:
    principal = await door.caller(request, "files.list")
    check_provider(request)
    query = request.query_params
    purpose = query.get("purpose") or None
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidArgument(f"order must be asc or desc, not {order[:20]!r}.", param="order")
    limit = _limit(query.get("limit"), default=MAX_LIST, most=MAX_LIST)
    items = await to_thread.run_sync(_listing, door, principal.team, purpose)
    items.sort(key=lambda item: (item[0], item[1]), reverse=order == "desc")
    after = query.get("after")
    if after:
        position = next((i for i, item in enumerate(items) if item[1] == after), None)
        items = items[position + 1:] if position is not None else []
    page = [item[2] for item in items[:limit]]
    return JSONResponse({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                         "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})


def _limit(text: str | None, *, default: int, most: int) -> int:
    if text is None or text == "":
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise InvalidArgument(f"limit must be a whole number from 1 to {most}.", param="limit")
    return int(text)


def _find(door: Door, team: str, file_id: str) -> tuple[OpenAIFile | None, dict[str, Any] | None, Any]:
    """(upload row, None, None) or (None, FileObject, (batch, job, which, model)) of an output; (None, None, None)."""
    with door.services.sessions() as session:
        row = records.find_file(session, team=team, file_id=file_id)
        if row is not None:
            return row, None, None
        found = records.find_output_batch(session, team=team, file_id=file_id)
        if found is None:
            return None, None, None
        batch, which = found
        job = batch.job
        upload = session.get(OpenAIFile, batch.input_file_id)
        if job is None or upload is None or not ended(job):
            return None, None, None
        shown = dict(batch_files(batch, job, upload.vertex_lines))
        if which not in shown:
            return None, None, None
        return None, shown[which], (batch, job, which, upload.model)


async def retrieve(request: Request, door: Door) -> Response:
    principal = await door.caller(request, "files.get")
    check_provider(request)
    file_id = _file_id(request)
    row, view, _ = await to_thread.run_sync(_find, door, principal.team, file_id)
    if row is not None:
        return JSONResponse(file_object(row))
    if view is not None:
        return JSONResponse(view)
    raise _not_found(file_id)


async def content(request: Request, door: Door) -> Response:
    principal = await door.caller(request, "files.content")
    check_provider(request)
    bucket = door.bucket
    file_id = _file_id(request)
    row, _, output = await to_thread.run_sync(_find, door, principal.team, file_id)
    if row is not None:
        chunks = await to_thread.run_sync(bucket.stream, bucket.path_of(row.input_uri))
    elif output is not None:
        batch, job, which, model = output
        chunks = await to_thread.run_sync(lambda: converted_lines(door.services, bucket, batch=batch, job=job,
                                                                  model=model, which=which))
    else:
        raise _not_found(file_id)
    # The first chunk is read before the reply starts, so that a missing object is still an error reply.
    first = await to_thread.run_sync(next, chunks, b"")
    return StreamingResponse(_chain(first, chunks), media_type="application/octet-stream")


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


async def delete(request: Request, door: Door) -> Response:
    principal = await door.caller(request, "files.delete")
    check_provider(request)
    bucket = door.bucket
    file_id = _file_id(request)

    def mark_deleted() -> OpenAIFile:
        with door.services.sessions.begin() as session:
            row = records.find_file(session, team=principal.team, file_id=file_id)
            if row is None:
                if records.find_output_batch(session, team=principal.team, file_id=file_id) is not None:
                    raise InvalidArgument("A batch's output and error files are kept with the batch and cannot be "
                                          "deleted on their own.", param="id", code="file_not_deletable")
                raise _not_found(file_id)
            needing = records.batches_needing(session, file_id=row.id)
            if needing:
                raise FailedPrecondition(f"File {row.id} is the input of batch {needing[0]}, which has not ended; "
                                         "cancel it or wait for it to end first.", param="id", code="file_in_use")
            row.deleted_at = utcnow()
            return row

    row = await to_thread.run_sync(mark_deleted)
    paths = [bucket.path_of(uri) for uri in (row.input_uri, row.converted_uri, row.index_uri)]
    await to_thread.run_sync(_remove_quietly, bucket, paths)
    return JSONResponse({"id": row.id, "object": "file", "deleted": True})
