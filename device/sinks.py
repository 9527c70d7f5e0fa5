"""Outputs of `edgedet run`: per-frame JSON lines (flushed per frame) and an annotated video (finalised on close).

JSON line per frame:
    {"frame": 12, "source": "img/0003.jpg", "timestamp": 1732412345.123, "width": 640, "height": 480,
     "detections": [{"xyxy": [x1, y1, x2, y2], "score": 0.91, "class_id": 0, "class_name": "person",
                     "segmentation": {"size": [480, 640], "counts": "..."}}],      # COCO RLE, masks only
     "latency_ms": {"capture": 0.1, "preprocess": 1.2, "inference": 20.3, ...}}
Boxes are in original-frame pixels (xyxy, continuous).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from .detections import Detections
from .errors import EdgedetError
from .rle import rle_encode

log = logging.getLogger("edgedet.sinks")


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


def open_for_writing(path: str, flag: str):
    """Open a text file for writing or raise an EdgedetError naming the flag and the problem."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8")
    except OSError as error:
        raise EdgedetError(f"{flag}: cannot write {path}: {error.strerror or error}") from None


class JsonLinesSink:
    """One JSON object per frame, written and flushed line by line (nothing is lost on a crash or Ctrl-C)."""

    def __init__(self, path: str, names: Sequence[str]):
        self.path = path
        self.names = list(names)  # class names, index = class id
        self.lines = 0  # lines written
        self._file = open_for_writing(path, "--json")

    def write(self, frame, detections: Detections, latency_ms: Dict[str, float], **extra) -> None:
        """frame: a device.capture.Frame; latency_ms: {stage: ms} of this frame; extra: more top-level keys."""
        if self._file is None:
            return
        h, w = frame.image.shape[:2]
        record = {"frame": int(frame.index), "source": frame.source, "timestamp": round(frame.timestamp, 6),
                  "width": int(w), "height": int(h), "detections": detections_to_dicts(detections, self.names),
                  **extra, "latency_ms": {k: round(float(v), 3) for k, v in latency_ms.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.lines += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class VideoSink:
    """Annotated frames to a video file; opened at the first frame (its size), released on `close`.

    Frames of another size (image folders) are resized to the first frame's size.
    """

    FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}

    def __init__(self, path: str, fps: float = 30.0):
        suffix = Path(path).suffix.lower()
        if suffix not in self.FOURCC:
            raise EdgedetError(f"--save: unsupported video suffix {suffix!r} in {path}; use one of {', '.join(self.FOURCC)}")
        parent = Path(path).parent
        if not parent.is_dir():
            raise EdgedetError(f"--save: folder {parent} does not exist")
        self.path = path
        self.fps = float(fps) if fps and fps > 0 else 30.0  # frame rate written into the file
        self.frames = 0  # frames written
        self._size_wh: Optional[tuple] = None
        self._writer: Optional[cv2.VideoWriter] = None

    def write(self, image_bgr: np.ndarray) -> None:
        if self._writer is None:
            self._open(image_bgr.shape[1], image_bgr.shape[0])
        if (image_bgr.shape[1], image_bgr.shape[0]) != self._size_wh:
            image_bgr = cv2.resize(image_bgr, self._size_wh, interpolation=cv2.INTER_AREA)
        self._writer.write(image_bgr)
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        fourcc = cv2.VideoWriter_fourcc(*self.FOURCC[Path(self.path).suffix.lower()])
        writer = cv2.VideoWriter(self.path, fourcc, self.fps, (width, height))
        if not writer.isOpened():
            raise EdgedetError(f"--save: OpenCV cannot write {self.path}")
        self._writer, self._size_wh = writer, (width, height)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.info("saved %d frames to %s", self.frames, self.path)
