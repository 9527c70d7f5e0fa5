"""The watchdog of `edgedet run`, in the spirit of Frigate's: a live source with no frame for `--stall-timeout`
seconds is reopened, an inference call stuck longer than `--inference-timeout` seconds is reported and abandoned
(the runner then recreates the backend), and stalls, reconnects, hangs and failed frames are counted per hour for
the last 24 hours.

It costs nothing per frame: the inference thread stamps the start and the end of each backend call
(`InferenceWatch.started` / `finished`: a clock read and a lock), and the runner's main thread, idle while
inference runs in a thread of its own, calls `Watchdog.check()` a few times a second. A native call cannot be
interrupted from Python, so a hung call is abandoned instead: its thread (a daemon) is left where it is, and
`finished` tells it, should the call ever return, to drop the result and end.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from .capture import Frame
from .errors import EdgedetError

log = logging.getLogger("edgedet.watchdog")
MAX_CONSECUTIVE_HANGS = 3  # hangs with no good call in between: the runtime itself is wedged, the run gives up
# with no frame in between, this many stalls (each leaves a thread stuck in a read or an open), or failed reopens
# after a stall (the stuck read may hold the device; with the backoff about a minute): the device is wedged, the
# run gives up so that the service manager restarts the process (Restart=on-failure)
MAX_UNRECOVERED_STALLS = 3
MAX_FAILED_REOPENS_AFTER_STALL = 10
MAX_ABANDONED_CALLS = 3  # hung calls whose threads (each with its backend) may still be alive; beyond, the run gives up
# the running totals counted per hour (Runner.status() and /healthz)
HOURLY_COUNTERS = ("stalls", "reconnects", "inference_hangs", "failed_frames", "dropped_events")


@dataclass(frozen=True)
class Hang:
    """An inference call the watchdog gave up on."""

    seconds: float  # how long it had been running
    frame: Optional[Frame]  # the frame it was inferring
    consecutive: int  # hangs in a row, this one included (a good call in between resets it)


class InferenceWatch:
    """The backend call in flight: stamped by the inference thread, read by the watchdog's thread."""

    def __init__(self):
        self.generation = 0  # bumped when a hung call is abandoned: inference threads of older generations end
        self.consecutive_hangs = 0  # abandoned calls since the last call that returned in time
        self._lock = threading.Lock()
        self._started: Optional[float] = None  # perf_counter when the call in flight began; None between calls
        self._frame: Optional[Frame] = None  # the frame of that call

    def started(self, frame: Frame) -> None:
        """The inference thread is about to call the backend on `frame`."""
        with self._lock:
            self._frame = frame
            self._started = time.perf_counter()

    def finished(self, generation: int) -> bool:
        """The inference thread of `generation` is back from the backend: False when its call was abandoned
        meanwhile (the thread must drop the result and end)."""
        with self._lock:
            current = generation == self.generation
            if current:
                self._started = None
                self.consecutive_hangs = 0
            return current

    def abandon_if_hung(self, timeout: float, now: float) -> Optional[Hang]:
        """A `Hang` if the call in flight has run longer than `timeout` seconds (it is abandoned: a new
        generation begins), else None."""
        with self._lock:
            if self._started is None or now - self._started <= timeout:
                return None
            return self._abandon(now)

    def abandon(self) -> None:
        """Abandon whatever the inference thread is doing (the run is ending without waiting for it)."""
        with self._lock:
            self.generation += 1

    def _abandon(self, now: float) -> Hang:
        self.generation += 1
        self.consecutive_hangs += 1
        hang = Hang(now - self._started, self._frame, self.consecutive_hangs)
        self._started = None
        return hang


class HourlyCounters:
    """Counts per clock hour (UTC) over the last `hours` hours, from running totals sampled now and then: what a
    total grew by since the previous sample is counted in the hour of this sample."""

    def __init__(self, names: Sequence[str], hours: int = 24, clock: Callable[[], float] = time.time):
        self.names = tuple(names)  # the counters
        self._clock = clock  # seconds since the epoch
        self._hours: deque = deque(maxlen=hours)  # (hour since the epoch, {name: count}), oldest first
        self._last = dict.fromkeys(self.names, 0)  # the totals at the previous sample
        self._lock = threading.Lock()

    def update(self, totals: Dict[str, int]) -> None:
        """Sample the running totals (each only grows) of the counters."""
        hour = int(self._clock() // 3600)
        with self._lock:
            counts = self._bucket(hour)
            for name in self.names:
                total = int(totals.get(name, 0))
                counts[name] += max(0, total - self._last[name])
                # two threads sample (the watchdog, the status page): an older sample landing last must not
                # lower the baseline, or the next sample would count the difference again
                self._last[name] = max(self._last[name], total)

    def table(self) -> List[dict]:
        """[{"hour": "2025-05-01T13:00Z", "stalls": 0, ...}, ...]: every hour since the first sample, at most the
        last `hours`, oldest first."""
        with self._lock:
            return [{"hour": time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(hour * 3600)), **counts}
                    for hour, counts in self._hours]

    def _bucket(self, hour: int) -> Dict[str, int]:
        """The counts of `hour`, after a bucket (of zeros) for every hour since the last one."""
        first = hour if not self._hours else max(self._hours[-1][0] + 1, hour - self._hours.maxlen + 1)
        for missing in range(first, hour + 1):
            self._hours.append((missing, dict.fromkeys(self.names, 0)))
        return self._hours[-1][1]


class Watchdog:
    """Checks, from the thread that calls `check()`, that the live source delivers frames and that no inference
    call hangs, and keeps the hourly counters.

    source: the run's `Source` (only a live one, with `stalled_for` and `recover_stall`, is watched).
    totals: the run's running totals by HOURLY_COUNTERS name (its `inference_hangs` is this watchdog's `hangs`).
    """

    def __init__(self, stall_timeout: float, inference_timeout: float, source, totals: Callable[[], Dict[str, int]],
                 clock: Callable[[], float] = time.perf_counter):
        self.stall_timeout = stall_timeout  # seconds without a frame before a live source is reopened
        self.inference_timeout = inference_timeout  # seconds an inference call may take before it is abandoned
        self.interval = min(1.0, stall_timeout / 4, inference_timeout / 4)  # seconds between checks
        self.inference = InferenceWatch()  # the call in flight
        self.hangs = 0  # inference calls abandoned
        self.hourly = HourlyCounters(HOURLY_COUNTERS)  # per hour, last 24 hours
        self._source = source
        self._totals = totals
        self._clock = clock
        self._next_check = 0.0

    def check(self) -> Optional[Hang]:
        """At most once per `interval`: reopen a stalled live source, sample the hourly counters, and return the
        `Hang` when the inference call in flight ran past the timeout (the caller recreates the backend). An
        EdgedetError once the source went MAX_UNRECOVERED_STALLS stalls or MAX_FAILED_REOPENS_AFTER_STALL failed
        reopens after a stall without a frame."""
        now = self._clock()
        if now < self._next_check:
            return None
        self._next_check = now + self.interval
        hang = self.inference.abandon_if_hung(self.inference_timeout, now)
        if hang is not None:
            self.hangs += 1
            where = f" on frame {hang.frame.index} of {hang.frame.source}" if hang.frame is not None else ""
            log.error("inference stuck for %.1f s%s (--inference-timeout %g s): abandoning the call and recreating "
                      "the backend (hang #%d)", hang.seconds, where, self.inference_timeout, self.hangs)
        self._check_source()
        self.hourly.update(self._totals())
        return hang

    def _check_source(self) -> None:
        stalled_for = getattr(self._source, "stalled_for", None)
        if stalled_for is None:
            return
        stalls, failed = (getattr(self._source, name, 0) for name in ("unrecovered_stalls",
                                                                      "failed_reopens_after_stall"))
        if stalls >= MAX_UNRECOVERED_STALLS or failed >= MAX_FAILED_REOPENS_AFTER_STALL:
            raise EdgedetError(f"source {self._source.name}: no frame since a stall (--stall-timeout "
                               f"{self.stall_timeout:g} s) through {stalls} stall(s) and {failed} failed reopen(s); "
                               f"giving up")
        seconds = stalled_for()
        if seconds > self.stall_timeout:
            log.warning("source %s: no frame for %.1f s (--stall-timeout %g s): reopening it", self._source.name,
                        seconds, self.stall_timeout)
            self._source.recover_stall()
