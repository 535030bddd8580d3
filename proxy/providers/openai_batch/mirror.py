"""Copying an ended batch's output and error files from the deployment into VBP_FILES_BUCKET, once.

    gs://$VBP_FILES_BUCKET/{team}/openai/batches/{batch_id}/upstream/output.jsonl   the deployment's output file
                                                               .../errors.jsonl   its error file

Metering, per-line costs and the door's output content then read them from the bucket exactly as they read a
Vertex job's outputs (`OutputObject`s pinned by generation). Each object is written with
`if_generation_match=0`: the first writer wins, a second (another replica, a retry) finds it there and keeps it.
Within one process a file is mirrored by one task at a time (the poller and a door retrieve both read an ended
batch): the second waits, then finds the file there. That saves a second download, and it keeps a local stand-in
that ignores the precondition (fake-gcs-server, fsouza/fake-gcs-server#994) from replacing the object while the
meter reads the generation it listed.
A download is spooled to a temporary file (memory stays flat) and uploaded whole, so a half-read file never
lands in the bucket.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import weakref
from typing import Any

from anyio import to_thread
from google.cloud import storage

from proxy.openai_door.bucket import FilesBucket
from proxy.providers.openai_batch.client import OpenAIBatchClient

log = logging.getLogger(__name__)

FOLDER = "upstream/"
FILES = (("output_file_id", "output.jsonl"), ("error_file_id", "errors.jsonl"))
SPOOL_BYTES = 8 << 20

# One lock per (event loop, object path): asyncio locks belong to the loop that first waits on them, and a lock
# nobody holds or awaits is dropped.
_writing: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = weakref.WeakValueDictionary()


def _writing_lock(bucket: str, path: str) -> asyncio.Lock:
    key = (id(asyncio.get_running_loop()), f"{bucket}/{path}")
    lock = _writing.get(key)
    if lock is None:
        lock = _writing[key] = asyncio.Lock()
    return lock


def mirror_folder(bucket: str, team: str, batch_id: str) -> str:
    """The gs:// folder a door batch's upstream outputs are mirrored into."""
    return f"gs://{bucket}/{FilesBucket.batch_folder(team, batch_id)}{FOLDER}"


def _exists(client: storage.Client, bucket: str, path: str) -> bool:
    return client.bucket(bucket).get_blob(path) is not None


def _upload(client: storage.Client, bucket: str, path: str, source: Any) -> None:
    source.seek(0)
    blob = client.bucket(bucket).blob(path)
    try:
        blob.upload_from_file(source, content_type="application/jsonl", if_generation_match=0, rewind=True)
    except Exception as exc:  # 412: another writer got there first; its copy is the same file
        if getattr(exc, "code", None) != 412:
            raise


async def mirror_outputs(client: OpenAIBatchClient, storage_client: storage.Client, batch: dict[str, Any], *,
                         bucket: str, folder: str) -> None:
    """Copy the batch's output and error files (those it has) under `folder` (a path in `bucket`), each once."""
    for field, name in FILES:
        file_id = batch.get(field)
        if not isinstance(file_id, str) or not file_id:
            continue
        path = folder + name
        async with _writing_lock(bucket, path):
            if await to_thread.run_sync(_exists, storage_client, bucket, path):
                continue
            with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as spool:
                size = await client.download(file_id, spool)
                await to_thread.run_sync(_upload, storage_client, bucket, path, spool)
        log.info("mirrored %s's %s (%d bytes) into gs://%s/%s", client.deployment.name, field, size, bucket, path)
