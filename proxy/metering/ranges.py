"""Metering large outputs on every core: byte ranges of the objects, each read and counted by a worker process.

One Python process counts one line at a time on one core, so a big job's output is cut into byte ranges that
worker processes read (one ranged GET each, pinned to the listed generation) and count; their totals add up
(`JobTotals.merge`: prices are linear). A range owns the lines that START inside it: it reads from one byte
before its start (to see whether a line starts there) and, if its last line runs on, past its end until that
line's newline. Every line is therefore counted by exactly one range, whatever the cut points.

Workers are spawned (never forked: the proxy runs threads) once per `RangeMeter` and reused; they get the media
URL and the parent's authorization header, never credentials. A worker ends when its parent process dies, even
by SIGKILL (see `exit_with_parent`), so no metering process outlives the proxy or the `vbp meter` that started it.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any, TypeVar

import google.auth.transport.requests
import requests
from google.cloud import storage

from proxy.metering.handoff import HandoffFolder
from proxy.metering.objects import (
    DEFAULT_CHUNK_BYTES,
    describe_malformed,
    media_url,
    meter_objects,
    read_error,
    stream_bytes,
)
from proxy.metering.pricing import Rates
from proxy.metering.totals import MAX_PROBLEMS, JobTotals
from proxy.metering.worker_heap import keep_freed_memory
from proxy.providers.base import OutputObject, OutputReadError
from proxy.providers.registry import DEFAULT_PROVIDER, get_provider
from proxy.settings import default

DEFAULT_MIN_RANGE_BYTES: int = default("meter_range_mb") * 1024 * 1024
_RANGES_PER_PROCESS = 4  # smaller ranges than an even split, so that a slow one does not hold up the end
_TAIL_BYTES = 64 * 1024  # first read past a range's end to finish its last line (doubled until a newline)


@dataclass(frozen=True)
class ByteRange:
    """The lines of `obj` that start in the bytes [start, stop)."""

    obj: OutputObject
    start: int
    stop: int


@dataclass(frozen=True)
class RangeTask:
    """What a worker needs to count one range: all plain data, picklable (the provider by its name)."""

    byte_range: ByteRange
    url: str
    headers: dict[str, str]
    rates: Rates | None
    chunk_bytes: int
    provider: str = DEFAULT_PROVIDER


@dataclass
class RangeCount:
    """A worker's answer: the range's totals, its non-blank lines, and its first malformed ones (row, reason)."""

    totals: JobTotals
    rows: int
    malformed_rows: list[tuple[int, str]]


def plan_ranges(objects: list[OutputObject], *, parts: int, min_bytes: int) -> list[ByteRange]:
    """Cut the objects into about `parts` ranges of at least `min_bytes` (an object smaller than that is one range)."""
    total = sum(obj.size for obj in objects)
    target = max(min_bytes, math.ceil(total / max(parts, 1)), 1)
    ranges: list[ByteRange] = []
    for obj in objects:
        count = max(1, round(obj.size / target))
        cuts = [obj.size * index // count for index in range(count + 1)]
        ranges.extend(ByteRange(obj, start, stop) for start, stop in zip(cuts, cuts[1:], strict=False) if stop > start)
    return ranges


T = TypeVar("T")


def planned_ranges(client: storage.Client, objects: list[OutputObject], ranges: RangeMeter, *,
                   max_range_bytes: int) -> tuple[list[ByteRange], dict[OutputObject, str]]:
    """The objects cut into ranges of at most `max_range_bytes` (at least four per worker), and each object's media
    URL: what a pass that reads ranges in worker processes and puts their results back in order starts from."""
    total = sum(obj.size for obj in objects)
    parts = max(ranges.processes * 4, -(-total // max_range_bytes))
    planned = plan_ranges(objects, parts=parts, min_bytes=min(ranges.min_bytes, max_range_bytes))
    return planned, {obj: media_url(client, obj) for obj in objects}


def results_in_order(ranges: RangeMeter, planned: Iterable[ByteRange], submit: Callable[[ByteRange], Future[T]], *,
                     ahead_per_process: int, what: str, discard: Callable[[T], None] | None = None) -> Iterator[T]:
    """Each range's result, in the ranges' order, with at most `ahead_per_process` ranges per worker submitted ahead
    (results wait for their turn, so this bounds the memory). A worker that died (killed, out of memory) closes the
    pool, so new ones start next time, and is an OutputReadError naming `what` ("a per-line export").

    When the reader stops early, the ranges not yet started are cancelled and `discard` is given the result of each
    one already under way once it comes (a result handed off in a file is removed so)."""
    pending: deque[Future[T]] = deque()
    todo = iter(planned)
    try:
        for byte_range in islice(todo, ranges.processes * ahead_per_process):
            pending.append(submit(byte_range))
        while pending:
            try:
                result = pending.popleft().result()
            except BrokenProcessPool as exc:
                ranges.close()
                raise OutputReadError(f"{what} worker process died: {exc}") from exc
            for byte_range in islice(todo, 1):
                pending.append(submit(byte_range))
            yield result
    finally:
        for future in pending:
            if not future.cancel() and discard is not None:
                future.add_done_callback(partial(_discard_result, discard))


def _discard_result(discard: Callable[[T], None], future: Future[T]) -> None:
    if not future.cancelled() and future.exception() is None:
        discard(future.result())


def owned_chunks(read: Callable[[int, int], Iterator[bytes]], byte_range: ByteRange, *,
                 tail_bytes: int = _TAIL_BYTES) -> Iterator[bytes]:
    """The bytes of the lines that start in the range; `read(first, stop)` streams the object's bytes [first, stop).

    The range's last line ends at the first newline at or after `stop - 1`. One read takes the range and
    `tail_bytes` past its end, where that newline almost always is: one GET per range instead of two (each GET costs
    a worker and the store about a millisecond of CPU). A longer line is finished by further reads, each twice the
    size of the last. The read past the newline is drained, not cut, so that its connection is kept alive."""
    start, stop, size = byte_range.start, byte_range.stop, byte_range.obj.size
    first = start - 1 if start > 0 else 0  # one byte before the range: whether a line starts at `start`
    owned = start == 0  # past the line that started before the range (it ends at the first newline read)
    finished = False
    at = first  # where the next chunk starts in the object
    for chunk in read(first, min(size, stop + tail_bytes)):
        chunk_at, at = at, at + len(chunk)
        if finished:
            continue
        low = 0
        if not owned:
            newline = chunk.find(b"\n")
            if newline < 0:
                continue
            owned, low = True, newline + 1
            if chunk_at + low >= stop:  # the first line that starts after it belongs to the next range
                finished = True
                continue
        if at >= stop:  # the chunk reaches the range's end: the owned bytes end at the first newline from stop - 1
            newline = chunk.find(b"\n", max(low, stop - 1 - chunk_at))
            if newline >= 0:
                finished = True
                yield chunk[low:newline + 1]
                continue
        yield chunk if low == 0 else chunk[low:]
    if finished or not owned or at >= size:
        return  # done, or no line starts in the range, or its last line ends at the object's end
    window = 2 * tail_bytes
    while at < size:
        end = min(size, at + window)
        for chunk in read(at, end):
            newline = chunk.find(b"\n")
            if newline >= 0:
                yield chunk[:newline + 1]
                return
            yield chunk
        at, window = end, window * 2


_session: requests.Session | None = None
_environments: dict[str, dict[str, Any]] = {}  # a worker's proxies and TLS settings from the environment, per origin


def range_chunks(byte_range: ByteRange, url: str, headers: dict[str, str], chunk_bytes: int) -> Iterator[bytes]:
    """In a worker process: the bytes of the lines that start in the range, read with ranged GETs of `url`."""
    global _session
    if _session is None:
        _session = requests.Session()  # one per worker, so that its connections are kept alive
        # requests reads the proxy, CA bundle and .netrc settings of the environment again for every request (about
        # a millisecond of CPU); a worker reads them once per origin instead, and sends only the parent's headers.
        _session.trust_env = False
    session = _session
    origin = "/".join(url.split("/", 3)[:3])  # scheme://host:port
    if origin not in _environments:
        settings = requests.Session().merge_environment_settings(url, {}, None, None, None)
        _environments[origin] = {name: settings[name] for name in ("proxies", "verify", "cert")}
    environment = _environments[origin]

    def read(first: int, stop: int) -> Iterator[bytes]:
        return stream_bytes(session, url, byte_range.obj, chunk_bytes, byte_range=(first, stop), headers=headers,
                            environment=environment)

    return _read_errors(owned_chunks(read, byte_range), f"{byte_range.obj.uri}#{byte_range.obj.generation}")


def _read_errors(chunks: Iterator[bytes], where: str) -> Iterator[bytes]:
    """The chunks; a failed read (refused, reset, timed out) raised as the OutputReadError that the metering
    retries, as `read_ahead` raises it in this process (a caller's own errors are not caught here)."""
    try:
        yield from chunks
    except OutputReadError:
        raise
    except Exception as exc:
        raise read_error(exc, f"reading {where}") from exc


def count_range(task: RangeTask) -> RangeCount:
    """Count one range (in a worker process): read its lines with ranged GETs and add them up."""
    totals = JobTotals(task.rates)
    rows = get_provider(task.provider).row_reader(totals)
    for chunk in range_chunks(task.byte_range, task.url, task.headers, task.chunk_bytes):
        rows.feed(chunk)
    rows.close()
    return RangeCount(totals, rows.rows, rows.malformed_rows)


def authorization(client: storage.Client, url: str) -> dict[str, str]:
    """The headers that authorize a GET of `url` with the client's credentials (refreshed if due)."""
    headers: dict[str, str] = {}
    credentials = client._credentials  # the client's own credentials (anonymous against an emulator)
    credentials.before_request(google.auth.transport.requests.Request(), "GET", url, headers)
    return headers


_PARENT_CHECK_SECONDS = 0.5


def start_worker(parent_pid: int) -> None:
    """Worker initializer: the heap keeps its freed chunk memory (`worker_heap`), and the worker ends with its
    parent (`exit_with_parent`)."""
    keep_freed_memory()
    exit_with_parent(parent_pid)


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker as soon as the process that started it is gone, however it died.

    A pool's idle workers otherwise live on after their parent is killed: each blocks reading its task queue, whose
    write end it holds itself, so it never sees the end of the file.

    Why not Linux's prctl(PR_SET_PDEATHSIG)? It fires when the *thread* that spawned the worker ends, not the
    process; the pool spawns its workers from whichever thread first meters a large job, in `vbp serve` a worker
    thread of anyio that is retired after 10 idle seconds, and healthy workers would be killed with it. So a
    daemon thread watches the parent instead, which works on every platform: it waits on the parent's sentinel
    (a pipe that multiprocessing's spawn leaves open in the parent, readable once the parent has exited) and, as
    a fallback where there is none, polls the parent's pid (a dead parent's child is re-parented).
    """
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="vbp-parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    parent = multiprocessing.parent_process()
    while os.getppid() == parent_pid:
        if parent is not None:
            parent.join(_PARENT_CHECK_SECONDS)  # returns at once when the parent ends
            if not parent.is_alive():
                break
        else:
            time.sleep(_PARENT_CHECK_SECONDS)
    os._exit(1)  # not sys.exit: the pool's own threads would keep the process alive


class RangeMeter:
    """Meters objects in parallel worker processes when their size makes it worth it; else in this process."""

    def __init__(self, *, processes: int | None = None, min_bytes: int = DEFAULT_MIN_RANGE_BYTES) -> None:
        self.processes = processes if processes is not None else (os.cpu_count() or 1)
        self.min_bytes = min_bytes
        self._pool: ProcessPoolExecutor | None = None
        self.handoff = HandoffFolder()  # where workers leave large results for this process (`handoff`)
        weakref.finalize(self, self.handoff.close)

    def start(self) -> None:
        """Spawn the workers now (else on the first large job), so that a metering does not wait for them."""
        if self.processes > 1 and self._pool is None:
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=start_worker, initargs=(os.getpid(),))
            for future in [self._pool.submit(os.getpid) for _ in range(self.processes)]:
                future.result()

    def executor(self) -> ProcessPoolExecutor | None:
        """The started worker pool (for other work by range, such as per-line exports); None with one process."""
        self.start()
        return self._pool

    def close(self) -> None:
        """Stop the workers (waiting for none: a metering still running is given up and retried later)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self.handoff.close()

    def meter(self, client: storage.Client, objects: list[OutputObject], *, rates: Rates | None,
              chunk_bytes: int = DEFAULT_CHUNK_BYTES, provider: str = DEFAULT_PROVIDER) -> JobTotals:
        """The totals of every object, its rows read by `provider`'s reader: large plain objects by range in the
        workers, the rest here."""
        rangeable = [obj for obj in objects if "gzip" not in obj.encoding]
        if self.processes < 2 or sum(obj.size for obj in rangeable) < 2 * self.min_bytes:
            rangeable = []  # starting workers would cost more than they save
        in_process = [obj for obj in objects if obj not in rangeable]
        totals = meter_objects(client, in_process, rates=rates, chunk_bytes=chunk_bytes,
                               reader=get_provider(provider).row_reader)
        if rangeable:
            totals.merge(self._meter_ranges(client, rangeable, rates=rates, chunk_bytes=chunk_bytes,
                                            provider=provider))
        return totals

    def _meter_ranges(self, client: storage.Client, objects: list[OutputObject], *, rates: Rates | None,
                      chunk_bytes: int, provider: str) -> JobTotals:
        self.start()
        assert self._pool is not None
        ranges = plan_ranges(objects, parts=self.processes * _RANGES_PER_PROCESS, min_bytes=self.min_bytes)
        urls = {obj: media_url(client, obj) for obj in objects}
        futures: list[Future[RangeCount]] = []
        try:
            for byte_range in ranges:
                url = urls[byte_range.obj]
                task = RangeTask(byte_range, url, authorization(client, url), rates, chunk_bytes, provider)
                futures.append(self._pool.submit(count_range, task))
            counts = [future.result() for future in futures]
        except BrokenProcessPool as exc:
            self.close()  # a worker died (killed, out of memory): new ones next time
            raise OutputReadError(f"a metering worker process died: {exc}") from exc
        except RuntimeError as exc:  # the pool was shut down under us (the proxy is stopping)
            raise OutputReadError(f"the metering workers stopped: {exc}") from exc
        finally:
            for future in futures:
                future.cancel()
        totals = JobTotals(rates)
        rows_before: dict[OutputObject, int] = {}
        for byte_range, count in zip(ranges, counts, strict=True):
            obj = byte_range.obj
            first_row = rows_before.get(obj, 0) + 1
            rows_before[obj] = first_row - 1 + count.rows
            totals.merge(count.totals)
            problems = describe_malformed(obj.uri, count.malformed_rows, first_row=first_row)
            totals.problems.extend(problems[:MAX_PROBLEMS - len(totals.problems)])
        return totals
