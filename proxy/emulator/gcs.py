"""Cloud Storage I/O of a running job: resolve `gs://` inputs (with wildcards), read lines in ranged chunks,
stream output rows into one or several objects."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

READ_CHUNK = 8 * 1024 * 1024
WRITE_CHUNK = 32 * 1024 * 1024
_UPLOAD_UNIT = 256 * 1024  # resumable upload chunks are multiples of 256 KiB
_FLUSH_BYTES = 1024 * 1024


class JobFailure(Exception):
    """A reason a job ends FAILED, with the google.rpc code its `error` carries."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def client_for(api_endpoint: str, project: str) -> storage.Client:
    """A google-cloud-storage client for the local fake-gcs-server, whatever the process env says."""
    return storage.Client(project=project, credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": api_endpoint})


def parse_gs(uri: str) -> tuple[str, str]:
    """`gs://bucket/path` -> `("bucket", "path")`."""
    match = re.fullmatch(r"gs://([^/]+)/?(.*)", uri)
    if match is None:
        raise JobFailure(3, f"Invalid Cloud Storage URI {uri!r}: it must start with gs://BUCKET/.")
    return match[1], match[2]


def parse_object_gs(uri: str) -> tuple[str, str]:
    """`gs://bucket/path/object` -> `("bucket", "path/object")`; a bucket or a folder alone is refused."""
    bucket_name, path = parse_gs(uri)
    if not path or path.endswith("/"):
        raise JobFailure(3, f"{uri} names no object: give its full path, e.g. gs://{bucket_name}/input.jsonl.")
    return bucket_name, path


def _wildcard(path: str) -> re.Pattern[str]:
    # Cloud Storage wildcards: `**` crosses folders, `*` stays within one, `?` is one character.
    pattern = "".join(
        ".*" if token == "**" else "[^/]*" if token == "*" else "[^/]" if token == "?" else re.escape(token)
        for token in re.split(r"(\*\*|\*|\?)", path) if token
    )
    return re.compile(pattern, re.DOTALL)


def resolve_inputs(client: storage.Client, uris: Sequence[str]) -> list[storage.Blob]:
    """Every object the input URIs name; a missing bucket or object is a JobFailure (code 9, as Vertex)."""
    blobs: list[storage.Blob] = []
    checked: set[str] = set()
    for uri in uris:
        bucket_name, path = parse_gs(uri)
        if bucket_name not in checked:
            if client.lookup_bucket(bucket_name) is None:
                raise JobFailure(9, f"Failed to read the input: the Cloud Storage bucket {bucket_name} does not "
                                    "exist or the service account has no access to it.")
            checked.add(bucket_name)
        if any(char in path for char in "*?"):
            prefix = re.split(r"[*?]", path, maxsplit=1)[0]
            pattern = _wildcard(path)
            found = [blob for blob in client.list_blobs(bucket_name, prefix=prefix) if pattern.fullmatch(blob.name)]
            blobs.extend(sorted(found, key=lambda blob: blob.name))
            continue
        blob = client.bucket(bucket_name).get_blob(path)
        if blob is None:
            raise JobFailure(9, f"Failed to read the input: {uri} does not exist.")
        blobs.append(blob)
    if not blobs:
        raise JobFailure(9, f"Failed to read the input: no object matches {', '.join(uris)}.")
    return blobs


def iter_lines(blob: storage.Blob, *, chunk: int = READ_CHUNK) -> Iterator[bytes]:
    """The lines of an object (newlines stripped), read in large ranged chunks (memory stays ~ one chunk)."""
    size = blob.size or 0
    position = 0
    rest = b""
    while position < size:
        end = min(size, position + chunk) - 1
        data = blob.download_as_bytes(start=position, end=end, checksum=None)
        position = end + 1
        lines = (rest + data).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


class OutputSink:
    """The job's output objects: `predictions.jsonl`, or `predictions_00001.jsonl`... when sharded, and an
    optional partial copy under `incremental_predictions/` (every other row)."""

    def __init__(self, client: storage.Client, output_dir: str, *, shards: int = 1,
                 incremental_copy: bool = False) -> None:
        bucket_name, prefix = parse_gs(output_dir)
        if client.lookup_bucket(bucket_name) is None:
            raise JobFailure(9, f"Failed to write the output: the Cloud Storage bucket {bucket_name} does not "
                                "exist or the service account has no access to it.")
        bucket = client.bucket(bucket_name)
        names = ["predictions.jsonl"] if shards == 1 else [f"predictions_{i:05d}.jsonl" for i in range(1, shards + 1)]
        if incremental_copy:
            names.append("incremental_predictions/predictions.jsonl")
        # Each open writer buffers one chunk: keep the sum bounded however many shards there are.
        chunk = max(_UPLOAD_UNIT, min(WRITE_CHUNK, 64 * 1024 * 1024 // len(names)) // _UPLOAD_UNIT * _UPLOAD_UNIT)
        self._shards = shards
        self._writers: list[Any] = [
            bucket.blob(f"{prefix.rstrip('/')}/{name}").open("wb", chunk_size=chunk, ignore_flush=True)
            for name in names
        ]
        # Rows are gathered per object and handed over in ~1 MiB writes: one write per row costs more.
        self._buffers = [bytearray() for _ in self._writers]
        self._flush_bytes = min(_FLUSH_BYTES, chunk)
        self.rows = 0

    def write(self, row: bytes) -> None:
        self._add(self.rows % self._shards, row)
        if len(self._writers) > self._shards and self.rows % 2 == 0:
            self._add(self._shards, row)
        self.rows += 1

    def _add(self, index: int, row: bytes) -> None:
        buffer = self._buffers[index]
        buffer += row
        if len(buffer) >= self._flush_bytes:
            self._writers[index].write(bytes(buffer))
            buffer.clear()

    def close(self) -> None:
        """Finish every upload; the objects appear in the bucket now."""
        for writer, buffer in zip(self._writers, self._buffers, strict=True):
            if buffer:
                writer.write(bytes(buffer))
            writer.close()
