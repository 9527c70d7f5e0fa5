"""Frame sources: camera indices, picamera2, video files, RTSP/HTTP URLs, images/folders/globs, `synthetic`,
`synthetic:FPS`.

`open_source(text)` returns a `Source`; `source.read(timeout)` gives the next `Frame` (BGR uint8 plus its
capture timestamp) or None. Two behaviours:

- files (video, images, folders, globs) and `synthetic` are read in order without dropping; a video is
  decoded ahead in a thread through a small bounded queue so decoding overlaps inference;
- live sources (cameras, URLs, picam, and `synthetic:FPS`, the animation as a camera at FPS frames per second)
  are read in their own thread that keeps only the newest frame, so
  there is never a backlog from OpenCV's buffer. When a live source fails or stops delivering frames it
  is reopened with capped exponential backoff, each attempt logged, and the loop goes on. A device whose read
  never returns is caught by the run's watchdog (`recover_stall`, device.watchdog).

A source that cannot be opened at start raises `EdgedetError` within `open_timeout` seconds, naming it
(and for a camera index, listing the /dev/video* devices that exist).
"""
from __future__ import annotations

import glob as globlib
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import EdgedetError
from .image_files import IMAGE_SUFFIXES
from .stuck_threads import leave_behind

log = logging.getLogger("edgedet.capture")

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
# seconds a live source's opener may still take after the open timeout: FFmpeg's, given the same timeout, returns
# just after ours, and a process that waits for it exits cleanly (device.stuck_threads)
OPENER_GRACE_S = 2.0


class OpenStopped(EdgedetError):
    """The run was stopped (Ctrl-C, SIGTERM, `stop`) while a live source was still opening."""


@dataclass(frozen=True)
class Frame:
    """One captured frame."""

    image: np.ndarray  # uint8 BGR (h, w, 3)
    index: int  # 0-based position in the source (for live sources: frames delivered by the source so far)
    timestamp: float  # wall-clock capture time, seconds since the epoch
    monotonic: float  # time.perf_counter() at capture, for the frame's age at output
    source: str  # the file the frame came from (image inputs) or the source's name


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a live source is reopened after it fails."""

    initial_delay: float = 0.5  # seconds before the first reopen attempt
    max_delay: float = 8.0  # cap of the exponential backoff, seconds


class Source:
    """Base of all sources: `read(timeout) -> Frame | None`, `finished`, `close()`, `name`, `live`."""

    name: str = ""
    live: bool = False
    unreadable: int = 0  # frames (files, video frames) that could not be decoded: logged and skipped

    def read(self, timeout: float = 1.0) -> Optional[Frame]:
        """The next frame, or None if none arrived within `timeout` (live) or the source is exhausted."""
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        """True once a finite source has delivered its last frame."""
        return False

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------------- the factory


def open_source(text, *, imgsz: Optional[Tuple[int, int]] = None, open_timeout: float = 5.0,
                policy: ReconnectPolicy = ReconnectPolicy(), size_wh: Tuple[int, int] = (640, 480),
                stop: Optional[threading.Event] = None) -> Source:
    """A `Source` for a camera index ("0"), "picam", "synthetic" (in order, as fast as it is read),
    "synthetic:FPS" (a camera-like live source), a URL, a video, an image, a folder or a glob.

    imgsz: model input (h, w), used for the picamera2 low-resolution stream.
    size_wh: frame size of the synthetic source.
    stop: set while a live source is opening -> `OpenStopped` within 0.1 s instead of waiting out open_timeout.
    """
    text = str(text).strip()
    if not text:
        raise EdgedetError("empty source: give --camera N or --source PATH|GLOB|DIR|URL|synthetic")
    live = dict(policy=policy, open_timeout=open_timeout, stop=stop)
    if text.isdigit():
        return LiveSource(f"camera {text}", _camera_opener(int(text)), on_fail=lambda: _camera_failure(int(text)),
                          **live)
    if text.startswith("/dev/video"):  # a V4L2 device node is a camera, not a file to read in order
        return LiveSource(text, _camera_opener(text), on_fail=lambda: _camera_failure(text), **live)
    if text == "picam":
        return LiveSource("picam", _picam_opener(imgsz or (size_wh[1], size_wh[0])), **live)
    if text == "synthetic":
        return SyntheticSource(size_wh)
    if text.startswith("synthetic:"):
        fps = _synthetic_fps(text)
        return LiveSource(f"synthetic camera {fps:g} fps", lambda: SyntheticCamera(fps, size_wh), fps=fps, **live)
    if text.lower().startswith(URL_SCHEMES):
        return LiveSource(_redact(text), _url_opener(text, open_timeout), **live)
    if any(ch in text for ch in "*?["):
        paths = sorted(p for p in globlib.glob(text, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise EdgedetError(f"no image files match {text}")
        return ImageSource(paths, text)
    path = Path(text)
    if path.is_dir():
        paths = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise EdgedetError(f"folder {path} has no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageSource(paths, text)
    if not path.exists():
        raise EdgedetError(f"source not found: {text} (expected a camera index, picam, synthetic, a URL, "
                           f"a video, an image, a folder or a glob)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource([str(path)], text)
    return VideoFileSource(str(path))


def _redact(url: str) -> str:
    """Hide a password in user:pass@host URLs before logging."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/")[0]:
        creds, _, host = rest.partition("@")
        return f"{scheme}{sep}{creds.split(':')[0]}:***@{host}"
    return url


def video_devices() -> List[str]:
    """The /dev/video* device nodes present on this machine."""
    return sorted(globlib.glob("/dev/video*"))


def _camera_failure(camera) -> str:
    """The error for a camera index or /dev/video* path that cannot be opened, listing the devices present."""
    devices = video_devices()
    present = ", ".join(devices) if devices else "none"
    name = f"camera {camera} (/dev/video{camera})" if isinstance(camera, int) else f"camera {camera}"
    return f"cannot open {name}; video devices present: {present}"


# ------------------------------------------------------------------------------------------ file sources


class ImageSource(Source):
    """Image files in the given order; an unreadable file is logged and skipped, never silently dropped."""

    live = False

    def __init__(self, paths: Sequence[str], name: str):
        self.paths = list(paths)  # image files, in reading order
        self.name = name
        self.skipped: List[str] = []  # files that could not be decoded
        self._next = 0

    def read(self, timeout: float = 1.0) -> Optional[Frame]:
        while self._next < len(self.paths):
            index, path = self._next, self.paths[self._next]
            self._next += 1
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                log.warning("cannot read image %s; skipped", path)
                self.skipped.append(path)
                continue
            return Frame(image, index, time.time(), time.perf_counter(), path)
        return None

    @property
    def unreadable(self) -> int:
        return len(self.skipped)

    @property
    def finished(self) -> bool:
        return self._next >= len(self.paths)


MAX_UNDECODABLE_IN_A_ROW = 25  # failed reads in a row that end a video (one cut short fails every read after)


class VideoFileSource(Source):
    """A video file decoded ahead in a thread through a bounded queue: in order, no frame dropped.

    A frame that cannot be decoded before the end the container announces is skipped (logged, counted in
    `unreadable`; the frames keep their positions in the file as indices); MAX_UNDECODABLE_IN_A_ROW of them end
    the video, and ending short of the announced count is logged.

    The decoder runs in that one thread (FFmpeg's own frame threads are turned off): reading ahead already
    overlaps decoding with inference, and extra decoder threads would only compete with inference for the cores
    (measured, 640x480 MPEG-4: 0.43-0.46 ms of CPU per frame with FFmpeg's 2 threads, 0.33 ms with one)."""

    live = False
    _END = object()

    def __init__(self, path: str, queue_size: int = 4):
        self.name = path
        self.capture = _open_single_threaded(path)
        if not self.capture.isOpened():
            raise EdgedetError(f"cannot open video {path} (not a video OpenCV can decode)")
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)  # the file's nominal frame rate
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)  # as reported by the container
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._decode, name="edgedet-video", daemon=True)
        self._thread.start()

    def _decode(self) -> None:
        position, failed_since = 0, None  # the next frame's position in the file; first of the failing run
        try:
            while not self._stop.is_set():
                ok, image = self.capture.read()
                if ok:
                    if failed_since is not None:
                        self._log_skipped(failed_since, position)
                        failed_since = None
                    self._put(Frame(image, position, time.time(), time.perf_counter(), self.name))
                elif position >= self.frame_count:  # the end (or no count announced: the end as OpenCV sees it)
                    break
                else:
                    failed_since = position if failed_since is None else failed_since
                    self.unreadable += 1
                    if position + 1 - failed_since >= MAX_UNDECODABLE_IN_A_ROW:
                        self.unreadable -= position + 1 - failed_since  # not frames skipped: the end of what is there
                        break
                position += 1
        finally:
            if not self._stop.is_set():  # else closed before the end: the run stopped
                self._log_end(position, failed_since)
            self._put(self._END)

    def _log_end(self, position: int, failed_since: Optional[int]) -> None:
        """At the end of the file: the last frames that failed, or that it ended short of its announced count."""
        if failed_since is not None and position >= self.frame_count:
            self._log_skipped(failed_since, position)
        elif position < self.frame_count:
            log.warning("%s ended at frame %d of the %d its container announces (cut short or damaged?)",
                        self.name, position if failed_since is None else failed_since, self.frame_count)

    def _log_skipped(self, first: int, end: int) -> None:
        frames = f"frame {first}" if end - first == 1 else f"frames {first}-{end - 1}"
        log.warning("%s of %s could not be decoded; skipped", frames, self.name)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def read(self, timeout: float = 1.0) -> Optional[Frame]:
        if self._done:
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is self._END:
            self._done = True
            return None
        return item

    @property
    def finished(self) -> bool:
        return self._done

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.capture.release()


def _open_single_threaded(path: str):
    """cv2.VideoCapture of a video file with one decoder thread, or with the backend's default when the backend
    does not take that setting (OpenCV's backends refuse to open with parameters they do not know)."""
    capture = cv2.VideoCapture(path, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
    return capture if capture.isOpened() else cv2.VideoCapture(path)


class SyntheticSource(Source):
    """Moving coloured shapes on a textured background: a demo without a camera, deterministic, endless."""

    live = False

    def __init__(self, size_wh: Tuple[int, int] = (640, 480), shapes: int = 4, seed: int = 0):
        self.name = "synthetic"
        self.size_wh = size_wh  # frame (width, height)
        rng = np.random.default_rng(seed)
        w, h = size_wh
        self._pos = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h], (shapes, 2))
        self._vel = rng.uniform(-6, 6, (shapes, 2))
        self._radius = rng.uniform(0.06, 0.14, shapes) * min(w, h)
        self._colors = rng.integers(40, 255, (shapes, 3))
        self._background = self._make_background(rng)
        self._index = 0

    def _make_background(self, rng) -> np.ndarray:
        w, h = self.size_wh
        ramp = np.linspace(60, 140, w, dtype=np.float32)[None, :, None]
        noise = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
        return np.clip(np.repeat(ramp, h, axis=0) + noise + np.array([0, 10, 20], np.float32), 0, 255).astype(np.uint8)

    def read(self, timeout: float = 1.0) -> Optional[Frame]:
        frame = Frame(self.render(), self._index, time.time(), time.perf_counter(), self.name)
        self._index += 1
        return frame

    def render(self) -> np.ndarray:
        """The next BGR uint8 (H, W, 3) frame of the animation."""
        image = self._background.copy()
        w, h = self.size_wh
        for k, ((x, y), r) in enumerate(zip(self._pos, self._radius)):
            color = tuple(int(c) for c in self._colors[k])
            if k % 2 == 0:
                cv2.circle(image, (int(x), int(y)), int(r), color, -1, cv2.LINE_AA)
            else:
                cv2.rectangle(image, (int(x - r), int(y - r)), (int(x + r), int(y + r)), color, -1)
        self._step(w, h)
        return image

    def _step(self, w: int, h: int) -> None:
        self._pos += self._vel
        for axis, limit in ((0, w), (1, h)):
            low = self._pos[:, axis] < self._radius
            high = self._pos[:, axis] > limit - self._radius
            self._vel[low | high, axis] *= -1
            self._pos[:, axis] = np.clip(self._pos[:, axis], self._radius, limit - self._radius)


# ------------------------------------------------------------------------------------------ live sources


class SyntheticCamera:
    """The synthetic animation as a camera delivering `fps` frames per second (cv2.VideoCapture protocol):
    `read()` blocks until the next frame is due, so `synthetic:FPS` behaves like a real camera in a LiveSource
    (newest frame only, frames dropped when the pipeline is slower, frame age = real latency)."""

    def __init__(self, fps: float, size_wh: Tuple[int, int]):
        self.period = 1.0 / fps  # seconds between frames
        self._animation = SyntheticSource(size_wh)
        self._due = time.perf_counter()

    def read(self):
        self._due = max(self._due + self.period, time.perf_counter() - self.period)  # never a burst after a stall
        delay = self._due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        return True, self._animation.render()

    def release(self) -> None:
        pass


def _synthetic_fps(text: str) -> float:
    """"synthetic:30" -> 30.0 frames per second; EdgedetError naming the problem otherwise."""
    value = text.split(":", 1)[1]
    try:
        fps = float(value)
    except ValueError:
        fps = 0.0
    if not 0 < fps <= 1000:
        raise EdgedetError(f"--source {text}: expected synthetic:FPS with FPS a number in (0, 1000], e.g. synthetic:30")
    return fps



def _camera_opener(camera) -> Callable[[], object]:
    """camera: an index (0 = /dev/video0) or a device path."""
    def open_camera():
        capture = cv2.VideoCapture(camera)
        if not capture.isOpened():
            capture.release()
            return None
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return capture
    return open_camera


def _url_opener(url: str, timeout: float) -> Callable[[], object]:
    ms = int(max(timeout, 0.5) * 1000)

    def open_url():
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            return None
        return capture
    return open_url


def _picam_opener(imgsz_hw: Tuple[int, int]) -> Callable[[], object]:
    try:
        from picamera2 import Picamera2  # noqa: F401  (only on Raspberry Pi OS)
    except ImportError:
        raise EdgedetError("--camera picam needs picamera2, which is not importable here; on Raspberry Pi OS "
                           "install it with `sudo apt install python3-picamera2` (and create the venv with "
                           "--system-site-packages), or use --camera 0 for a USB/V4L2 camera") from None

    def open_picam():
        return PicamReader(imgsz_hw)
    return open_picam


class PicamReader:
    """picamera2 with a low-resolution YUV420 stream at model size, read as BGR (cv2.VideoCapture protocol)."""

    def __init__(self, imgsz_hw: Tuple[int, int]):
        from picamera2 import Picamera2

        h, w = imgsz_hw
        self.camera = Picamera2()
        config = self.camera.create_video_configuration(
            main={"size": (max(w, 640), max(h, 480))}, lores={"size": (w - w % 2, h - h % 2), "format": "YUV420"})
        self.camera.configure(config)
        self.camera.start()

    def read(self):
        yuv = self.camera.capture_array("lores")
        return True, cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)

    def release(self):
        self.camera.stop()
        self.camera.close()


class LiveSource(Source):
    """A live device read in its own thread keeping only the newest frame; reopened with backoff on failure.

    opener: returns an opened reader (`read() -> (ok, image)`, `release()`) or None when the device is
            unavailable. Called once at start (failure -> EdgedetError within `open_timeout`), then on
            every reconnect.
    """

    live = True

    def __init__(self, name: str, opener: Callable[[], object], policy: ReconnectPolicy = ReconnectPolicy(),
                 open_timeout: float = 5.0, on_fail: Optional[Callable[[], str]] = None, fps: float = 0.0,
                 stop: Optional[threading.Event] = None):
        self.name = name
        self.fps = fps  # nominal frame rate when known (for --save), else 0
        self.policy = policy
        self.delivered = 0  # frames read from the device
        self.dropped = 0  # frames replaced by a newer one before anybody read them
        self.reconnects = 0  # successful reopenings after a failure
        self.stalls = 0  # reopenings because the device owed a frame for too long (`recover_stall`)
        # since the last frame: stalls, and failed reopens after one (a thread stuck in a read may hold the device,
        # so that no reopen can succeed); the watchdog gives up on the source past a few (device.watchdog)
        self.unrecovered_stalls = 0
        self.failed_reopens_after_stall = 0
        self._opener = opener
        self._cond = threading.Condition()
        self._latest: Optional[Frame] = None
        self._stop = threading.Event()
        self._generation = 0  # bumped by recover_stall: a capture thread of an older one ends
        # perf_counter since when the device owes a frame (its last frame or opening); None while waiting to reopen
        self._owed_since: Optional[float] = None
        self._reader = self._open_first(open_timeout, on_fail, stop)
        self._owed_since = time.perf_counter()
        self._thread = threading.Thread(target=self._run, args=(self._reader, 0), name="edgedet-capture", daemon=True)
        self._thread.start()

    def _open_first(self, timeout: float, on_fail, stop: Optional[threading.Event]):
        """The opened reader, within `timeout` seconds; EdgedetError naming the source otherwise, or `OpenStopped`
        when `stop` is set meanwhile. An opener that has not returned is waited for OPENER_GRACE_S more (not when
        stopping), then left behind (device.stuck_threads); what it opens after the deadline is released."""
        result = {}
        lock = threading.Lock()

        def attempt():
            try:
                reader = self._opener()
            except Exception as error:  # a driver's own error: report it with the source's name
                result["error"] = error
                return
            with lock:
                if result.get("gave_up"):
                    _release(reader)  # answered after the deadline: nobody will read it, free the device
                else:
                    result["reader"] = reader

        thread = threading.Thread(target=attempt, name="edgedet-open", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while thread.is_alive() and not (stop is not None and stop.is_set()) and time.monotonic() < deadline:
            thread.join(min(0.1, max(deadline - time.monotonic(), 0.0)))
        with lock:
            reader = result.get("reader")
            result["gave_up"] = reader is None
        if reader is not None:
            return reader
        stopped, answered = stop is not None and stop.is_set(), not thread.is_alive()
        if not answered and not stopped:
            thread.join(OPENER_GRACE_S)
        if thread.is_alive():
            leave_behind(thread)
        if stopped:
            raise OpenStopped(f"stopped while opening {self.name}")
        if not answered:
            detail = f"no answer within {timeout:g} s"
        elif "error" in result:
            detail = str(result["error"]).strip().splitlines()[0] if str(result["error"]).strip() else "error"
        else:
            detail = "it could not be opened"
        raise EdgedetError(on_fail() if on_fail else f"cannot open source {self.name}: {detail}")

    def _run(self, reader, generation: int, cores: Optional[set] = None) -> None:
        """The capture thread of `generation` (cores: where it runs, when it replaces one that stalled)."""
        _run_on(cores)
        delay = self.policy.initial_delay
        while self._current(generation):
            if reader is None:
                reader = self._reopen(delay, generation)
                delay = self.policy.initial_delay if reader is not None else min(delay * 2, self.policy.max_delay)
                continue
            ok, image = self._read(reader)
            if not self._current(generation):
                break
            if not ok or image is None:
                log.warning("source %s stopped delivering frames; reconnecting", self.name)
                _release(reader)
                reader = None
                continue
            self._publish(image)
        _release(reader)

    def _read(self, reader):
        try:
            return reader.read()
        except Exception as error:  # e.g. a USB camera unplugged mid-read
            log.warning("source %s read failed: %s", self.name, error)
            return False, None

    def _current(self, generation: int) -> bool:
        return not self._stop.is_set() and generation == self._generation

    def _reopen(self, delay: float, generation: int):
        log.warning("source %s: reopening in %.1f s", self.name, delay)
        self._owed_since = None  # waiting to reopen is not a stall
        if self._stop.wait(delay):
            return None
        self._owed_since = time.perf_counter()  # an open that never answers is one
        try:
            reader = self._opener()
        except Exception as error:
            log.warning("source %s: reopen failed: %s", self.name, error)
            reader = None
        if reader is None:
            log.warning("source %s: reopen failed; next attempt in %.1f s", self.name,
                        min(delay * 2, self.policy.max_delay))
            with self._cond:
                if self.unrecovered_stalls:  # only after a stall (an unplugged camera retries for ever)
                    self.failed_reopens_after_stall += 1
            return None
        if generation != self._generation:  # given up on while opening: another thread has taken over
            _release(reader)
            return None
        self._owed_since = time.perf_counter()
        self.reconnects += 1
        log.warning("source %s: reconnected (reconnect #%d)", self.name, self.reconnects)
        return reader

    def _publish(self, image: np.ndarray) -> None:
        now = time.perf_counter()
        frame = Frame(image, self.delivered, time.time(), now, self.name)
        with self._cond:
            if self._latest is not None:
                self.dropped += 1
            self._latest = frame
            self._owed_since = now
            self.unrecovered_stalls = self.failed_reopens_after_stall = 0
            self.delivered += 1
            self._cond.notify_all()

    def read(self, timeout: float = 1.0) -> Optional[Frame]:
        """The newest frame not yet returned; waits up to `timeout` s for one, else None."""
        with self._cond:
            if self._latest is None:
                self._cond.wait_for(lambda: self._latest is not None or self._stop.is_set(), timeout)
            frame, self._latest = self._latest, None
            return frame

    def stalled_for(self) -> float:
        """Seconds the device has owed a frame (since its last frame or its opening); 0 while waiting to reopen."""
        since = self._owed_since
        return 0.0 if since is None else time.perf_counter() - since

    def recover_stall(self) -> None:
        """The device owes a frame for too long: count a stall and reopen it in a new capture thread. The old one
        may be stuck in a read that never returns, and releasing a reader under a read is unsafe, so it is left to
        release its reader and end once the read returns (a daemon until then)."""
        with self._cond:
            self._generation += 1
            self.stalls += 1
            self.unrecovered_stalls += 1
            self._owed_since = None
            stuck = self._thread
            self._thread = threading.Thread(target=self._run, args=(None, self._generation, _cores_of(stuck)),
                                            name="edgedet-capture", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=3.0)


def _cores_of(thread: threading.Thread) -> Optional[set]:
    """The cores a thread may run on (Linux), so that its replacement runs where it did; None elsewhere."""
    try:
        return os.sched_getaffinity(thread.native_id)
    except (AttributeError, OSError, TypeError):
        return None


def _run_on(cores: Optional[set]) -> None:
    """Restrict the calling thread to `cores` (None: leave it where it is)."""
    if cores:
        try:
            os.sched_setaffinity(0, cores)
        except OSError:  # the cores went away meanwhile: the OS places the thread
            pass


def _release(reader) -> None:
    if reader is not None:
        try:
            reader.release()
        except Exception as error:  # releasing a dead device must not stop the loop
            log.debug("release failed: %s", error)
