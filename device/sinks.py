"""Outputs of `edgedet run`: one protocol, `Sink`, fed one `FrameResult` per finished frame.

A sink is `write(result, canvas)` and `close()`, plus `needs_canvas`: the runner draws the annotated frame only
when some sink needs it, so a run that writes only JSON lines draws nothing. A new output is one `Sink` class
plus its flag (the argument in device.app, its field in `device.runner.RunOptions`) and one line in
`device.runner.build_sinks`.

    JsonLinesSink    --json         one JSON object per frame (below), flushed per line
    VideoSink        --save         the annotated frames as a video, finalised on close
    WindowSink       --show         an OpenCV window, shown from the main thread (`pump_events`)
    LatencyLogSink   --latency-log  {"frame": i, "source": ..., "ms": {stage: ms}} per frame, output stage included
    StreamSink       --stream       MJPEG and a status page (device.stream); a canvas only while someone watches

JSON line per frame (--json):
    {"frame": 12, "source": "img/0003.jpg", "timestamp": 1732412345.123, "width": 640, "height": 480,
     "detections": [{"xyxy": [x1, y1, x2, y2], "score": 0.91, "class_id": 0, "class_name": "person",
                     "segmentation": {"size": [480, 640], "counts": "..."}}],      # COCO RLE, masks only
     "latency_ms": {"capture": 0.1, "preprocess": 1.2, "inference": 20.3, ...}}
Boxes are in original-frame pixels (xyxy, continuous).
"""
from __future__ import annotations

import json
import logging
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, TextIO

import cv2
import numpy as np

from .capture import Frame
from .detections import Detections
from .errors import EdgedetError
from .rle import rle_encode

log = logging.getLogger("edgedet.sinks")
WINDOW_TITLE = "edgedet"


@dataclass(frozen=True)
class FrameResult:
    """One finished frame, as every sink sees it."""

    frame: Frame  # the captured frame: uint8 BGR image (H, W, 3), index, timestamp, source
    detections: Detections  # xyxy float32 (N, 4) in frame pixels; masks bool (N, H, W) when the model has them
    latency_ms: Dict[str, float] = field(default_factory=dict)  # {stage: ms} of this frame measured so far
    semantic: Optional[np.ndarray] = None  # (H, W) label map; built only when a canvas is drawn
    fps: float = 0.0  # output frames per second over the recent window


class Sink(ABC):
    """One output of `edgedet run`.

    The runner calls `write` from its output thread once per finished frame, in frame order; `pump_events` from
    the main thread between frames; `close` once at the end (also after Ctrl-C or an error)."""

    # True: `write` gets the annotated canvas. May be a property whose value changes during the run (asked once
    # per frame, before drawing).
    needs_canvas: bool = False
    # True: written after the other sinks, outside the "output" stage, so `result.latency_ms` includes their time
    records_output_time: bool = False

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
    """JSON-ready list of detections; instance masks become COCO compressed RLE under "segmentation"."""
    segmentations = None
    if detections.masks is not None and len(detections):
        segmentations = rle_encode(detections.masks)  # one batch over the frame's masks, each scanned in its box
    items = []
    for k in range(len(detections)):
        class_id = int(detections.class_ids[k])
        item = {"xyxy": [round(float(v), ndigits) for v in detections.xyxy[k]],
                "score": round(float(detections.scores[k]), 4),
                "class_id": class_id,
                "class_name": names[class_id] if 0 <= class_id < len(names) else str(class_id)}
        if segmentations is not None:
            item["segmentation"] = segmentations[k]
        items.append(item)
    return items


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
        self._writer.write({"frame": int(frame.index), "source": frame.source, "timestamp": round(frame.timestamp, 6),
                            "width": int(w), "height": int(h),
                            "detections": detections_to_dicts(result.detections, self.names),
                            "latency_ms": {k: round(float(v), 3) for k, v in result.latency_ms.items()}})

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


VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def check_video_path(path: str) -> None:
    """Raise an EdgedetError (naming --save) unless `path` has a known video suffix and an existing folder."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_FOURCC:
        raise EdgedetError(f"--save: unsupported video suffix {suffix!r} in {path}; use one of {', '.join(VIDEO_FOURCC)}")
    parent = Path(path).parent
    if not parent.is_dir():
        raise EdgedetError(f"--save: folder {parent} does not exist")


class VideoSink(Sink):
    """--save: the annotated frames to a video file; opened at the first frame (its size), released on `close`.

    Frames of another size (image folders) are resized to the first frame's size.
    """

    needs_canvas = True

    def __init__(self, path: str, fps: float = 30.0):
        check_video_path(path)
        self.path = path
        self.fps = float(fps) if fps and fps > 0 else 30.0  # frame rate written into the file
        self.frames = 0  # frames written
        self._size_wh: Optional[tuple] = None
        self._writer: Optional[cv2.VideoWriter] = None

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        if self._writer is None:
            self._open(canvas.shape[1], canvas.shape[0])
        if (canvas.shape[1], canvas.shape[0]) != self._size_wh:
            canvas = cv2.resize(canvas, self._size_wh, interpolation=cv2.INTER_AREA)
        self._writer.write(canvas)
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC[Path(self.path).suffix.lower()])
        writer = cv2.VideoWriter(self.path, fourcc, self.fps, (width, height))
        if not writer.isOpened():
            raise EdgedetError(f"--save: OpenCV cannot write {self.path}")
        self._writer, self._size_wh = writer, (width, height)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.info("saved %d frames to %s", self.frames, self.path)


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
