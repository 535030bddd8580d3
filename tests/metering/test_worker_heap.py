"""The range workers' C heap keeps what it frees (`proxy.metering.worker_heap`), so chunks reuse pages."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

from proxy.metering.ranges import RangeMeter

pytestmark = pytest.mark.skipif(sys.platform != "linux" or ctypes.util.find_library("c") is None,
                                reason="glibc's mallopt")

MB = 1024 * 1024


def rss_kept_after_a_free() -> int:
    """The resident bytes that stay after 8 MB of fresh bytes objects (as chunks are) are made, touched and freed."""
    def rss() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))

    before = rss()
    chunks = [bytes(8 * MB) for _ in range(4)]  # calloc'd: each is touched by the copy below
    chunks = [chunk + b"x" for chunk in chunks]
    del chunks
    return rss() - before


PROBE = "from tests.metering.test_worker_heap import rss_kept_after_a_free as probe\n{setup}\nprint(probe())"


def kept(setup: str) -> int:
    reply = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True,
                           check=True)
    return int(reply.stdout)


def test_a_heap_with_the_setting_keeps_what_it_frees_and_one_without_gives_it_back() -> None:
    assert kept("") < 8 * MB  # glibc's defaults: blocks this large are mmapped and unmapped when freed
    assert kept("from proxy.metering.worker_heap import keep_freed_memory\nassert keep_freed_memory()") >= 30 * MB


@pytest.mark.slow
def test_the_range_workers_start_with_the_setting() -> None:
    meter = RangeMeter(processes=2)
    try:
        pool = meter.executor()
        assert pool is not None
        assert pool.submit(rss_kept_after_a_free).result() >= 30 * MB
    finally:
        meter.close()
