"""A range worker's large result handed to its parent through a file instead of the pool's pipe.

`ProcessPoolExecutor` pickles each result through a pipe of 64 KiB. For a range of the door's output conversion (about
2 MB of converted lines), the parent's result thread was woken dozens of times, grew a buffer by copying it twice and
unpickled it with one more copy. `perf` found most of the conversion parent's CPU there. Measured in alternating
rounds on 1 GB (`bench.openai_door` (b), 2026-12-01): the parent's CPU went from 0.43 to 0.29 s per GB with
the file, and the conversion from 557 to 662 MB/s.

So a worker writes the result's parts one after another into a new file of a folder its parent made (`HandoffFolder`:
on /dev/shm, in memory, where there is one; only the parent's user may enter it), and returns a `HandedOff`: the
file's name and the parts' sizes. The parent reads each part with one read and removes the file (`take`). A result
that no one will take (the reader stopped early) is removed unread (`discard`). Where the file cannot be written
(/dev/shm full, say), the parts travel in the `HandedOff` itself, through the pipe as before.

What is in flight at once is bounded by the caller (`results_in_order`: a few ranges per worker), so the folder holds
a few results' bytes at most.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass

_SHARED_MEMORY = "/dev/shm"  # a tmpfs on Linux: the file's pages never reach a disk


@dataclass(frozen=True)
class HandedOff:
    """A result's parts: in the file `path` one after another (`sizes`), or, when it could not be written, `inline`."""

    path: str | None
    sizes: tuple[int, ...]
    inline: tuple[bytes, ...] = ()


def hand_off(folder: str, parts: Sequence[bytes | Sequence[bytes]]) -> HandedOff:
    """In a worker: write the parts into a new file of `folder` (or keep them inline when that fails). A part may be
    given in pieces (a list of bytes), written one after the other: the parent reads it as one, unjoined here."""
    pieces = [[part] if isinstance(part, bytes) else part for part in parts]
    sizes = tuple(sum(len(piece) for piece in part) for part in pieces)
    try:
        return HandedOff(_written(folder, [piece for part in pieces for piece in part]), sizes)
    except OSError:
        return HandedOff(None, sizes, tuple(b"".join(part) for part in pieces))


def _written(folder: str, pieces: list[bytes]) -> str:
    """A new file of `folder` holding the pieces one after another (none is left when writing fails)."""
    fd, path = tempfile.mkstemp(prefix="result-", dir=folder)
    try:
        try:
            for piece in pieces:
                view = memoryview(piece)
                while view:
                    view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError:
        _remove(path)
        raise
    return path


def take(handed: HandedOff) -> list[bytes]:
    """In the parent: the result's parts; its file is removed."""
    if handed.path is None:
        return list(handed.inline)
    try:
        fd = os.open(handed.path, os.O_RDONLY)
        try:
            return [_read_exactly(fd, size, handed.path) for size in handed.sizes]
        finally:
            os.close(fd)
    finally:
        _remove(handed.path)


def discard(handed: HandedOff) -> None:
    """In the parent: forget a result that will not be taken (its file is removed)."""
    if handed.path is not None:
        _remove(handed.path)


def _read_exactly(fd: int, size: int, path: str) -> bytes:
    data = os.read(fd, size) if size else b""
    if len(data) == size:
        return data  # one read: a file in memory answers all of it at once
    parts = [data]
    got = len(data)
    while got < size:
        more = os.read(fd, size - got)
        if not more:
            raise OSError(f"{path} ended after {got} of {size} bytes")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class HandoffFolder:
    """The parent's folder for its workers' results: made on first use (`path`), removed by `close`."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._lock = threading.Lock()

    def path(self) -> str:
        with self._lock:
            if self._path is None:
                base = _SHARED_MEMORY if os.access(_SHARED_MEMORY, os.W_OK | os.X_OK) else None
                try:
                    self._path = tempfile.mkdtemp(prefix="vbp-results-", dir=base)  # mode 0700
                except OSError:
                    self._path = tempfile.mkdtemp(prefix="vbp-results-")
            return self._path

    def close(self) -> None:
        """Remove the folder and whatever is left in it (a later `path` makes a new one)."""
        with self._lock:
            path, self._path = self._path, None
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
