"""`vbp serve` trims the C heap once a minute: memory freed in the middle of a thread's heap is given back.

The soak found the proxy's RSS creeping while its live Python objects and SQLite's memory stayed flat: freed
memory that glibc kept resident (`proxy/serving/heap_trim.py`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from proxy.serving.heap_trim import HeapTrimmer, malloc_trim

pytestmark = pytest.mark.skipif(malloc_trim() is None, reason="no glibc malloc_trim in this C library")


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024


def test_a_trim_gives_back_what_threads_freed_in_the_middle_of_their_heaps() -> None:
    kept: list[bytes] = []

    def churn() -> None:  # 2 KB blocks (above pymalloc's 512 B: glibc's), one in 50 kept: no heap top left free
        blocks = [bytes(2000) for _ in range(25_000)]
        kept.extend(blocks[::50])

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    before = _rss_mb()
    trim = malloc_trim()
    assert trim is not None
    trim()
    after = _rss_mb()
    assert len(kept) == 2_000
    assert before - after > 100, (before, after)  # ~200 MB were freed; the kept 4 MB pin every page otherwise


def test_the_trimmer_trims_every_interval_until_stopped() -> None:
    trimmer = HeapTrimmer(interval=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while trimmer.trims < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert trimmer.trims >= 3
    finally:
        trimmer.stop()
    stopped_at = trimmer.trims
    time.sleep(0.2)
    assert trimmer.trims == stopped_at
