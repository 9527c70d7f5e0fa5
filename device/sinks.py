"""Outputs of `edgedet run`: one protocol, `Sink`, fed one `FrameResult` per finished frame.

A sink is `write(result, canvas)` and `close()`, plus `needs_canvas`: the runner draws the annotated frame only
when some sink needs it, so a run that writes only JSON lines draws nothing. A new output is one `Sink` class
plus its flag (the argument in device.app, its field in `device.runner.RunOptions`) and one line in
`device.runner.build_sinks`.

    JsonLinesSink    --json         one JSON object per frame (below), flushed per line
    VideoSink        --save OUT.mp4 the annotated frames as a video (H.264 when OpenCV can encode it), on close
    ImageFolderSink  --save DIR/    each annotated frame as an image, under its source file's name, at its size
    LabelsSink       --save-txt DIR one YOLO label file per frame (boxes, or mask polygons), normalised to 0..1
    CropSink         --save-crop DIR  every object cut from the frame: DIR/<class name>/<stem>_<k>.jpg
    WindowSink       --show         an OpenCV window, shown from the main thread (`pump_events`)
    LatencyLogSink   --latency-log  {"frame": i, "source": ..., "ms": {stage: ms}} per frame, output stage included
    StreamSink       --stream       MJPEG and a status page (device.stream); a canvas only while someone watches

JSON line per frame (--json):
    {"frame": 12, "source": "img/0003.jpg", "timestamp": 1732412345.123, "width": 640, "height": 480,
     "detections": [{"xyxy": [x1, y1, x2, y2], "score": 0.91, "class_id": 0, "class_name": "person",
                     "track_id": 3,                                               # --track only
                     "segmentation": {"size": [480, 640], "counts": "..."}}],      # COCO RLE, masks only
     "events": [{"kind": "cross_in", "zone": "door", "track_id": 3, ...}],   # --zone / --line only
     "counts": {"zones": {...}, "lines": {"door": {"in": {"person": 1}, "out": {}}}},   # --zone / --line only
     "latency_ms": {"capture": 0.1, "preprocess": 1.2, "inference": 20.3, ...}}
Boxes are in original-frame pixels (xyxy, continuous).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import re
import sys
import tempfile
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set, TextIO, Tuple

import cv2
import numpy as np

from .affinity import leave_background, run_in_background
from .capture import Frame
from .detections import Detections
from .errors import EdgedetError
from .image_files import IMAGE_SUFFIXES
from .latency import StageTimer, timed
from .letterbox import Letterbox
from .library_logs import native_stderr_silenced
from .output_paths import check_output_file, make_output_folder
from .polygons import mask_to_polygon
from .zones import Event

log = logging.getLogger("edgedet.sinks")
WINDOW_TITLE = "edgedet"


@dataclass(frozen=True)
class FrameResult:
    """One finished frame, as every sink sees it."""

    frame: Frame  # the captured frame: uint8 BGR image (H, W, 3), index, timestamp, source
    detections: Detections  # xyxy float32 (N, 4) in frame pixels; masks bool (N, H, W) when the model has them
    latency_ms: Dict[str, float] = field(default_factory=dict)  # {stage: ms} of this frame measured so far
    semantic: Optional[np.ndarray] = None  # uint8 (h', w') label map covering the frame at half the model's input
    # resolution (Detector.finish_semantic_to_draw); built only when a canvas is drawn
    fps: float = 0.0  # output frames per second over the recent window
    events: Tuple[Event, ...] = ()  # zone / line events of this frame (device.zones), with --zone / --line
    counts: Optional[dict] = None  # every zone's and line's counts after this frame; None without zones and lines


class Sink(ABC):
    """One output of `edgedet run`.

    The runner calls `write` from its output thread once per finished frame, in frame order; `pump_events` from
    the main thread between frames; `close` once at the end (also after Ctrl-C or an error)."""

    # True: `write` gets the annotated canvas. May be a property whose value changes during the run (asked once
    # per frame, before drawing).
    needs_canvas: bool = False
    # True: written after the other sinks, outside the "output" stage, so `result.latency_ms` includes their time
    records_output_time: bool = False
    wants_overlay: bool = True  # with a canvas: the FPS/latency line drawn on it (live views and videos)

    @abstractmethod
    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        """Consume one frame. canvas: the annotated copy of result.frame.image, uint8 BGR (H, W, 3), shared by
        every sink (read only), or None when no sink needed one for this frame."""

    def pump_events(self) -> bool:
        """Main-thread work between frames (a window's GUI events); True when the user asked to stop the run."""
        return False

    def close(self) -> None:
        """Flush and release whatever the sink holds; later writes are not expected."""


def detections_to_dicts(detections: Detections, names: Sequence[str], ndigits: int = 2) -> List[dict]:
    """JSON-ready list of detections named by `names` (`Detections.to_dict`'s "detections"); instance masks become
    COCO compressed RLE under "segmentation"."""
    return detections.with_names(names).to_dict(ndigits)["detections"]


def open_for_writing(path: str, flag: str) -> TextIO:
    """Open a text file for writing or raise an EdgedetError naming the flag and the problem."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8")
    except OSError as error:
        raise EdgedetError(f"{flag}: cannot write {path}: {error.strerror or error}") from None


class JsonLinesWriter:
    """One JSON object per line, flushed line by line (nothing is lost on a crash or Ctrl-C); writes after
    `close` are ignored. `flag` names the option in the error when the file cannot be opened."""

    def __init__(self, path: str, flag: str):
        self.path = path
        self.lines = 0  # lines written
        self._file: Optional[TextIO] = open_for_writing(path, flag)

    def write(self, record: dict) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.lines += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class JsonLinesSink(Sink):
    """--json: one JSON object per frame (the module docstring's format)."""

    def __init__(self, path: str, names: Sequence[str]):
        self.path = path
        self.names = list(names)  # class names, index = class id
        self._writer = JsonLinesWriter(path, "--json")

    @property
    def lines(self) -> int:
        """Lines written so far."""
        return self._writer.lines

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        frame = result.frame
        h, w = frame.image.shape[:2]
        record = {"frame": int(frame.index), "source": frame.source, "timestamp": round(frame.timestamp, 6),
                  "width": int(w), "height": int(h), "detections": detections_to_dicts(result.detections, self.names)}
        if result.counts is not None:  # zones or lines are set
            record["events"] = [event.to_dict() for event in result.events]
            record["counts"] = result.counts
        record["latency_ms"] = {k: round(float(v), 3) for k, v in result.latency_ms.items()}
        self._writer.write(record)

    def close(self) -> None:
        self._writer.close()


class LatencyLogSink(Sink):
    """--latency-log: {"frame": i, "source": ..., "ms": {stage: ms}} per frame, the output stage included."""

    records_output_time = True

    def __init__(self, path: str):
        self.path = path
        self._writer = JsonLinesWriter(path, "--latency-log")

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        self._writer.write({"frame": int(result.frame.index), "source": result.frame.source,
                            "ms": {k: round(float(v), 4) for k, v in result.latency_ms.items()}})

    def close(self) -> None:
        self._writer.close()


# codecs to try per suffix, best first: H.264 ('avc1') plays in browsers, but the opencv-python(-headless) wheels
# from PyPI ship an FFmpeg without an H.264 encoder (only the V4L2 hardware one, which needs a device that has it),
# so 'mp4v' (MPEG-4 Part 2) is the usual result; .webm (VP8) plays in browsers with those wheels
VIDEO_CODECS = {".mp4": ("avc1", "mp4v"), ".m4v": ("avc1", "mp4v"), ".mov": ("avc1", "mp4v"),
                ".webm": ("VP80",), ".avi": ("MJPG",), ".mkv": ("MJPG",)}
BROWSER_CODECS = ("avc1", "VP80")  # of those, the ones web browsers play
PLAYERS = {"mp4v": "VLC, mpv, ffplay and most desktop players, but not web browsers",
           "MJPG": "VLC, mpv, ffplay and most desktop players, but not web browsers"}
LETTERBOX_PAD = 0  # border value around frames letterboxed onto the video's canvas (black bars)


def is_image_folder(path: str) -> bool:
    """True when --save names a folder for annotated images: a path ending in '/' or an existing folder."""
    return str(path).endswith(("/", os.sep)) or Path(path).is_dir()


def check_video_path(path: str) -> None:
    """Raise an EdgedetError (naming --save) unless `path` has a known video suffix and can become a file
    (device.output_paths: its folder made as --json makes its own, and writable)."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_CODECS:
        raise EdgedetError(f"--save: unsupported video suffix {suffix!r} in {path}; use one of "
                           f"{', '.join(VIDEO_CODECS)}, or end the path with / to save annotated images in a folder")
    check_output_file(path, "--save")


@lru_cache(maxsize=None)
def can_encode(fourcc: str, suffix: str) -> bool:
    """True when this OpenCV build writes a `suffix` file with codec `fourcc` (probed once per process by writing
    two frames of 64x64 to a temporary file)."""
    with tempfile.TemporaryDirectory() as folder, native_stderr_silenced():
        path = os.path.join(folder, "probe" + suffix)
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 10.0, (64, 64))
        opened = writer.isOpened()
        if opened:
            for _ in range(2):
                writer.write(np.zeros((64, 64, 3), np.uint8))
        writer.release()
        return opened and os.path.getsize(path) > 0


def video_codec(suffix: str) -> str:
    """The first codec of VIDEO_CODECS[suffix] this OpenCV can encode (the last one when none probes well: its
    writer then reports the failure). When a browser codec had to be skipped, says once which players work."""
    codecs = VIDEO_CODECS[suffix]
    chosen = next((fourcc for fourcc in codecs if can_encode(fourcc, suffix)), codecs[-1])
    if chosen not in BROWSER_CODECS and any(fourcc in BROWSER_CODECS for fourcc in codecs):
        _note_no_browser_codec(suffix, chosen)
    return chosen


@lru_cache(maxsize=None)
def _note_no_browser_codec(suffix: str, fourcc: str) -> None:
    log.info("--save: this OpenCV %s cannot encode H.264, so %s files are written as %s, which plays in %s; "
             "--save OUT.webm writes VP8, which browsers play", cv2.__version__, suffix, fourcc,
             PLAYERS.get(fourcc, "desktop players"))


def fit_canvas(image: np.ndarray, size_wh: Tuple[int, int]) -> np.ndarray:
    """uint8 (h, w, 3) image -> (H, W, 3) for a canvas of `size_wh` = (W, H): unchanged when it fits exactly,
    otherwise scaled to fit, aspect ratio kept, and centred between black bars (letterboxed, never squashed)."""
    width, height = size_wh
    if image.shape[:2] == (height, width):
        return image
    return Letterbox.fit(image.shape[:2], (height, width), pad_value=LETTERBOX_PAD).apply(image)


class BackgroundEncoder:
    """`encode(item)` for every item `put` hands over, in order, in a background thread of its own
    (device.affinity.run_in_background: idle priority, every core), so that encoding uses the CPU time the loop
    leaves over instead of the output thread's.

    The queue holds `depth` items: `put` waits while it is full, so nothing is dropped and memory stays bounded.
    An encode that raises ends the encoding (the rest is discarded): the next `put`, or `close`, raises an
    EdgedetError naming `what` and the error. `close` first encodes everything queued, so nothing handed over is
    lost on Ctrl-C. With a timer, each encode is timed as stage `stage` (in this thread: its own count, in no
    frame's record)."""

    def __init__(self, encode: Callable[[object], None], what: str, name: str, depth: int = 3,
                 timer: Optional[StageTimer] = None, stage: str = "save"):
        self.what = what  # what is encoded, for the error message ("--save out.mp4")
        self._encode = encode
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._timer, self._stage = timer, stage
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item) -> None:
        """Queue one item (waits while `depth` are queued); raises if an earlier encode failed."""
        self._raise_error()
        self._queue.put(item)

    def close(self) -> None:
        """Encode what is queued, end the thread; raises if an encode failed."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise_error()

    def _run(self) -> None:
        run_in_background()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if self._error is None:
                    try:
                        with timed(self._timer, self._stage):
                            self._encode(item)
                    except Exception as error:  # reported by the next put or close, in the loop's thread
                        self._error = error
        finally:
            leave_background()

    def _raise_error(self) -> None:
        if isinstance(self._error, EdgedetError):  # already names the flag and the problem
            raise EdgedetError(str(self._error))
        if self._error is not None:
            raise EdgedetError(f"{self.what}: writing failed: {type(self._error).__name__}: {self._error}")


class VideoSink(Sink):
    """--save OUT.mp4: the annotated frames to a video file; opened at the first frame (its size), released on
    `close`. The codec is the best of VIDEO_CODECS[suffix] this OpenCV can encode (`video_codec`). Frames are
    encoded in a `BackgroundEncoder`, timed as stage "save" of `timer` when given.

    Frames of another size (image folders) are letterboxed onto the first frame's canvas.
    """

    needs_canvas = True

    def __init__(self, path: str, fps: float = 30.0, timer: Optional[StageTimer] = None):
        check_video_path(path)
        self.path = path
        self.fps = float(fps) if fps and fps > 0 else 30.0  # frame rate written into the file
        self.fourcc = video_codec(Path(path).suffix.lower())  # codec of the file, e.g. "avc1" or "mp4v"
        self.frames = 0  # frames handed to the encoder
        self._size_wh: Optional[tuple] = None
        self._writer: Optional[cv2.VideoWriter] = None
        self._encoder = BackgroundEncoder(self._encode, f"--save {path}", "edgedet-save", timer=timer)

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        if self._writer is None:
            self._open(canvas.shape[1], canvas.shape[0])
        self._encoder.put(fit_canvas(canvas, self._size_wh))  # the canvas is not modified after this
        self.frames += 1

    def _encode(self, image_bgr: np.ndarray) -> None:
        self._writer.write(image_bgr)

    def _open(self, width: int, height: int) -> None:
        # FFmpeg notes a fourcc it maps to its own tag (VP80 in WebM) on stderr; nothing the user can act on
        with native_stderr_silenced():
            writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (width, height))
        if not writer.isOpened():
            raise EdgedetError(f"--save: OpenCV cannot write {self.path} (codec {self.fourcc})")
        self._writer, self._size_wh = writer, (width, height)

    def close(self) -> None:
        try:
            self._encoder.close()
        finally:
            if self._writer is not None:
                self._writer.release()
                self._writer = None
                log.info("saved %d frames to %s (%s)", self.frames, self.path, self.fourcc)


# ---- per-image outputs: annotated images, YOLO label files, crops


class FrameNames:
    """The file stem of each frame of a run: an image file's own stem, otherwise `<source>_<frame index>`
    (video frames, cameras); a stem already given in this run (two folders of one glob) gets `_<index>` added."""

    def __init__(self):
        self._used: Set[str] = set()

    def stem(self, frame: Frame) -> str:
        path = Path(frame.source)
        if is_image_file(frame.source):
            stem = path.stem
        else:
            stem = f"{_safe_name(path.stem) or 'frame'}_{frame.index:06d}"
        if stem in self._used:
            stem = f"{stem}_{frame.index}"
        base, n = stem, 1
        while stem in self._used:  # the fallback itself was taken, e.g. by a source named like it
            n += 1
            stem = f"{base}_{n}"
        self._used.add(stem)
        return stem


def is_image_file(source: str) -> bool:
    """True when a frame's source is a still image file (not a video, camera or URL)."""
    return Path(source).suffix.lower() in IMAGE_SUFFIXES


def _safe_name(text: str) -> str:
    """`text` with every character that is not a letter, digit, '.', '-' or '_' replaced by '_'."""
    return re.sub(r"[^\w.\-]", "_", text).strip("_")


def _folder_name(class_name: str, class_id: int) -> str:
    """A class name as one folder name: path separators become '_'; the id when nothing usable is left."""
    name = class_name.replace("/", "_").replace("\\", "_").strip()
    return name if name not in ("", ".", "..") else str(class_id)


def write_image(path: Path, image: np.ndarray, flag: str) -> None:
    """cv2.imwrite, or an EdgedetError naming the flag when the file cannot be written."""
    try:
        ok = cv2.imwrite(str(path), image)
    except cv2.error as error:
        raise EdgedetError(f"{flag}: cannot write {path}: {str(error).strip().splitlines()[-1]}") from None
    if not ok:
        raise EdgedetError(f"{flag}: cannot write {path}")


class ImageFolderSink(Sink):
    """--save DIR/: every annotated frame as an image file in DIR, at the frame's own size, under its source
    file's name (same suffix); frames of videos and cameras as `<source>_<index>.jpg`. The images are encoded
    and written in a `BackgroundEncoder`, timed as stage "save" of `timer` when given."""

    needs_canvas = True
    wants_overlay = False  # a saved picture carries no live FPS line

    def __init__(self, folder: str, timer: Optional[StageTimer] = None):
        self.folder = make_output_folder(folder, "--save")
        self.images = 0  # images handed to the encoder
        self._names = FrameNames()
        self._encoder = BackgroundEncoder(lambda job: write_image(*job, "--save"), f"--save {self.folder}",
                                          "edgedet-save", timer=timer)

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        frame = result.frame
        stem = self._names.stem(frame)
        suffix = Path(frame.source).suffix if is_image_file(frame.source) else ".jpg"
        target = self.folder / f"{stem}{suffix}"
        if is_image_file(frame.source) and target.resolve() == Path(frame.source).resolve():
            raise EdgedetError(f"--save {self.folder}: would overwrite the source image {frame.source}; "
                               "save into another folder")
        self._encoder.put((target, canvas))  # the canvas is not modified after this
        self.images += 1

    def close(self) -> None:
        self._encoder.close()
        if self.images:
            log.info("saved %d annotated images to %s", self.images, self.folder)


def yolo_label_lines(detections: Detections, shape_hw: Tuple[int, int]) -> List[str]:
    """YOLO label lines of one frame of (h, w) pixels: `class cx cy w h`, or with masks `class x1 y1 x2 y2 ...`
    (the mask's polygon along pixel edges, `device.polygons`), every coordinate normalised to 0..1 (6 decimals).
    An object whose mask is empty is written as its box."""
    h, w = shape_hw
    lines = []
    for k, item in enumerate(detections):
        polygon = None if item.mask is None else mask_to_polygon(item.mask)
        if polygon is not None:
            coords = " ".join(f"{v:.6f}" for v in (polygon / [w, h]).ravel())
            lines.append(f"{item.class_id} {coords}")
            continue
        x1, y1, x2, y2 = item.xyxy
        values = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
        lines.append(f"{item.class_id} " + " ".join(f"{v:.6f}" for v in values))
    return lines


class LabelsSink(Sink):
    """--save-txt DIR: `DIR/<stem>.txt` per frame in YOLO format (`yolo_label_lines`); a frame without
    detections gets an empty file. The class ids index the model's names."""

    def __init__(self, folder: str):
        self.folder = make_output_folder(folder, "--save-txt")
        self.files = 0  # label files written
        self._names = FrameNames()

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        lines = yolo_label_lines(result.detections, result.frame.image.shape[:2])
        path = self.folder / f"{self._names.stem(result.frame)}.txt"
        try:
            path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        except OSError as error:
            raise EdgedetError(f"--save-txt: cannot write {path}: {error.strerror or error}") from None
        self.files += 1

    def close(self) -> None:
        if self.files:
            log.info("saved %d label files to %s", self.files, self.folder)


def crop_box(xyxy: Sequence[float], shape_hw: Tuple[int, int]) -> Tuple[slice, slice]:
    """(rows, cols) slices of the pixels a continuous xyxy box touches, inside an (h, w) image (may be empty)."""
    h, w = shape_hw
    x1, y1 = max(int(np.floor(xyxy[0])), 0), max(int(np.floor(xyxy[1])), 0)
    x2, y2 = min(int(np.ceil(xyxy[2])), w), min(int(np.ceil(xyxy[3])), h)
    return slice(y1, max(y1, y2)), slice(x1, max(x1, x2))


class CropSink(Sink):
    """--save-crop DIR: every object cut from the frame as captured (not the annotated canvas):
    `DIR/<class name>/<stem>_<k>.jpg`, k = the object's rank in the frame (0 = most confident)."""

    def __init__(self, folder: str, names: Sequence[str]):
        self.folder = make_output_folder(folder, "--save-crop")
        self.names = list(names)  # class names, index = class id
        self.crops = 0  # crops written
        self._names = FrameNames()

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        image = result.frame.image
        stem = self._names.stem(result.frame)
        for k, item in enumerate(result.detections.with_names(self.names)):
            rows, cols = crop_box(item.xyxy, image.shape[:2])
            crop = image[rows, cols]
            if crop.size == 0:
                continue
            folder = make_output_folder(str(self.folder / _folder_name(item.name, item.class_id)), "--save-crop")
            write_image(folder / f"{stem}_{k}.jpg", crop, "--save-crop")
            self.crops += 1

    def close(self) -> None:
        if self.crops:
            log.info("saved %d crops to %s", self.crops, self.folder)


def display_available() -> bool:
    """True when an OpenCV window can be opened (a display exists and OpenCV has a GUI backend)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(WINDOW_TITLE, cv2.WINDOW_NORMAL)
        return True
    except cv2.error:
        return False


class WindowSink(Sink):
    """--show: the newest annotated frame in an OpenCV window; q or Esc stops the run.

    `write` (output thread) only keeps the canvas: OpenCV's GUI calls run in `pump_events`, on the main thread,
    where GUI toolkits expect them."""

    needs_canvas = True

    def __init__(self):
        self._latest: Optional[np.ndarray] = None  # newest canvas written
        self._shown: Optional[np.ndarray] = None  # the canvas on screen

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        self._latest = canvas

    def pump_events(self) -> bool:
        canvas = self._latest
        if canvas is not None and canvas is not self._shown:
            cv2.imshow(WINDOW_TITLE, canvas)
            self._shown = canvas
        return cv2.waitKey(1) & 0xFF in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyAllWindows()
