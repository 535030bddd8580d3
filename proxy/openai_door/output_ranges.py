"""A batch's output or error file on every core: chat rows answered by byte range in worker processes.

`converted_blocks(client, objects, lines, ranges=)` yields the same bytes as feeding every object's chunks to
`lines` (an `OutputLines`) and closing it, in the same order. For a chat file whose objects are large enough, the
objects are cut into byte ranges (`proxy.metering.ranges`: a range owns the lines that start in it) and each range's
rows are answered in a worker process (`OutputLines.pack_chat_answers`: the compiled fast path, and `chat_answer`
for the rows it leaves; it needs only the line index); this process then takes the answers range by range, in the
rows' order (`OutputLines.decide_all`), so which row answers a line, the
counters, and the error file's unanswered lines are exactly those of the one-process conversion.

Embedding files stay in this process (an embedding line may wait for inputs spread over several ranges).
Memory: at most `_AHEAD_PER_PROCESS` ranges per worker are in flight, each of at most `_MAX_RANGE_BYTES` of rows,
so what is held is a few ranges' answers whatever the output's size. A worker hands its answers over in a file of
the range meter's folder, not through the pool's pipe (`proxy.metering.handoff`: the pipe cost this process most of
its CPU).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Literal, NamedTuple

from google.cloud import storage

from proxy.metering.handoff import HandedOff, discard, hand_off, take
from proxy.metering.objects import DEFAULT_CHUNK_BYTES, iter_chunks
from proxy.metering.ranges import (
    ByteRange,
    RangeMeter,
    authorization,
    planned_ranges,
    range_chunks,
    results_in_order,
)
from proxy.openai_door.line_index import LineIndex
from proxy.openai_door.output_conversion import ChatAnswers, OutputLines
from proxy.providers.base import OutputObject

# A range's answers (about a quarter of its bytes) are held until their turn. Each range costs a GET (about a
# millisecond of CPU in the worker and in the store) and a task: in alternating rounds on 1 GB (2026-12-01), ranges of
# 16 MiB converted at 934 MB/s against 873 MB/s for 8 MiB (workers 1.33 against 1.44 s of CPU), with a peak RSS
# growth of 66 MB; 32 MiB gained no more within the noise.
_MAX_RANGE_BYTES = 16 * 1024 * 1024
_AHEAD_PER_PROCESS = 2  # ranges in flight per worker process


@dataclass(frozen=True)
class AnswerTask:
    """What a worker needs to answer one byte range's chat rows: plain, picklable data."""

    byte_range: ByteRange
    url: str
    headers: dict[str, str]
    index_path: str  # a local file holding LineIndex.to_bytes(), read once per worker (tasks stay small)
    model: str
    batch_id: str
    which: Literal["output", "error"]
    handoff_folder: str  # where the worker leaves its answers (`RangeAnswers`' parts) for the parent
    chunk_bytes: int = DEFAULT_CHUNK_BYTES


_index_cache: tuple[tuple[str, int, int, int], LineIndex] | None = None  # (path, inode, mtime, size), the index


class RangeAnswers(NamedTuple):
    """A range's chat answers, packed (a few large objects to pickle rather than one tuple per row)."""

    lines: bytes  # array('q'): each row's line (0: none found)
    flags: bytes  # each row's MALFORMED_* flags
    ends: bytes  # array('q'): where each row's answer ends in `answers`
    answers: bytes  # the rows' answers, one after the other


def range_answers(task: AnswerTask) -> HandedOff:
    """In a worker process: the answers of the chat rows that start in the range, in their order (the parts of a
    `RangeAnswers`, handed off)."""
    global _index_cache
    with open(task.index_path, "rb") as file:  # a worker answers many ranges of one conversion in a row
        status = os.fstat(file.fileno())
        key = (task.index_path, status.st_ino, status.st_mtime_ns, status.st_size)
        if _index_cache is None or _index_cache[0] != key:
            _index_cache = (key, LineIndex.from_bytes(file.read()))
    converter = OutputLines(_index_cache[1], model=task.model, batch_id=task.batch_id, which=task.which,
                            unanswered="batch_failed")
    packed = ChatAnswers()
    # A plain read, without a read-ahead thread: the socket's receive buffer already lets the store send on while
    # the rows are answered, and the other workers keep the cores busy. The thread cost CPU instead (its hand-offs
    # and GIL switches): measured in alternating rounds on 1 GB (2026-12-01), the two workers took 1.50 s of CPU
    # without it and 1.64 s with it, and the conversion ran at 828 against 763 MB/s.
    for chunk in range_chunks(task.byte_range, task.url, task.headers, task.chunk_bytes):
        converter.pack_chat_answers(chunk, packed)
    converter.pack_chat_answers(b"", packed, last=True)
    return hand_off(task.handoff_folder, packed.pieces())


def converted_blocks(client: storage.Client, objects: list[OutputObject], lines: OutputLines, *,
                     ranges: RangeMeter | None = None) -> Iterator[bytes]:
    """The converted file's bytes, by byte range in the workers of `ranges` when it pays, else in this process."""
    pool = None
    if ranges is not None and not lines.embeddings and all("gzip" not in obj.encoding for obj in objects) \
            and sum(obj.size for obj in objects) >= 2 * ranges.min_bytes:
        pool = ranges.executor()
    if pool is None:
        for obj in objects:
            for chunk in iter_chunks(client, obj):
                converted = lines.feed(chunk)
                if converted:
                    yield converted
            last = lines.end_object()
            if last:
                yield last
        rest = lines.close()
        if rest:
            yield rest
        return
    assert ranges is not None
    planned, urls = planned_ranges(client, objects, ranges, max_range_bytes=_MAX_RANGE_BYTES)
    # The workers are this process's children, on this machine: they read the index from a file of this conversion's
    # own (so that each task stays small) and keep it while the file is the same one.
    with tempfile.NamedTemporaryFile(prefix="vbp-line-index-", suffix=".msgpack") as index_file:
        index_file.write(lines.index.to_bytes())
        index_file.flush()
        yield from _answered_ranges(pool, ranges, planned, urls, client, lines, index_file.name)
    rest = lines.close()
    if rest:
        yield rest


def _answered_ranges(pool: ProcessPoolExecutor, ranges: RangeMeter, planned: list[ByteRange],
                     urls: dict[OutputObject, str], client: storage.Client, lines: OutputLines,
                     index_path: str) -> Iterator[bytes]:
    """The ranges' answers, decided here in the rows' order; at most `_AHEAD_PER_PROCESS` ranges per process ahead."""

    folder = ranges.handoff.path()

    def submit(byte_range: ByteRange) -> Future[HandedOff]:
        url = urls[byte_range.obj]
        task = AnswerTask(byte_range, url, authorization(client, url), index_path, lines.model, lines.batch_id,
                          lines.which, folder)
        return pool.submit(range_answers, task)

    for handed in results_in_order(ranges, planned, submit, ahead_per_process=_AHEAD_PER_PROCESS,
                                   what="an output conversion", discard=discard):
        answers = RangeAnswers(*take(handed))
        out = lines.decide_all(*answers)
        del answers
        if out:
            yield out
