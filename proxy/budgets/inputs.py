"""Reading a batch input for an estimate: a job's gs:// input files (wildcards expanded), or a local file.

Objects are streamed in large chunks by the same reader metering uses (`proxy.metering.objects.iter_chunks`),
so memory stays flat whatever their size. An object the job names in full is read with ONE request, its media
GET, which also gives its size: no metadata GET first (on a 10 MB input that request was a tenth of the
estimate's time). A wildcard is listed, which gives the sizes. Reading stops at `deadline` (VBP_ESTIMATE_SECONDS):
what is left of the input is then bounded from its size (`LineEstimator.bound_unread`; an object not reached
by then is asked its size alone). A missing object estimates as empty: Vertex accepts such a job and fails it,
which costs nothing.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable
from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol

from google.cloud import storage

from proxy.budgets.estimate import Estimate
from proxy.metering.objects import iter_chunks
from proxy.providers.base import OutputMissing, OutputObject

LOCAL_CHUNK_BYTES = 2 * 1024 * 1024
UNLISTED = -1  # the size of an object named in full: not asked for, the media GET tells it


class Estimator(Protocol):
    """What reads an input for an estimate: `LineEstimator` (Vertex lines) or `OpenAILineEstimator`."""

    estimate: Estimate

    def feed(self, chunk: bytes) -> None: ...
    def close_object(self) -> None: ...
    def bound_unread(self, size: int) -> None: ...
    def close(self) -> Estimate: ...


class InputUnreadable(Exception):
    """The input could not be listed or read (Cloud Storage refused or failed): no estimate."""


class _Size:
    """An object's size, told by its media GET when it was not listed."""

    def __init__(self, size: int) -> None:
        self.bytes = size

    def tell(self, size: int) -> None:
        self.bytes = size


def _split(uri: str) -> tuple[str, str]:
    bucket, _, path = uri.removeprefix("gs://").partition("/")
    return bucket, path


def input_objects(client: storage.Client, uris: Iterable[str]) -> tuple[list[OutputObject], list[str]]:
    """The objects the URIs name (a `*` matches within the listing of its fixed prefix), and notes on missing ones.

    An object named in full is not asked for: it comes back with generation 0 and size UNLISTED, and
    `estimate_objects` learns both from its media GET (a missing one is noted there)."""
    objects: list[OutputObject] = []
    notes: list[str] = []
    try:
        for uri in uris:
            bucket, path = _split(uri)
            if "*" in path:
                prefix = path.split("*", 1)[0]
                found = [OutputObject(bucket, blob.name, int(blob.generation or 0), int(blob.size or 0))
                         for blob in client.list_blobs(bucket, prefix=prefix)
                         if fnmatch.fnmatchcase(blob.name, path)]
            else:
                objects.append(OutputObject(bucket, path, 0, UNLISTED))
                continue
            if not found:
                notes.append(_missing(uri))
            objects += found
    except Exception as exc:  # any failure of the listing: the input cannot be vouched for
        if type(exc).__name__ == "NotFound":  # the bucket does not exist
            notes.append(f"{exc}: the input estimates as empty")
            return objects, notes
        raise InputUnreadable(f"listing the input failed: {type(exc).__name__}: {exc}") from exc
    # one read per object, also when a wildcard and a full name both match it (the listed one: its size is known)
    unique = {(obj.bucket, obj.name): obj for obj in sorted(objects, key=lambda obj: obj.size)}
    return sorted(unique.values()), notes


def estimate_objects(client: storage.Client, objects: list[OutputObject], estimator: Estimator, *,
                     deadline: float, pool: Executor | None = None) -> Estimate:
    """Feed every object into `estimator` until `deadline` (time.monotonic()); the rest is bounded by size.
    `pool`: the threads that read ahead (`proxy.metering.objects.read_ahead`)."""
    unread = 0
    notes = estimator.estimate.notes
    for obj in objects:
        if unread or time.monotonic() >= deadline:
            unread += _size(client, obj, notes)
            continue
        done, size = 0, _Size(obj.size)
        try:
            for chunk in iter_chunks(client, obj, sized=size.tell, pool=pool):
                estimator.feed(chunk)
                done += len(chunk)
                if time.monotonic() >= deadline:
                    break
        except OutputMissing as exc:
            if obj.size != UNLISTED:  # listed a moment ago, gone now: the input is changing under the estimate
                raise InputUnreadable(f"reading {obj.uri} failed: {exc}") from exc
            notes.append(_missing(obj.uri))
            continue
        except Exception as exc:
            raise InputUnreadable(f"reading {obj.uri} failed: {exc}") from exc
        estimator.close_object()
        if size.bytes < 0 and time.monotonic() >= deadline:  # stopped early, and the reply gave no size: ask it
            size.bytes = _size(client, obj, notes)
        unread += max(0, size.bytes - done)
    estimator.bound_unread(unread)
    if unread:
        estimator.estimate.notes.append(f"{unread} bytes were not read within the time allowed: bounded by size")
    return estimator.close()


def _size(client: storage.Client, obj: OutputObject, notes: list[str]) -> int:
    """The size of an object not read (the deadline came first): asked for when it was named in full."""
    if obj.size != UNLISTED:
        return obj.size
    try:
        blob = client.bucket(obj.bucket).get_blob(obj.name)
    except Exception as exc:
        if type(exc).__name__ != "NotFound":  # a missing bucket estimates as empty, as a missing object
            raise InputUnreadable(f"reading {obj.uri} failed: {type(exc).__name__}: {exc}") from exc
        blob = None
    if blob is None:
        notes.append(_missing(obj.uri))
        return 0
    return int(blob.size or 0)


def _missing(uri: str) -> str:
    return f"{uri} names no object: it estimates as empty (Vertex fails such a job at no cost)"


def estimate_file(path: Path, estimator: Estimator) -> Estimate:
    """Estimate a local JSONL file (`vbp estimate`), read whole in chunks."""
    with path.open("rb") as handle:
        while chunk := handle.read(LOCAL_CHUNK_BYTES):
            estimator.feed(chunk)
    return estimator.close()
