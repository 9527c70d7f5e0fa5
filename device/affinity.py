"""Inference on cores of its own.

When the backend runs fewer threads than the cores this process may use, `inference_cores` pins the inference
threads to the first `threads` cores and every other thread of the process (capture, video decoding, preprocess,
output, HTTP) to the rest: Python work then never preempts inference, and the thread holding the GIL is never
descheduled behind it. When inference uses every core, the other threads are confined to the last one, so at most
one inference thread at a time is interrupted (a runtime's thread pool waits for its slowest thread at every layer).
Measured with `edgedet run` on the bench video (2 cores, int8, frame rate / bare backend loop, medians of 5,
interleaved): TFLite 1 thread 0.85 unpinned -> 0.93 pinned; ONNX Runtime 2 threads 0.70 -> 0.75 confined
(TFLite 2 threads 0.53 -> 0.54, within noise).

Encoders that hold no GIL while they work (the --save video writer, the --stream JPEG encoder) are background
threads (`run_in_background`): idle scheduling priority (Linux SCHED_IDLE: such a thread runs only on a core that
would otherwise idle, and any other thread that wakes up preempts it at once) on every core, pinned or not. They
use the time inference and the output thread leave over, on the inference cores too, without delaying either;
their bounded queues hold the loop back only when the whole machine is busy.

Linux only (sched_setaffinity on thread ids from /proc/self/task); elsewhere, or on a single core, nothing changes.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Set, Tuple

CoreSplit = Tuple[Set[int], Set[int]]  # (cores for inference, cores for everything else)
_background: Set[int] = set()  # kernel ids of the background threads (`run_in_background`)
_all_cores: Optional[Set[int]] = None  # while `inference_cores` pins threads: the cores the process had


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
    global _all_cores
    original = _all_cores = os.sched_getaffinity(0)
    _pin(lambda tid: split[0] if tid in inference_tids else original if tid in _background else split[1])
    try:
        yield split
    finally:
        _all_cores = None
        _pin(lambda tid: original)


def run_in_background() -> None:
    """Make the calling thread a background thread: idle scheduling priority and, while `inference_cores` pins
    the others, every core (see the module's docstring). For threads that spend their time in GIL-free native
    calls. Where the OS has no SCHED_IDLE (or refuses it), the thread stays as it was."""
    tid = threading.get_native_id()
    _background.add(tid)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        return
    if _all_cores is not None:
        try:
            os.sched_setaffinity(0, _all_cores)
        except OSError:
            pass


def leave_background() -> None:
    """The calling background thread is ending: forget its kernel id (ids are reused)."""
    _background.discard(threading.get_native_id())


def _pin(cores_of: Callable[[int], Set[int]]) -> None:
    for tid in native_thread_ids():
        try:
            os.sched_setaffinity(tid, cores_of(tid))
        except OSError:  # the thread ended meanwhile
            pass
