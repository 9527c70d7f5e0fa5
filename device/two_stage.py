"""The second stage of a two-stage model on the device: region proposals from the RPN outputs, and the per-region
heads that run on their RoI-aligned features (device/layouts/rcnn.py decodes with both).

A two-stage artifact is copied like any other (`model.onnx`, or `model.tflite` and its sidecar JSON): the graph
that runs on the image is the file's own (image -> FPN features and raw RPN outputs), and the per-region heads
travel inside it, in the same format and precision: base64 in the ONNX metadata under HEADS_KEY, or a zip member
HEADS_MEMBER appended to the .tflite (the flatbuffer ignores trailing bytes; Ultralytics appends its metadata the
same way). The heads are one graph from a fixed batch of RoI features (R, F, P, P) (NHWC (R, P, P, F) in TFLite)
to class logits (R, 1+C), per-class box deltas (R, 4C) and mask logits (R, K, m, m) (NHWC (R, m, m, K)). R is the
spec's post-NMS proposal count; fewer proposals are padded with zeros and their rows dropped.
"""
from __future__ import annotations

import base64
import os
import zipfile
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .box_coder import decode_deltas
from .candidates import dequantize_array, sigmoid
from .errors import EdgedetError, first_line
from .library_logs import quiet_native_info
from .ort_session import open_ort_session
from .preprocessing import as_input
from .rcnn_anchors import anchors_per_level, flatten_rpn_level
from .spec import ModelSpec, level_part_name
from .suppression import nms
from .tflite_interpreter import import_tflite, tflite_details

HEAD_OUTPUTS = ("cls", "box", "mask")  # the heads graph's outputs, in order
HEADS_INPUT = "roi_features"  # the heads graph's input name (ONNX)
HEADS_KEY = "edgedet_heads"  # ONNX metadata key of the base64 heads graph
HEADS_MEMBER = "edgedet_heads.tflite"  # zip member appended to a .tflite holding the heads graph
RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # RPN deltas against anchors (Faster R-CNN)


def embedded_heads(model_path, metadata: Optional[Mapping[str, str]] = None) -> Optional[bytes]:
    """The heads graph carried by a model file (`metadata`: an ONNX file's custom metadata), or None."""
    path = Path(model_path)
    if path.suffix.lower() == ".tflite":
        try:
            with zipfile.ZipFile(path) as archive:
                return archive.read(HEADS_MEMBER) if HEADS_MEMBER in archive.namelist() else None
        except (zipfile.BadZipFile, OSError):
            return None
    text = (metadata or {}).get(HEADS_KEY)
    return base64.b64decode(text) if text else None


def open_region_heads(model_path, spec: ModelSpec, threads: Optional[int],
                      metadata: Optional[Mapping[str, str]] = None) -> "RegionHeads":
    """The heads carried by `model_path`; EdgedetError naming what is missing when it carries none."""
    content = embedded_heads(model_path, metadata)
    if content is None:
        where = f"zip member {HEADS_MEMBER}" if Path(model_path).suffix.lower() == ".tflite" else f"metadata {HEADS_KEY}"
        raise EdgedetError(f"{model_path} is the first stage of a two-stage ({spec.layout}) model but lacks its second "
                           f"stage, the per-region heads ({where}); re-export it with `edgedet export`")
    return RegionHeads(Path(model_path), content, spec, threads)


class RegionHeads:
    """Runs a heads graph (`content`, the bytes carried by the model file `path`): `heads(roi_features float32
    (n, F, P, P))` -> {"cls", "box", "mask"} float32 with n rows (mask NCHW (n, K, m, m)); n may be below the
    graph's fixed batch R (padded) but not above it."""

    def __init__(self, path: Path, content: bytes, spec: ModelSpec, threads: Optional[int]):
        self.path = path
        self.batch = int(spec.second_stage["post_nms_top_k"])
        self.threads = threads or os.cpu_count() or 1
        tflite = path.suffix.lower() == ".tflite"
        self._run = self._open_tflite(content) if tflite else self._open_onnx(content)

    def __call__(self, roi_features: np.ndarray) -> Dict[str, np.ndarray]:
        count = len(roi_features)
        if count > self.batch:
            raise EdgedetError(f"{self.path.name} takes at most {self.batch} RoIs, got {count}")
        return {name: value[:count] for name, value in self._run(padded_rows(roi_features, self.batch)).items()}

    def _open_onnx(self, content: bytes):
        try:
            session = open_ort_session(content, self.threads)
        except EdgedetError:
            raise
        except Exception as error:
            raise EdgedetError(f"onnxruntime cannot load the heads of {self.path}: {first_line(error)}") from None
        names = [o.name for o in session.get_outputs()]
        if sorted(names) != sorted(HEAD_OUTPUTS):
            raise EdgedetError(f"the heads of {self.path} have outputs {names}, expected {list(HEAD_OUTPUTS)}")
        input_name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> Dict[str, np.ndarray]:
            return dict(zip(names, session.run(names, {input_name: x})))
        return run

    def _open_tflite(self, content: bytes):
        interpreter_class, runtime = import_tflite()
        try:
            with quiet_native_info():
                interpreter = interpreter_class(model_content=content, num_threads=self.threads)
                interpreter.allocate_tensors()
        except Exception as error:
            raise EdgedetError(f"{runtime} cannot load the heads of {self.path}: {first_line(error)}") from None
        (given,), outputs = interpreter.get_input_details(), interpreter.get_output_details()
        given_details = tflite_details(given)
        roles = {role: (d["index"], tflite_details(d).quant) for role, d in _tflite_roles(outputs, self.path).items()}

        def run(x: np.ndarray) -> Dict[str, np.ndarray]:
            interpreter.set_tensor(given["index"], as_input(x.transpose(0, 2, 3, 1), given_details))
            interpreter.invoke()
            values = {role: dequantize_array(interpreter.get_tensor(index), quant, role)
                      for role, (index, quant) in roles.items()}
            values["mask"] = values["mask"].transpose(0, 3, 1, 2)
            return values
        return run


def padded_rows(rows: np.ndarray, batch: int) -> np.ndarray:
    """(n, ...) rows, n <= batch -> float32 (batch, ...): the rows, then zeros (the heads' fixed batch)."""
    out = np.zeros((batch, *rows.shape[1:]), np.float32)
    out[:len(rows)] = rows
    return out


def _tflite_roles(outputs: Sequence[dict], path: Path) -> Dict[str, dict]:
    """Output details by role: the 4-D one is "mask"; of the 2-D ones the one with 4C channels is "box" (1 + C
    and 4C never coincide for a whole C)."""
    flat = [d for d in outputs if len(d["shape"]) == 2]
    masks = [d for d in outputs if len(d["shape"]) == 4]
    if len(flat) != 2 or len(masks) != 1:
        raise EdgedetError(f"the heads of {path} have output shapes {[list(d['shape']) for d in outputs]}")
    a, b = flat
    cls, box = (a, b) if (a["shape"][1] - 1) * 4 == b["shape"][1] else (b, a)
    return {"cls": cls, "box": box, "mask": masks[0]}


# ---------------------------------------------------------------------------------------------- proposals


def select_proposals(logits_per_level: Sequence[np.ndarray], deltas_per_level: Sequence[np.ndarray],
                     anchors_per_level_xyxy: Sequence[np.ndarray], size_hw: Tuple[int, int], settings: Mapping
                     ) -> np.ndarray:
    """One image's RPN outputs per level, logits (N_l,) and deltas (N_l, 4), with the level's anchors (N_l, 4) ->
    float32 (P, 4) xyxy proposals in input pixels, by descending objectness: per level the settings'
    "pre_nms_top_k" highest logits decoded (RPN_BOX_WEIGHTS) and clipped to the input, boxes with a side
    below "min_side" dropped, one NMS at "nms_iou" over all levels, at most "post_nms_top_k". The NumPy twin of
    edgedet.models.rcnn.select_proposals."""
    boxes, scores = [], []
    for logits, deltas, anchors in zip(logits_per_level, deltas_per_level, anchors_per_level_xyxy):
        k = min(int(settings["pre_nms_top_k"]), len(logits))
        top = np.argpartition(-logits, k - 1)[:k] if k < len(logits) else np.arange(len(logits))
        decoded = decode_deltas(deltas[top], anchors[top], RPN_BOX_WEIGHTS)
        boxes.append(clip_boxes(decoded, size_hw))
        scores.append(sigmoid(logits[top]))  # NMS ranks by probability, as training does (ties included)
    boxes, scores = np.concatenate(boxes), np.concatenate(scores)
    wide = ((boxes[:, 2:] - boxes[:, :2]) >= np.float32(settings["min_side"])).all(axis=1) & np.isfinite(scores)
    boxes, scores = boxes[wide], scores[wide]
    kept = nms(boxes, scores, float(settings["nms_iou"]), max_det=int(settings["post_nms_top_k"]))
    return boxes[kept]


def clip_boxes(xyxy: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """(N, 4) corners clipped to a (height, width) input."""
    limits = np.array([size_hw[1], size_hw[0], size_hw[1], size_hw[0]], dtype=np.float32)
    return np.clip(xyxy, 0, limits).astype(np.float32, copy=False)


def rpn_levels(outputs: Mapping[str, np.ndarray], spec: ModelSpec, levels: Sequence[str]):
    """Per level the flattened (logits (N_l,), deltas (N_l, 4)) of one image, in the anchor order."""
    flat = []
    for level in levels:
        logits, deltas = flatten_rpn_level(outputs[level_part_name(level, "rpn_obj")],
                                           outputs[level_part_name(level, "rpn_box")])
        flat.append((logits[0], deltas[0]))
    return flat


_ANCHORS: Dict[tuple, list] = {}  # one spec's anchors, built once per process


def spec_anchors(spec: ModelSpec) -> list:
    """The RPN anchors of every level for the spec's input size (edgedet.device.rcnn_anchors), cached."""
    settings = spec.second_stage
    key = (tuple(spec.input_size_hw), tuple(spec.strides), repr(settings["anchor_sizes"]),
           repr(settings["anchor_ratios"]))
    if key not in _ANCHORS:
        _ANCHORS[key] = anchors_per_level(spec.input_size_hw, spec.strides, settings["anchor_sizes"],
                                          settings["anchor_ratios"])
    return _ANCHORS[key]
