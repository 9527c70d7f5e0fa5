"""Per-stage latency: `with timer.stage("inference"): ...`, rolling p50/p90/p99, the console line and table.

A `StageTimer` keeps, per stage name, a rolling window of the most recent durations (for the live
p50/p90/p99 line and the status page) and a bounded reservoir of the whole run (for the summary
table at exit). Each thread has its own "current frame" record, so the pipelined runtime can time
inference in one thread and postprocessing in another, then merge the two records of one frame.
All durations are milliseconds. The per-frame records go to disk through `device.sinks.LatencyLogSink`.

The rolling line and the summary table name every stage that ran. "encode" (the --stream JPEG encode) runs in
the stream's encoder thread, only for frames a viewer takes, and "save" (the --save video encode) in the video
writer's: each has its own count, and neither is in a frame's record or its end_to_end.
"""
from __future__ import annotations

import random
import threading
import time
from array import array
from collections import deque
from contextlib import contextmanager, nullcontext
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

# stages in the order tables print them; other names follow alphabetically
STAGE_ORDER = ("capture", "preprocess", "inference", "decode", "roi_align", "stage2", "nms", "masks", "semantic",
               "draw", "encode", "save", "output", "end_to_end", "frame_age")
PERCENTILES = (50, 90, 99)


class StageStats:
    """Durations of one stage: a rolling window plus a reservoir sample of the whole run."""

    def __init__(self, window: int, reservoir: int, rng: random.Random):
        self.recent: deque = deque(maxlen=window)  # the last `window` durations, ms
        self.sample = array("d")  # uniform sample (size <= reservoir) of every duration seen, ms
        self.reservoir = reservoir  # capacity of `sample`
        self.count = 0  # durations seen
        self.total = 0.0  # their sum, ms
        self._rng = rng

    def add(self, ms: float) -> None:
        self.recent.append(ms)
        self.count += 1
        self.total += ms
        if len(self.sample) < self.reservoir:
            self.sample.append(ms)
        else:
            slot = self._rng.randrange(self.count)
            if slot < self.reservoir:
                self.sample[slot] = ms


def percentiles(values, qs=PERCENTILES) -> Dict[str, float]:
    """{"p50": ..., "p90": ..., "p99": ...} of `values` (ms); NaN when empty."""
    if len(values) == 0:
        return {f"p{q}": float("nan") for q in qs}
    result = np.percentile(np.asarray(values, dtype=np.float64), qs)
    return {f"p{q}": float(v) for q, v in zip(qs, result)}


def timed(timer: Optional["StageTimer"], name: str):
    """`timer.stage(name)`, or a no-op without a timer."""
    return nullcontext() if timer is None else timer.stage(name)


class StageTimer:
    """Times named stages; thread-safe.

    - `with timer.stage(name):` adds the block's wall time to the calling thread's current frame record.
    - `timer.add(name, ms)` records a duration measured elsewhere (capture wait, frame age).
    - `timer.take_record()` returns the calling thread's frame record {stage: ms} and starts a new one.
    - `timer.rolling()` / `timer.summary()` give per-stage {p50, p90, p99, mean, count} over the
      recent window / the whole run; `timer.recent(name)` the same of one stage over the recent window.
    """

    def __init__(self, window: int = 300, reservoir: int = 20000, seed: int = 0):
        self.window = window  # durations per stage in the rolling statistics
        self.reservoir = reservoir  # durations per stage kept for the whole-run summary
        self._stats: Dict[str, StageStats] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._rng = random.Random(seed)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block as stage `name` (accumulates if the stage repeats within a frame)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        """Record `ms` for stage `name` in the rolling statistics and the current frame record."""
        record = self._record()
        record[name] = record.get(name, 0.0) + float(ms)
        with self._lock:
            stats = self._stats.get(name)
            if stats is None:
                stats = self._stats[name] = StageStats(self.window, self.reservoir, self._rng)
            stats.add(float(ms))

    def take_record(self) -> Dict[str, float]:
        """This thread's {stage: ms} since the last call; starts a fresh record."""
        record = self._record()
        self._local.record = {}
        return record

    def stages(self) -> List[str]:
        """Stage names seen so far, in display order."""
        with self._lock:
            names = list(self._stats)
        known = [s for s in STAGE_ORDER if s in names]
        return known + sorted(set(names) - set(known))

    def rolling(self) -> Dict[str, Dict[str, float]]:
        """Per stage: p50/p90/p99 and mean over the recent window, and the window's count."""
        with self._lock:
            snapshot = {name: list(stats.recent) for name, stats in self._stats.items()}
        return {name: _describe(snapshot[name], len(snapshot[name])) for name in self.stages()}

    def recent(self, name: str) -> Dict[str, float]:
        """One stage's p50/p90/p99, mean and count over the recent window (NaN and 0 when not seen yet)."""
        with self._lock:
            stats = self._stats.get(name)
            values = list(stats.recent) if stats is not None else []
        return _describe(values, len(values))

    def summary(self) -> Dict[str, Dict[str, float]]:
        """Per stage over the whole run: p50/p90/p99 (from the reservoir), exact mean and count."""
        with self._lock:
            snapshot = {n: (list(s.sample), s.count, s.total) for n, s in self._stats.items()}
        result = {}
        for name in self.stages():
            sample, count, total = snapshot[name]
            stats = _describe(sample, count)
            stats["mean"] = total / count if count else float("nan")
            result[name] = stats
        return result

    def _record(self) -> Dict[str, float]:
        record = getattr(self._local, "record", None)
        if record is None:
            record = self._local.record = {}
        return record


def _describe(values: list, count: int) -> Dict[str, float]:
    stats = percentiles(values)
    stats["mean"] = float(np.mean(values)) if values else float("nan")
    stats["count"] = count
    return stats


def format_rolling_line(stats: Dict[str, Dict[str, float]], fps: float,
                        stages: Optional[Sequence[str]] = None) -> str:
    """One line for the console: FPS and p50/p90/p99 (ms) of `stages` (None: every stage in `stats`, in its
    order: `StageTimer.rolling` lists every stage that ran)."""
    parts = [f"{fps:5.1f} FPS"]
    for name in (stats if stages is None else stages):
        if name in stats:
            s = stats[name]
            parts.append(f"{name} {s['p50']:.1f}/{s['p90']:.1f}/{s['p99']:.1f}")
    return " | ".join(parts) + "  (ms p50/p90/p99)"


def format_summary_table(stats: Dict[str, Dict[str, float]]) -> str:
    """A fixed-width table: stage, count, mean, p50, p90, p99 (ms)."""
    header = f"{'stage':<12} {'count':>7} {'mean':>8} {'p50':>8} {'p90':>8} {'p99':>8}"
    rows = [header, "-" * len(header)]
    for name, s in stats.items():
        rows.append(f"{name:<12} {int(s['count']):>7d} {s['mean']:>8.2f} {s['p50']:>8.2f} "
                    f"{s['p90']:>8.2f} {s['p99']:>8.2f}")
    return "\n".join(rows)
