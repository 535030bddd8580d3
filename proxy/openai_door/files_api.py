"""OpenAI's Files API, for batch files (errors in OpenAI's envelope: `proxy.gateway.dialects`).

    POST   /v1/files                 multipart `file` + `purpose=batch`: checked and converted line by line as the
                                     body arrives (`upload`), while the caller's bytes and the Vertex input upload
                                     (`file_store`), then the custom_id index stored, then the row; a file of a model
                                     the catalog serves on OpenAI or Azure is checked the same way and kept unchanged
                                     (its `provider` on the row)
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
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, wait
from typing import Any, BinaryIO, cast

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
from proxy.openai_door.pipe import Pipe, PipeAborted
from proxy.openai_door.upload import Field, FileData, upload_events
from proxy.tenancy.data_boundaries import gcs_input
from proxy.tenancy.keys import Principal
from proxy.tenancy.team_policy import TeamPolicy

log = logging.getLogger(__name__)

UPLOAD_PURPOSES = ("batch",)
OUTPUT_PURPOSE = "batch_output"
MAX_LIST = 10_000
SOURCE_PIPE_BYTES = 8 << 20  # the caller's bytes received but not yet converted, at most


async def create(request: Request, door: Door) -> Response:
    principal = await door.caller(request, "files.create")
    bucket = door.bucket  # 503 when the door is off, before the body is read
    settings = door.services.settings
    events = upload_events(request, max_bytes=settings.openai_max_file_bytes)
    policy = await door.team_policy(principal.team)
    source = Pipe(SOURCE_PIPE_BYTES)
    storing: Future[OpenAIFile] | None = None
    fields: dict[str, str] = {}
    try:
        async for event in events:
            if isinstance(event, FileData):
                if not source.offer(event.data):  # full: wait for the conversion in a thread, not on the loop
                    await to_thread.run_sync(source.write, event.data)
            elif isinstance(event, Field):
                fields[event.name] = event.value
            else:  # the file part begins: the fields before it are checked now, the rest once the body has ended
                try:
                    _check_fields(request, fields, final=False)
                except InvalidArgument:
                    await _drain(events)
                    raise
                storing = _start_storing(door, bucket, principal, policy, event.filename, source)
        _check_fields(request, fields, final=True)
    except PipeAborted:
        await _drain(events)  # the conversion stopped (a bad line): its error is the reply, below
    except BaseException as exc:  # the body or its fields are refused: the conversion stops, nothing is stored
        source.abort(exc)
        if storing is not None:
            await to_thread.run_sync(wait, [storing])
        raise
    finally:
        await events.aclose()
    source.close()  # the file is whole: the conversion may finish and store it
    assert storing is not None  # upload_events raised if there was no file part
    row = await to_thread.run_sync(storing.result)
    return JSONResponse(file_object(row))


async def _drain(events: AsyncIterator[object]) -> None:
    """Read the rest of a refused upload (at most the size cap), so that the client, still sending, reads the
    error reply rather than a connection reset."""
    try:
        async for _ in events:
            pass
    except Exception:
        pass  # the reply is the first error's


def _check_fields(request: Request, fields: dict[str, str], *, final: bool) -> None:
    """The provider and purpose of an upload; before the body has ended (`final` False), only those given yet."""
    check_provider(request, fields.get("custom_llm_provider"))
    if final or "purpose" in fields:
        purpose = fields.get("purpose")
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidArgument(f"purpose {purpose!r} is not served here: this proxy keeps batch files only "
                                  "(purpose=batch).", param="purpose")


def _start_storing(door: Door, bucket: FilesBucket, principal: Principal, policy: TeamPolicy, filename: str,
                   source: Pipe) -> Future[OpenAIFile]:
    """`_store` in a thread of its own, reading the file from `source` while the body is still arriving."""
    storing: Future[OpenAIFile] = Future()

    def run() -> None:
        try:
            storing.set_result(_store(door, bucket, principal, policy, filename, cast(BinaryIO, source)))
        except BaseException as exc:
            source.abandon()  # the receiving side stops at its next write
            storing.set_exception(exc)

    threading.Thread(target=run, name="vbp-files-store", daemon=True).start()
    return storing


def _store(door: Door, bucket: FilesBucket, principal: Principal, policy: TeamPolicy, filename: str,
           source: BinaryIO) -> OpenAIFile:
    """Convert while uploading, store the index, write the row; on a failure other than a rejected file (which
    stores nothing) remove what was stored (blocking)."""
    settings = door.services.settings
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
                         filename=(filename or "batch.jsonl")[:300], bytes=result.bytes,
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
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= most:
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
