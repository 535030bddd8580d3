"""A batch's output and error files, converted on the fly from its Vertex job's output rows (blocking generators:
Starlette runs them in a thread); a batch on OpenAI or Azure serves its deployment's files as mirrored.

The job's final output objects come from its provider (`output_objects`); each is read in large chunks
(`proxy.metering.objects.iter_chunks`) and fed to `OutputLines`, whose converted lines are passed on as they come:
memory does not grow with the output. The size of a file streamed to its end is kept on the batch row, so that
its FileObject shows exact `bytes` from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Literal

from sqlalchemy import update

from proxy.errors import Internal, Unavailable
from proxy.ledger.models import Job, OpenAIBatch
from proxy.metering.objects import iter_chunks
from proxy.openai_door.batch_views import UNANSWERED, status_of
from proxy.openai_door.bucket import INDEX, FilesBucket
from proxy.openai_door.line_index import LineIndex
from proxy.openai_door.output_conversion import OutputLines
from proxy.providers.base import NoOutput, NotReady, OutputObject, Unreadable
from proxy.providers.openai_batch.mirror import FILES as MIRRORED
from proxy.providers.registry import get_provider
from proxy.services import Services

log = logging.getLogger(__name__)


def output_objects(services: Services, bucket: FilesBucket, job: Job) -> list[OutputObject]:
    """The job's final output objects ([] when it wrote none); 503 while they are not visible yet."""
    provider = get_provider(job.provider, services.settings)
    try:
        return provider.output_objects(bucket.client, job)
    except NoOutput:
        return []
    except NotReady as exc:
        raise Unavailable(f"The batch's output is not readable yet ({exc}); try again shortly.",
                          headers={"retry-after": "5"}) from None
    except Unreadable as exc:
        raise Internal(f"The batch's output cannot be read: {exc}") from None


def converted_lines(services: Services, bucket: FilesBucket, *, batch: OpenAIBatch, job: Job, model: str,
                    which: str) -> Iterator[bytes]:
    """The `output` or `error` file's bytes, in chunks; its size is recorded on the batch once read to the end."""
    objects = output_objects(services, bucket, job)
    if job.provider != "vertex":  # OpenAI and Azure lines are served as the deployment wrote them (mirrored)
        wanted = MIRRORED[0][1] if which == "output" else MIRRORED[1][1]
        return _stream(services, bucket, [obj for obj in objects if obj.name.endswith("/" + wanted)], None,
                       batch_id=batch.id, which=which)
    index = LineIndex.from_bytes(bucket.read(bucket.batch_folder(batch.team, batch.id) + INDEX))
    kind: Literal["output", "error"] = "output" if which == "output" else "error"
    unanswered = UNANSWERED.get(status_of(batch, job), "batch_failed")
    lines = OutputLines(index, model=model, batch_id=batch.id, which=kind, unanswered=unanswered)
    return _stream(services, bucket, objects, lines, batch_id=batch.id, which=which)


def _stream(services: Services, bucket: FilesBucket, objects: list[OutputObject], lines: OutputLines | None, *,
            batch_id: str, which: str) -> Iterator[bytes]:
    """The objects' lines, converted by `lines` (None: as they are)."""
    size = 0
    for obj in objects:
        for chunk in iter_chunks(bucket.client, obj):
            converted = lines.feed(chunk) if lines is not None else chunk
            if converted:
                size += len(converted)
                yield converted
    rest = lines.close() if lines is not None else b""
    if rest:
        size += len(rest)
        yield rest
    column = OpenAIBatch.output_bytes if which == "output" else OpenAIBatch.error_bytes
    try:
        with services.sessions.begin() as session:
            session.execute(update(OpenAIBatch).where(OpenAIBatch.id == batch_id).values({column: size}))
    except Exception:  # the file was served whole; only its size is not kept this time
        log.warning("could not record the size of %s's %s file", batch_id, which, exc_info=True)
