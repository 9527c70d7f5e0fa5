"""Inference on cores of its own.

When the backend runs fewer threads than the cores this process may use, `inference_cores` pins the inference
threads to the first `threads` cores and every other thread of the process (capture, video decoding, preprocess,
output, HTTP) to the rest: Python work then never preempts inference, and the thread holding the GIL is never
descheduled behind it. When inference uses every core, the other threads are confined to the last one, so at most
one inference thread at a time is interrupted (a runtime's thread pool waits for its slowest thread at every layer).
Measured with `edgedet run` on the bench video (2 cores, int8, frame rate / bare backend loop, medians of 5,
interleaved): TFLite 1 thread 0.85 unpinned -> 0.93 pinned; ONNX Runtime 2 threads 0.70 -> 0.75 confined
(TFLite 2 threads 0.53 -> 0.54, within noise).

Linux only (sched_setaffinity on thread ids from /proc/self/task); elsewhere, or on a single core, nothing changes.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Set, Tuple

CoreSplit = Tuple[Set[int], Set[int]]  # (cores for inference, cores for everything else)


def native_thread_ids() -> Set[int]:
    """Kernel ids of this process's threads (empty where /proc is missing)."""
    try:
        return {int(tid) for tid in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def split_cores(threads: Optional[int]) -> Optional[CoreSplit]:
    """(inference cores, other cores) of this process's cores: the first `threads` cores and the rest, or, when
    inference uses them all, all of them and the last one. None on a single core, for an unknown thread count or
    without an affinity API."""
    if not threads or not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    if threads >= len(cores):
        return set(cores), {cores[-1]}
    return set(cores[:threads]), set(cores[threads:])


@contextmanager
def inference_cores(threads: Optional[int], inference_tids: Set[int]) -> Iterator[Optional[CoreSplit]]:
    """Within the block, threads `inference_tids` (kernel ids) run on the inference cores and every other thread of
    the process on the other cores (`split_cores`; threads started meanwhile inherit their creator's cores);
    afterwards all of them may run on the cores the calling thread had. Yields the split, or None when nothing
    was pinned."""
    split = split_cores(threads)
    if split is None:
        yield None
        return
    original = os.sched_getaffinity(0)
    _pin(lambda tid: split[0] if tid in inference_tids else split[1])
    try:
        yield split
    finally:
        _pin(lambda tid: original)


def _pin(cores_of: Callable[[int], Set[int]]) -> None:
    for tid in native_thread_ids():
        try:
            os.sched_setaffinity(tid, cores_of(tid))
        except OSError:  # the thread ended meanwhile
            pass
