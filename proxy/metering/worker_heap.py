"""A range worker's C heap keeps the memory it frees, for the next chunk, instead of handing it back to the system.

A worker reads 2 MiB chunks and builds results of a few MB, one after the other, all freed
soon after. glibc serves the larger blocks with mmaps of their own, returns the free top of a heap beyond
M_TRIM_THRESHOLD, and adapts both limits only now and then; so the worker kept giving pages back and faulting them in
again, zeroed. Measured with `perf` on the output conversion (`bench.openai_door` (b), 1 GB, two workers,
2026-12-01): page faults and page clearing were about a sixth of a worker's CPU. With the limits below, the two
workers' CPU for that gigabyte went from 2.3-2.6 s to 1.9-2.0 s.

What a heap keeps is the memory it held at its busiest, which the ranges' sizes (and the export's read-ahead)
bound; the peak RSS growth of the benchmarks (workers included) stayed well inside their 100 MB: 57-60 MB for the
conversion (70-78 before), 51-68 MB for the per-line export (43-52 before).

glibc only, through `mallopt` (no library wraps it; ctypes reaches it): elsewhere (musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024  # blocks up to this size come from the heap, so their pages are reused
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024  # a heap's free top is kept up to this size


def libc_function(name: str, argtypes: list[Any], restype: Any) -> Any | None:
    """The C library's function `name` (through ctypes, typed), or None where the C library has none."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        function = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = restype
    return function


def keep_freed_memory() -> bool:
    """Set this process's heap limits as above; False where the C library has no `mallopt` (nothing changed)."""
    mallopt = libc_function("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)
    if mallopt is None:
        return False
    # Setting either limit turns off glibc's own adjustment of both, so both are set.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
