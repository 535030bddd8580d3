"""The door's objects in VBP_FILES_BUCKET (blocking calls: run them in a thread).

    gs://$VBP_FILES_BUCKET/{team}/openai/files/{file_id}/input.jsonl    the caller's bytes
                                                 .../vertex.jsonl   the converted Vertex input
                                                 .../index.bin      the custom_id index (LineIndex.to_bytes())
    gs://$VBP_FILES_BUCKET/{team}/openai/batches/{batch_id}/index.bin  the index, copied for the batch's lifetime
                                                 .../prediction-...   the Vertex job's output

The team name is percent-encoded into one path segment. Reading is one streaming GET in large chunks
(`proxy.metering.objects.iter_chunks`), never the storage client's line iterator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import IO
from urllib.parse import quote

from google.cloud import storage

from proxy.metering.objects import iter_chunks
from proxy.openai_door.pipe import Pipe
from proxy.providers.base import OutputMissing, OutputObject

log = logging.getLogger(__name__)

INPUT, CONVERTED, INDEX = "input.jsonl", "vertex.jsonl", "index.bin"
# Each request of a resumable upload carries this much (a multiple of 256 KiB, as Cloud Storage requires): few
# requests, and one chunk held in memory per upload.
UPLOAD_CHUNK_BYTES = 8 << 20
_PIPE_READ_BYTES = 1 << 20


class FilesBucket:
    """VBP_FILES_BUCKET, with the door's layout; the storage client is made on first use."""

    def __init__(self, name: str, client_factory: Callable[[], storage.Client] = storage.Client, *,
                 upload_chunk_bytes: int = UPLOAD_CHUNK_BYTES) -> None:
        self.name = name
        self.upload_chunk_bytes = upload_chunk_bytes
        self._client_factory = client_factory
        self._client: storage.Client | None = None

    @property
    def client(self) -> storage.Client:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def uri(self, path: str) -> str:
        return f"gs://{self.name}/{path}"

    def path_of(self, uri: str) -> str:
        """The object path of one of this bucket's gs:// URIs."""
        prefix = f"gs://{self.name}/"
        if not uri.startswith(prefix):
            raise ValueError(f"{uri} is not in gs://{self.name}")
        return uri[len(prefix):]

    @staticmethod
    def file_folder(team: str, file_id: str) -> str:
        return f"{quote(team, safe='')}/openai/files/{file_id}/"

    @staticmethod
    def batch_folder(team: str, batch_id: str) -> str:
        return f"{quote(team, safe='')}/openai/batches/{batch_id}/"

    def upload(self, path: str, source: IO[bytes], *, content_type: str) -> None:
        """Write `source` (from its current position) to the object, replacing any."""
        self.client.bucket(self.name).blob(path).upload_from_file(source, content_type=content_type, rewind=True)

    def upload_pipe(self, path: str, pipe: Pipe, *, content_type: str) -> None:
        """Write what arrives through `pipe` to the object as it arrives (a resumable upload, storage's BlobWriter).

        The object exists only once the pipe's stream is whole: when the writer aborts the pipe (a rejected file),
        or the upload fails, the resumable upload is cancelled unfinished and the writer's next write fails."""
        blob = self.client.bucket(self.name).blob(path)
        writer = blob.open("wb", chunk_size=self.upload_chunk_bytes, ignore_flush=True, content_type=content_type)
        try:
            while data := pipe.read(_PIPE_READ_BYTES):
                writer.write(data)
            writer.close()
        except BaseException:
            pipe.abandon()
            try:
                writer.terminate()
            except Exception:  # an unfinished upload stores nothing either way; Cloud Storage expires it
                log.warning("could not cancel the unfinished upload of %s", self.uri(path), exc_info=True)
            raise

    def upload_bytes(self, path: str, data: bytes, *, content_type: str) -> None:
        self.client.bucket(self.name).blob(path).upload_from_string(data, content_type=content_type)

    def copy(self, source: str, target: str) -> None:
        """A server-side copy within the bucket."""
        bucket = self.client.bucket(self.name)
        bucket.copy_blob(bucket.blob(source), bucket, target)

    def read(self, path: str) -> bytes:
        return self.client.bucket(self.name).blob(path).download_as_bytes()

    def stream(self, path: str) -> Iterator[bytes]:
        """The object's bytes in large chunks, read ahead by a thread; OutputMissing when it is gone."""
        blob = self.client.bucket(self.name).get_blob(path)
        if blob is None:
            raise OutputMissing(f"{self.uri(path)} is gone")
        obj = OutputObject(self.name, path, int(blob.generation or 0), int(blob.size or 0),
                           blob.content_encoding or "")
        return iter_chunks(self.client, obj)

    def delete(self, paths: list[str]) -> None:
        """Delete the objects; those already gone are fine."""
        bucket = self.client.bucket(self.name)
        for path in paths:
            blob = bucket.blob(path)
            try:
                blob.delete()
            except Exception as exc:  # google.api_core.exceptions.NotFound: already gone
                if getattr(exc, "code", None) != 404:
                    raise
