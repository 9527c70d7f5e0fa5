"""`Detector`: preprocess -> backend.run -> postprocess around one backend, every stage timed.

    >>> import cv2
    >>> from edgedet.device import Detector
    >>> detector = Detector("model.onnx", conf=0.7)
    >>> detections = detector("image.jpg")      # a path, or a uint8 BGR / BGRA / grey array
    >>> detections
    Detections(3 objects: 3 circle)
    >>> for d in detections:                    # one record per object: xyxy (image pixels), score, class_id,
    ...     print(d.name, f"{d.score:.2f}")     # name, mask (bool (H, W) or None)
    circle 0.72
    circle 0.71
    circle 0.71
    >>> detections[detections.scores > 0.715]   # filtering is indexing; the names travel along
    Detections(1 object: 1 circle)
    >>> detections.to_dict()["detections"][0]["class_name"]   # also .to_json(), .to_coco(image_id)
    'circle'
    >>> cv2.imwrite("annotated.jpg", detector.annotate("image.jpg", detections))
    True
    >>> detector.timer.summary()["inference"]["count"]        # per-stage latency: p50/p90/p99 in ms
    1
    >>> tracked = Detector("model.onnx", conf=0.7, track=True)   # successive calls: frames of one video
    >>> [d.track_id for d in tracked("image.jpg")], tracked("image.jpg").tracker_ids.tolist()
    ([1, 2, 3], [1, 2, 3])

The three steps are also public (`prepare`, `infer`, `finish`) so the run loop can pipeline them:
postprocess of frame t overlaps inference of frame t+1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .backends import load_backend
from .detections import Detections
from .draw import LINE_WIDTH, annotate
from .errors import EdgedetError
from .latency import StageTimer
from .letterbox import Letterbox
from .masks import semantic_logits_in_frame
from .postprocessing import postprocess, postprocess_semantic, semantic_logits
from .preprocessing import preprocess
from .tracking import Tracker, TrackerConfig


ImageLike = Union[str, os.PathLike, np.ndarray]  # an image file, or a uint8 BGR / BGRA / grey array


def read_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """An image file -> uint8 BGR (h, w, 3) (alpha dropped, grey expanded); an EdgedetError when unreadable."""
    if not Path(path).is_file():
        raise EdgedetError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgedetError(f"cannot read image {path}: not an image file OpenCV can decode")
    return image


def as_bgr(image: ImageLike) -> np.ndarray:
    """A path (read with OpenCV) or a uint8 array -> uint8 BGR (h, w, 3): BGRA (h, w, 4) loses its alpha, grey
    (h, w) or (h, w, 1) is expanded; a BGR array is returned as is (no copy)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    image = np.asarray(image)
    if image.size == 0:
        raise EdgedetError(f"image is empty (shape {image.shape})")
    if image.dtype != np.uint8:
        raise EdgedetError(f"image must be a uint8 array or an image path, got an array of {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise EdgedetError(f"image must be (h, w, 3) BGR, (h, w, 4) BGRA or (h, w) grey, got shape {image.shape}")
    return image


@dataclass(frozen=True)
class Prepared:
    """One preprocessed frame: the network input and the transform back to the frame."""

    x: np.ndarray  # network input, (1, 3, H, W) or (1, H, W, 3), the model's input dtype
    letterbox: Letterbox  # the transform between this frame and the network input


class Detector:
    """A model file (or any backend object with `.spec` and `.run`) plus thresholds and a per-stage timer.

    `detector(image)` is `detector.predict(image)`: an image path or a uint8 BGR / BGRA / grey array -> `Detections`
    in image pixels, carrying the model's class names. `detector.annotate(image, detections)` draws them.

    model_or_backend: path to a .onnx / .tflite file, or a backend object.
    conf:     minimum score (objectness * class probability) in 0..1.
    iou:      NMS IoU threshold in 0..1.
    max_det:  at most this many detections per image.
    threads:  inference threads (None = all cores); ignored for a backend object.
    classes:  keep only these classes (ids or names); None = all.
    agnostic: class-agnostic NMS.
    backend, names, layout, imgsz: forwarded to `load_backend` (runtime choice; spec of foreign models).
    track:    True (or a device.tracking.TrackerConfig): successive `predict` calls are frames of one video and
              their detections carry track ids (`self.tracker`; only objects on confirmed tracks are returned).
    """

    def __init__(self, model_or_backend, conf: float = 0.25, iou: float = 0.45, max_det: int = 300,
                 threads: Optional[int] = None, classes: Optional[Sequence[Union[int, str]]] = None,
                 agnostic: bool = False, backend: Optional[str] = None, names: Optional[Sequence[str]] = None,
                 layout: Optional[str] = None, imgsz=None, timer: Optional[StageTimer] = None,
                 track: Union[bool, TrackerConfig] = False):
        _check_range("conf", conf, 0.0, 1.0)
        _check_range("iou", iou, 0.0, 1.0)
        if int(max_det) < 1:
            raise EdgedetError(f"--max-det must be >= 1, got {max_det}")
        if isinstance(model_or_backend, (str, os.PathLike)):
            self.backend = load_backend(model_or_backend, backend=backend, threads=threads,
                                        names=names, layout=layout, imgsz=imgsz)
        else:
            self.backend = model_or_backend
        self.spec = self.backend.spec  # device.ModelSpec of the model
        self.conf = float(conf)
        self.iou = float(iou)
        self.max_det = int(max_det)
        self.classes = _class_ids(classes, self.spec.names)  # None or sorted class ids to keep
        self.agnostic = bool(agnostic)
        self.timer = timer or StageTimer()  # per-stage latency of every call
        # with track: each predict call is the next frame of one video, its detections carry track ids
        self.tracker = Tracker(track if isinstance(track, TrackerConfig) else None) if track else None

    # ---- the three steps, each timed

    def prepare(self, image: ImageLike) -> Prepared:
        """Image path or uint8 BGR (h, w, 3) / BGRA / grey frame -> `Prepared` network input (stage "preprocess")."""
        with self.timer.stage("preprocess"):
            x, letterbox = preprocess(as_bgr(image), self.spec)
        return Prepared(x, letterbox)

    def infer(self, prepared: Prepared) -> Dict[str, np.ndarray]:
        """Run the backend (stage "inference") -> raw outputs keyed by role name."""
        with self.timer.stage("inference"):
            return self.backend.run(prepared.x)

    def finish(self, outputs: Dict[str, np.ndarray], prepared: Prepared) -> Detections:
        """Raw outputs -> `Detections` in frame pixels with the model's class names (stages "decode", "nms",
        "masks" timed by postprocess; a two-stage model's backend brings its `heads`, timed as "roi_align" and
        "stage2")."""
        detections = postprocess(outputs, self.spec, prepared.letterbox, conf=self.conf, iou=self.iou,
                                 max_det=self.max_det, classes=self.classes, agnostic=self.agnostic, timer=self.timer,
                                 second_stage=getattr(self.backend, "heads", None))
        return detections.with_names(self.spec.names)

    def finish_semantic(self, outputs: Dict[str, np.ndarray], prepared: Prepared) -> np.ndarray:
        """Raw outputs -> (h, w) semantic class map of the frame (stage "semantic")."""
        with self.timer.stage("semantic"):
            return postprocess_semantic(outputs, self.spec, prepared.letterbox)

    def finish_semantic_to_draw(self, outputs: Dict[str, np.ndarray], prepared: Prepared) -> np.ndarray:
        """Raw outputs -> uint8 (h', w') semantic class map over the letterboxed frame only, at DRAW_MAP_SCALE of the
        network input's resolution ((h', w') = `drawing_map_box(prepared.letterbox).src_hw`), so it covers the
        whole frame: what drawing needs (`device.draw.draw_semantic` resizes its colours to the frame once), at a
        fraction of the frame-size map's cost (stage "semantic"). `finish_semantic` gives the frame-size map that
        evaluation needs."""
        with self.timer.stage("semantic"):
            return semantic_labels_to_draw(semantic_logits(outputs, self.spec), prepared.letterbox)

    # ---- one-call API

    def predict(self, image: ImageLike) -> Detections:
        """Image path or uint8 BGR / BGRA / grey (h, w[, C]) array -> `Detections` (boxes in image pixels, masks at
        image size if the model has them, the model's class names)."""
        prepared = self.prepare(image)
        return self.track(self.finish(self.infer(prepared), prepared))

    __call__ = predict

    def track(self, detections: Detections) -> Detections:
        """With `track`: one frame's detections -> those on confirmed tracks, with `tracker_ids` (stage "track",
        device.tracking.Tracker); without: the detections unchanged."""
        if self.tracker is None:
            return detections
        with self.timer.stage("track"):
            return self.tracker.update(detections)

    def predict_semantic(self, image: ImageLike) -> np.ndarray:
        """Image path or uint8 BGR / BGRA / grey array -> (h, w) semantic label map (index into
        spec.semantic_names)."""
        self._require_semantic()
        prepared = self.prepare(image)
        return self.finish_semantic(self.infer(prepared), prepared)

    def predict_all(self, image: ImageLike) -> Tuple[Detections, Optional[np.ndarray]]:
        """Both heads from one inference: (`Detections`, semantic map or None when the model has no "seg" output)."""
        prepared = self.prepare(image)
        outputs = self.infer(prepared)
        semantic = self.finish_semantic(outputs, prepared) if self.has_semantic else None
        return self.track(self.finish(outputs, prepared)), semantic

    def annotate(self, image: ImageLike, detections: Detections, semantic: Optional[np.ndarray] = None, *,
                 hide_labels: bool = False, hide_conf: bool = False, line_width: int = LINE_WIDTH) -> np.ndarray:
        """A new uint8 BGR (h, w, 3) copy of the image (path or array, as `predict` takes) with the detections drawn:
        masks, boxes and "name 0.87" labels (`device.draw`), named by the detections' names, else the model's.

        semantic: optional label map covering the image at any resolution (`predict_semantic`,
        `finish_semantic_to_draw`), drawn under the detections with a legend of the model's semantic classes;
        hide_labels, hide_conf, line_width: the `edgedet run` drawing switches."""
        return annotate(as_bgr(image), detections, detections.names or self.spec.names, semantic=semantic,
                        semantic_names=self.spec.semantic_names, hide_labels=hide_labels, hide_conf=hide_conf,
                        line_width=line_width, track_ids=detections.tracker_ids)

    @property
    def has_semantic(self) -> bool:
        return bool(self.spec.seg_output) and bool(self.spec.semantic_names)

    @property
    def names(self):
        return self.spec.names

    def describe(self) -> str:
        """One line: model file, layout, input size, precision, runtime and threads."""
        backend = self.backend
        runtime = backend.describe() if hasattr(backend, "describe") else type(backend).__name__
        h, w = self.spec.input_size_hw
        path = getattr(backend, "path", "")
        return f"{os.path.basename(str(path))} [{self.spec.layout} {h}x{w} {self.spec.precision}] on {runtime}"

    def _require_semantic(self) -> None:
        if not self.has_semantic:
            raise EdgedetError("this model has no semantic segmentation output (spec.seg_output is empty)")


# The semantic map drawing uses is at half the network input's resolution: a quarter of the pixels to resample
# and compare, still 4x the resolution of a stride-8 semantic head. Measured on the shipped model's int8 TFLite
# (bench video, 640x480): the map in 0.27 ms instead of 0.72 ms at the input's resolution (0.17 ms since the
# resampling matrices are cached), and 0.8% of the drawn pixels differ (class boundaries move by at most 2 frame
# pixels).
DRAW_MAP_SCALE = 0.5


def semantic_labels_to_draw(logits: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """Semantic logits (S, h, w) covering the network input -> uint8 (h', w') class map of the letterboxed frame at
    DRAW_MAP_SCALE of the input's resolution ((h', w') = drawing_map_box(letterbox).src_hw; int32 past 256
    classes): the logits resampled over that region only, bilinearly as for the frame-size map (device.masks),
    then the largest per pixel."""
    return argmax_planes(semantic_logits_in_frame(logits, drawing_map_box(letterbox)))


def argmax_planes(planes: np.ndarray) -> np.ndarray:
    """(S, h, w) scores -> (h, w) index of the largest plane per pixel, the first one on ties (as np.argmax);
    uint8 for S <= 256, else int32. A running maximum: S contiguous passes, a third of the time of np.argmax's
    strided reduction over axis 0."""
    best = planes[0].copy()
    labels = np.zeros(best.shape, dtype=np.uint8 if len(planes) <= 256 else np.int32)
    for index in range(1, len(planes)):
        np.copyto(labels, index, where=planes[index] > best)
        np.maximum(best, planes[index], out=best)
    return labels


def drawing_map_box(letterbox: Letterbox, scale: float = DRAW_MAP_SCALE) -> Letterbox:
    """The letterboxed frame's region of the network input, as a `Letterbox` whose "frame" is that region at
    `scale` times the input's resolution (at least 1 x 1): what maps into the frame's network input, seen at
    (a fraction of) the model's resolution. scale 1: the input's pixels one to one."""
    h, w = letterbox.resized_hw
    size_hw = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
    return Letterbox(size_hw, letterbox.dst_hw, letterbox.resized_hw, letterbox.top, letterbox.left,
                     letterbox.pad_value)


def _check_range(flag: str, value: float, low: float, high: float) -> None:
    if not (low <= float(value) <= high):
        raise EdgedetError(f"--{flag} must be in {low}..{high}, got {value}")


def _class_ids(classes, names: Sequence[str]) -> Optional[list]:
    """Class ids or names -> sorted unique ids; unknown ones raise naming them."""
    if classes is None:
        return None
    ids = []
    for item in classes:
        text = str(item).strip()
        if text.lstrip("-").isdigit():
            class_id = int(text)
            if not 0 <= class_id < len(names):
                raise EdgedetError(f"--classes: class id {class_id} is out of range (the model has {len(names)} classes)")
        elif text in names:
            class_id = list(names).index(text)
        else:
            raise EdgedetError(f"--classes: unknown class {text!r}; the model's classes are {', '.join(names)}")
        ids.append(class_id)
    return sorted(set(ids))
