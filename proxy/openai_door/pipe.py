"""A bounded in-memory pipe of bytes between two threads: one writes (the conversion), one reads (an upload).

Why not `os.pipe`: a reader must tell a finished stream from an abandoned one. The uploading side finalises its
resumable upload at the end of the stream, so a conversion that stops at a bad line must not look like an end, or
the truncated file would be stored. Here `abort(exc)` makes the reader's next `read` raise `PipeAborted`
instead, and the upload is left unfinished (an unfinished resumable upload stores nothing). The other way round,
a reader that gives up (`abandon`, say its upload failed) makes the writer's next `write` raise, so the conversion
stops rather than block on a full pipe.

Memory: at most `max_bytes` buffered (plus the one write that crossed it).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import IO


class PipeAborted(Exception):
    """The other side of the pipe gave up; the stream is not whole."""


class Pipe:
    """Bytes written by one thread, read by another, at most `max_bytes` held between them."""

    def __init__(self, max_bytes: int = 8 << 20) -> None:
        self.max_bytes = max_bytes
        self._chunks: deque[bytes] = deque()
        self._held = 0
        self._closed = False  # the writer is done: the stream is whole
        self._failure: BaseException | None = None
        self._abandoned = False
        self._lock = threading.Condition()

    # -- the writer's side -----------------------------------------------------------------------------------

    def write(self, data: bytes) -> int:
        """Queue `data`, waiting while the pipe is full; PipeAborted when the reader gave up."""
        if not data:
            return 0
        with self._lock:
            while self._held >= self.max_bytes and not self._abandoned:
                self._lock.wait()
            if self._abandoned:
                raise PipeAborted("the reader of the pipe gave up")
            self._chunks.append(bytes(data))
            self._held += len(data)
            self._lock.notify_all()
        return len(data)

    def offer(self, data: bytes) -> bool:
        """Queue `data` if the pipe has room, without waiting (False: it is full, call `write`); PipeAborted when
        the reader gave up."""
        with self._lock:
            if self._abandoned:
                raise PipeAborted("the reader of the pipe gave up")
            if self._held >= self.max_bytes:
                return False
            if data:
                self._chunks.append(bytes(data))
                self._held += len(data)
                self._lock.notify_all()
        return True

    def close(self) -> None:
        """The stream is whole: the reader sees its end once it has read everything."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def abort(self, reason: BaseException) -> None:
        """The stream will never be whole: the reader's next read raises PipeAborted (from `reason`)."""
        with self._lock:
            self._failure = reason
            self._chunks.clear()
            self._held = 0
            self._lock.notify_all()

    # -- the reader's side -----------------------------------------------------------------------------------

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (any when -1), waiting for at least one; b"" only at the end of a whole stream.

        (It never waits for more than is held: with a writer waiting on a full pipe, that would wait forever.)"""
        with self._lock:
            while not self._chunks:
                if self._failure is not None:
                    raise PipeAborted(f"the stream was abandoned: {self._failure}") from self._failure
                if self._closed:
                    return b""
                self._lock.wait()
            if self._failure is not None:
                raise PipeAborted(f"the stream was abandoned: {self._failure}") from self._failure
            parts: list[bytes] = []
            got = 0
            while self._chunks and (size < 0 or got < size):
                chunk = self._chunks[0]
                take = len(chunk) if size < 0 else min(len(chunk), size - got)
                if take == len(chunk):
                    parts.append(self._chunks.popleft())
                else:
                    parts.append(chunk[:take])
                    self._chunks[0] = chunk[take:]
                got += take
            self._held -= got
            self._lock.notify_all()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def abandon(self) -> None:
        """The reader gives up: the writer's next write raises PipeAborted."""
        with self._lock:
            self._abandoned = True
            self._chunks.clear()
            self._held = 0
            self._lock.notify_all()


class TeeReader:
    """Reads `source` and writes every byte read into `pipe` too (the caller's bytes, uploaded as they are read)."""

    def __init__(self, source: IO[bytes], pipe: Pipe) -> None:
        self._source = source
        self._pipe = pipe

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._pipe.write(data)
        return data
