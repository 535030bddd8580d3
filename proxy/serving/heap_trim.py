"""Hand the C heap's free pages back to the system now and then, so a long-running `vbp serve` does not creep.

Measured with `make soak` (2026-11-30, 150-200 requests/s on SQLite): the proxy's RSS rose 2-3.5 MB a minute for
as long as the load ran, while the Python objects it held stayed flat (tracemalloc: the memory allocated after the
first minute and still alive was 2.6 MB, then 1.9 MB two minutes later) and so did SQLite's (`sqlite3_memory_used`:
5-6 MB throughout). The growth was memory already freed: glibc keeps a heap per thread that allocates
(the event loop, the request log writer, the worker threads running database calls), returns a heap's pages to the
system only from its top, and the request bodies, replies and rows freed in the middle of those heaps stayed
resident. `malloc_trim(0)` gives every free page of every heap back (`madvise`); called every 20 s in the soak,
RSS went flat from the first call.

glibc only: elsewhere (musl, macOS) there is no `malloc_trim` and nothing is done. No library does this one call;
the standard library's ctypes reaches it, and ctypes releases the GIL while it runs, so the event loop goes on.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable

from proxy.metering.worker_heap import libc_function

log = logging.getLogger(__name__)

# A trim walks every heap (5 ms for 640 MB of heaps trimmed before, 91 ms the first time); once a minute bounds
# the creep.
INTERVAL_SECONDS = 60.0


def malloc_trim() -> Callable[[], int] | None:
    """glibc's `malloc_trim(0)`, or None where the C library has none."""
    function = libc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)
    if function is None:
        return None
    return lambda: int(function(0))


class HeapTrimmer:
    """A daemon thread that trims the C heap every `interval` seconds until `stop`."""

    def __init__(self, interval: float = INTERVAL_SECONDS) -> None:
        self.interval = interval
        self.trims = 0
        self._trim = malloc_trim()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vbp-heap-trim", daemon=True)

    def start(self) -> HeapTrimmer:
        if self._trim is None:
            log.debug("no malloc_trim in this C library: the heap is not trimmed")
        else:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        assert self._trim is not None
        while not self._stopped.wait(self.interval):
            started = time.perf_counter()
            released = self._trim()
            self.trims += 1
            log.debug("heap trimmed in %.1f ms (pages released: %s)", (time.perf_counter() - started) * 1000,
                      "yes" if released else "no")
