"""`Detector`: preprocess -> backend.run -> postprocess around one backend, every stage timed.

    detector = Detector("model_int8.tflite", conf=0.3, threads=4)
    detections = detector.predict(frame_bgr)          # device.Detections in frame pixels
    print(detector.timer.summary()["inference"])      # p50/p90/p99 in ms

The three steps are also public (`prepare`, `infer`, `finish`) so the run loop can pipeline them:
postprocess of frame t overlaps inference of frame t+1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .backends import load_backend
from .detections import Detections
from .errors import EdgedetError
from .latency import StageTimer
from .letterbox import Letterbox
from .postprocessing import postprocess, postprocess_semantic
from .preprocessing import preprocess


@dataclass(frozen=True)
class Prepared:
    """One preprocessed frame: the network input and the transform back to the frame."""

    x: np.ndarray  # network input, (1, 3, H, W) or (1, H, W, 3), the model's input dtype
    letterbox: Letterbox  # the transform between this frame and the network input


class Detector:
    """A model file (or any backend object with `.spec` and `.run`) plus thresholds and a per-stage timer.

    model_or_backend: path to a .onnx / .tflite file, or a backend object.
    conf:     minimum score (objectness * class probability) in 0..1.
    iou:      NMS IoU threshold in 0..1.
    max_det:  at most this many detections per image.
    threads:  inference threads (None = all cores); ignored for a backend object.
    classes:  keep only these classes (ids or names); None = all.
    agnostic: class-agnostic NMS.
    backend, names, layout, imgsz: forwarded to `load_backend` (runtime choice; spec of foreign models).
    """

    def __init__(self, model_or_backend, conf: float = 0.25, iou: float = 0.45, max_det: int = 300,
                 threads: Optional[int] = None, classes: Optional[Sequence[Union[int, str]]] = None,
                 agnostic: bool = False, backend: Optional[str] = None, names: Optional[Sequence[str]] = None,
                 layout: Optional[str] = None, imgsz=None, timer: Optional[StageTimer] = None):
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

    # ---- the three steps, each timed

    def prepare(self, image_bgr: np.ndarray) -> Prepared:
        """uint8 BGR (h, w, 3) frame -> `Prepared` network input (stage "preprocess")."""
        with self.timer.stage("preprocess"):
            x, letterbox = preprocess(image_bgr, self.spec)
        return Prepared(x, letterbox)

    def infer(self, prepared: Prepared) -> Dict[str, np.ndarray]:
        """Run the backend (stage "inference") -> raw outputs keyed by role name."""
        with self.timer.stage("inference"):
            return self.backend.run(prepared.x)

    def finish(self, outputs: Dict[str, np.ndarray], prepared: Prepared) -> Detections:
        """Raw outputs -> `Detections` in frame pixels (stages "decode", "nms", "masks" timed by postprocess)."""
        return postprocess(outputs, self.spec, prepared.letterbox, conf=self.conf, iou=self.iou,
                           max_det=self.max_det, classes=self.classes, agnostic=self.agnostic, timer=self.timer)

    def finish_semantic(self, outputs: Dict[str, np.ndarray], prepared: Prepared) -> np.ndarray:
        """Raw outputs -> (h, w) semantic class map of the frame (stage "semantic")."""
        with self.timer.stage("semantic"):
            return postprocess_semantic(outputs, self.spec, prepared.letterbox)

    # ---- one-call API

    def predict(self, image_bgr: np.ndarray) -> Detections:
        """uint8 BGR (h, w, 3) frame -> `Detections` (boxes in frame pixels, masks at frame size if the model has them)."""
        prepared = self.prepare(image_bgr)
        return self.finish(self.infer(prepared), prepared)

    def predict_semantic(self, image_bgr: np.ndarray) -> np.ndarray:
        """uint8 BGR (h, w, 3) frame -> (h, w) semantic label map (index into spec.semantic_names)."""
        self._require_semantic()
        prepared = self.prepare(image_bgr)
        return self.finish_semantic(self.infer(prepared), prepared)

    def predict_all(self, image_bgr: np.ndarray) -> Tuple[Detections, Optional[np.ndarray]]:
        """Both heads from one inference: (`Detections`, semantic map or None when the model has no "seg" output)."""
        prepared = self.prepare(image_bgr)
        outputs = self.infer(prepared)
        semantic = self.finish_semantic(outputs, prepared) if self.has_semantic else None
        return self.finish(outputs, prepared), semantic

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
