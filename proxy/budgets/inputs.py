"""Reading a batch input for an estimate: a job's gs:// input files (wildcards expanded), or a local file.

Objects are streamed in large chunks by the same reader metering uses (`proxy.metering.objects.iter_chunks`),
so memory stays flat whatever their size. Reading stops at `deadline` (VBP_ESTIMATE_SECONDS): what is left of
the input is then bounded from its size (`LineEstimator.bound_unread`). A missing object estimates as empty:
Vertex accepts such a job and fails it, which costs nothing.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from google.cloud import storage

from proxy.budgets.estimate import Estimate
from proxy.metering.objects import iter_chunks
from proxy.providers.base import OutputObject

LOCAL_CHUNK_BYTES = 2 * 1024 * 1024


class Estimator(Protocol):
    """What reads an input for an estimate: `LineEstimator` (Vertex lines) or `OpenAILineEstimator`."""

    estimate: Estimate

    def feed(self, chunk: bytes) -> None: ...
    def close_object(self) -> None: ...
    def bound_unread(self, size: int) -> None: ...
    def close(self) -> Estimate: ...


class InputUnreadable(Exception):
    """The input could not be listed or read (Cloud Storage refused or failed): no estimate."""


def _split(uri: str) -> tuple[str, str]:
    bucket, _, path = uri.removeprefix("gs://").partition("/")
    return bucket, path


def input_objects(client: storage.Client, uris: Iterable[str]) -> tuple[list[OutputObject], list[str]]:
    """The objects the URIs name (a `*` matches within the listing of its fixed prefix), and notes on missing ones."""
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
                blob = client.bucket(bucket).get_blob(path)
                found = [] if blob is None else [OutputObject(bucket, path, int(blob.generation or 0),
                                                              int(blob.size or 0))]
            if not found:
                notes.append(f"{uri} names no object: it estimates as empty (Vertex fails such a job at no cost)")
            objects += found
    except Exception as exc:  # any failure of the listing: the input cannot be vouched for
        if type(exc).__name__ == "NotFound":  # the bucket does not exist
            notes.append(f"{exc}: the input estimates as empty")
            return objects, notes
        raise InputUnreadable(f"listing the input failed: {type(exc).__name__}: {exc}") from exc
    return sorted(set(objects)), notes


def estimate_objects(client: storage.Client, objects: list[OutputObject], estimator: Estimator, *,
                     deadline: float) -> Estimate:
    """Feed every object into `estimator` until `deadline` (time.monotonic()); the rest is bounded by size."""
    unread = 0
    for obj in objects:
        if unread or time.monotonic() >= deadline:
            unread += obj.size
            continue
        done = 0
        try:
            for chunk in iter_chunks(client, obj):
                estimator.feed(chunk)
                done += len(chunk)
                if time.monotonic() >= deadline:
                    break
        except Exception as exc:
            raise InputUnreadable(f"reading {obj.uri} failed: {exc}") from exc
        estimator.close_object()
        unread += max(0, obj.size - done)
    estimator.bound_unread(unread)
    if unread:
        estimator.estimate.notes.append(f"{unread} bytes were not read within the time allowed: bounded by size")
    return estimator.close()


def estimate_file(path: Path, estimator: Estimator) -> Estimate:
    """Estimate a local JSONL file (`vbp estimate`), read whole in chunks."""
    with path.open("rb") as handle:
        while chunk := handle.read(LOCAL_CHUNK_BYTES):
            estimator.feed(chunk)
    return estimator.close()
