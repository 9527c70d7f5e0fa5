"""Frame-sized buffers reused instead of faulted in afresh: glibc's malloc told to keep freed memory.

Every frame allocates and frees the same few large arrays (the letterboxed and converted input, instance masks,
the annotated canvas). glibc serves a request above its mmap threshold (128 KiB at start, raised only when such
a block is freed, and per arena) with a fresh mapping, and gives the top of the heap back to the kernel once more
than the trim threshold is free: a frame's buffers then arrive as untouched pages, and the first write to each
4 KiB page is a page fault. Measured with `edgedet run` on the bench video (benchmarks/bench_run.py's, 1000
frames 640x480, int8 TFLite 320x320, one inference thread, AMD EPYC 2 cores): with --json --save, 68,000 minor
page faults -> 20,000 and a peak RSS of 119 MB either way; with --json --save --stream and a viewer 250 -> 263
FPS, --json alone 591 / 590 FPS (medians of 3).

`keep_freed_memory` raises both thresholds (mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD) for the rest of the
process, so that freed blocks are reused: resident memory stays at the loop's high-water mark instead of going
up and down every frame. Only where the C library is glibc (Linux); elsewhere it does nothing.
"""
from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger("edgedet.allocator")
M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's own upper bound for its dynamic threshold (64-bit)
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES  # as glibc keeps it when it raises the mmap threshold itself
_kept = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are (now or before) raised,
    False where the C library has no mallopt."""
    global _kept
    if _kept:
        return True
    mallopt = _mallopt()
    if mallopt is None:
        return False
    _kept = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                    TRIM_THRESHOLD_BYTES))
    if not _kept:
        log.debug("mallopt refused the thresholds; frame buffers are allocated as before")
    return _kept


def _mallopt():
    """glibc's mallopt(int, int) -> int from the C library this process runs on, or None (another C library)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        process = ctypes.CDLL(None)  # the symbols already loaded: the interpreter's C library among them
        if not hasattr(process, "gnu_get_libc_version"):  # glibc only: musl's mallopt does nothing
            return None
        mallopt = process.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
