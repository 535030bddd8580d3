"""Reading a job's output files from Cloud Storage: list the final `*.jsonl`, stream their lines, meter them.

google-cloud-storage's `blob.open()` line iterator is ~150x too slow for multi-GB outputs, so each object is
fetched with ONE streaming GET of its media (pinned to the listed generation), read in large chunks by a
reader thread that overlaps the network with the parsing, and split into lines here. At most
`_QUEUE_DEPTH + 2` chunks are alive at once: memory does not grow with the object's size (only with its
longest line).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from google.cloud import storage

from proxy.metering.totals import JobTotals
from proxy.metering.usage import MALFORMED, SUCCEEDED, RowUsage, parse_span

DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024
INCREMENTAL_FOLDER = "incremental_predictions"
_QUEUE_DEPTH = 2  # chunks read ahead of the parser
_CONNECT_TIMEOUT, _READ_TIMEOUT = 10.0, 120.0
_END = object()
_BLANK = b" \t\r\f\v"  # a line starting with one of these may be blank


class OutputReadError(Exception):
    """An output could not be listed or read completely; the caller retries the whole job later."""


class OutputMissing(OutputReadError):
    """The bucket, or the listed generation of an object, no longer exists (a retry will not help)."""


@dataclass(frozen=True, order=True)
class OutputObject:
    """One final predictions file, pinned to the generation that was listed."""

    bucket: str
    name: str
    generation: int
    size: int

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/some/dir` -> (`bucket`, `some/dir`)."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, path = uri[len("gs://"):].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, path


def list_output_objects(client: storage.Client, gcs_output_directory: str) -> list[OutputObject]:
    """Every final `*.jsonl` under the output directory (none under `incremental_predictions/`), sorted by name."""
    bucket, prefix = split_gcs_uri(gcs_output_directory)
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # `dir` must not also match `dir-2/`
    found = []
    try:
        for blob in client.list_blobs(bucket, prefix=prefix):
            relative = blob.name[len(prefix):]
            if not relative.endswith(".jsonl"):
                continue
            if INCREMENTAL_FOLDER in relative.split("/")[:-1]:
                continue  # rows exported while the job ran: the final files repeat them
            found.append(OutputObject(bucket, blob.name, int(blob.generation), int(blob.size)))
    except Exception as exc:  # google.api_core errors, requests and auth errors alike
        raise _translate(exc, f"listing {gcs_output_directory}") from exc
    return sorted(found)


def fingerprint(objects: Iterable[OutputObject]) -> str:
    """A sha256 over the objects' names, generations and sizes: it changes when any output changes."""
    digest = hashlib.sha256()
    for obj in sorted(objects):
        digest.update(f"{obj.bucket}\0{obj.name}\0{obj.generation}\0{obj.size}\n".encode())
    return digest.hexdigest()


def iter_lines(client: storage.Client, obj: OutputObject, *,
               chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[bytes]:
    """The object's non-blank lines (CR of CRLF removed; a last line without newline included)."""
    for buf, start, end, _ in iter_spans(iter_chunks(client, obj, chunk_bytes=chunk_bytes)):
        yield buf[start:end]


def iter_spans(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, int, int, memoryview]]:
    """Each non-blank line of a stream of chunks as `(buffer, start, end, memoryview(buffer))`, without copying.

    Only a line that straddles chunks is copied (joined once). Blank and whitespace-only lines are skipped and
    a CR before the LF is left out.
    """
    pending: list[bytes] = []  # the start of a line that continues in the next chunk(s)
    for chunk in chunks:
        pos = 0
        if pending:
            newline = chunk.find(b"\n")
            if newline < 0:
                pending.append(chunk)  # a line longer than a chunk: memory grows with the line, not the file
                continue
            pending.append(chunk[:newline])
            joined = b"".join(pending)
            pending = []
            span = _trim(joined, 0, len(joined))
            if span is not None:
                yield joined, span[0], span[1], memoryview(joined)
            pos = newline + 1
        view = memoryview(chunk)
        find = chunk.find
        while True:
            newline = find(b"\n", pos)
            if newline < 0:
                if pos < len(chunk):
                    pending.append(chunk[pos:])
                break
            end = newline
            if end > pos and chunk[end - 1] == 13:  # CRLF
                end -= 1
            if end > pos and (chunk[pos] not in _BLANK or chunk[pos:end].strip()):
                yield chunk, pos, end, view
            pos = newline + 1
    if pending:
        joined = b"".join(pending)
        span = _trim(joined, 0, len(joined))
        if span is not None:
            yield joined, span[0], span[1], memoryview(joined)


def _trim(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The span without its final CR, or None if the line is blank."""
    if end > start and buf[end - 1] == 13:
        end -= 1
    if end <= start or not buf[start:end].strip():
        return None
    return start, end


def iter_chunks(client: storage.Client, obj: OutputObject, *,
                chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[bytes]:
    """The object's bytes in chunks of `chunk_bytes` (the last shorter), read ahead by a thread."""
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be positive")
    chunks: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_DEPTH)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        stream = _stream(client, obj, chunk_bytes)
        try:
            for chunk in stream:
                if not put(chunk):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, who raises it
            put(exc)
        finally:
            stream.close()  # ends the GET now, also when the consumer stopped early

    reader = threading.Thread(target=read, name=f"gcs-read {obj.name}", daemon=True)
    reader.start()
    try:
        while True:
            item = chunks.get()
            if item is _END:
                return
            if isinstance(item, OutputReadError):
                raise item
            if isinstance(item, BaseException):
                raise _translate(item, f"reading {obj.uri}#{obj.generation}") from item
            yield item
    finally:
        stop.set()
        reader.join(timeout=5.0)  # it stops at its next chunk; a stalled read is left to its timeout


def _stream(client: storage.Client, obj: OutputObject, chunk_bytes: int) -> Generator[bytes, None, None]:
    """One GET of the object's media at its generation, through the client's own authorized session."""
    blob = client.bucket(obj.bucket).blob(obj.name, generation=obj.generation)
    # Private but stable helpers of google-cloud-storage: the media URL (emulator host, universe domain and
    # generation included) and the authorized requests session the library itself uses.
    url = blob._get_download_url(client)
    session = client._http
    with session.get(url, stream=True, timeout=(_CONNECT_TIMEOUT, _READ_TIMEOUT)) as reply:
        if reply.status_code == 404:
            raise OutputMissing(f"{obj.uri}#{obj.generation} is gone (404)")
        if reply.status_code >= 400:
            raise OutputReadError(f"reading {obj.uri}#{obj.generation}: HTTP {reply.status_code}: {reply.text[:300]}")
        transcoded = "gzip" in (reply.headers.get("x-goog-stored-content-encoding", "") +
                                reply.headers.get("Content-Encoding", ""))
        received = 0
        for chunk in reply.iter_content(chunk_size=chunk_bytes):
            received += len(chunk)
            yield chunk
    if not transcoded and received != obj.size:
        raise OutputReadError(f"reading {obj.uri}#{obj.generation}: got {received} of {obj.size} bytes")


def _translate(exc: BaseException, doing: str) -> OutputReadError:
    if isinstance(exc, OutputReadError):
        return exc
    code = getattr(exc, "code", None)
    if code == 404:
        return OutputMissing(f"{doing}: not found: {exc}")
    return OutputReadError(f"{doing}: {type(exc).__name__}: {exc}")


def meter_objects(client: storage.Client, objects: Iterable[OutputObject], *,
                  price: Callable[[RowUsage], int] | None,
                  chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> JobTotals:
    """Read, parse and price every row of the objects; `price=None` (unpriced model) still counts everything."""
    totals = JobTotals(priced=price is not None)
    add = totals.add
    for obj in objects:
        row = 0
        for buf, start, end, view in iter_spans(iter_chunks(client, obj, chunk_bytes=chunk_bytes)):
            row += 1
            usage = parse_span(buf, start, end, view)
            kind = usage.kind
            if kind == SUCCEEDED:
                add(usage, price(usage) if price is not None else None)
            elif kind == MALFORMED:
                add(usage, where=f"{obj.uri} row {row}")
            else:
                add(usage)
    return totals
