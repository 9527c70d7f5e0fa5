"""The "yolov5-split" layout: an anchor-based YOLOv5 head cut before its decode (`edgedet export MODEL.onnx`).

Per FPN level (named by spec.level_outputs, finest first, strides spec.strides, K anchors spec.anchors in input
pixels) one output "<level>_raw", NCHW (1, K*(5+C), H/s, W/s) or NHWC (1, H/s, W/s, K*(5+C)): per anchor the raw
logits (tx, ty, tw, th, objectness, class_1..class_C) of the level's last convolution. What the exporter's graph
did after it happens here: the sigmoid, the grid offsets, the anchor sizes, the concatenation. Recognised by those
output names.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..candidates import Candidates, best_class, dequantized_sigmoid
from ..errors import EdgedetError
from ..spec import ModelSpec, level_part_name
from .shapes import Shape, anchor_boxes_xyxy, without_masks, without_prototypes

NAME = "yolov5-split"
MIN_SPEC_VERSION = 2
FROM_SHAPES = False  # anchors, strides and level names are in the metadata written by the cut
PART = "raw"


def recognises(shapes: Mapping[str, Shape], num_classes: int) -> bool:
    """One or more 4-D "<level>_raw" outputs and nothing else."""
    return bool(shapes) and all(name.endswith("_" + PART) and len(shape) == 4 for name, shape in shapes.items())


def spec_fields(shapes: Mapping[str, Shape], num_classes: int) -> dict:
    raise EdgedetError("a yolov5-split model needs the metadata its cut wrote (anchors, strides, level names); "
                       "cut the YOLOv5 file again with `edgedet export MODEL.onnx`")


def output_shapes(spec: ModelSpec, tensor_layout: str) -> Dict[str, Shape]:
    """Role name -> shape of every output at spec.input_size_hw, in "NCHW" or "NHWC"."""
    h, w = spec.input_size_hw
    d = spec.num_anchors * (5 + spec.num_classes)
    return {level_part_name(level, PART): (1, d, h // s, w // s) if tensor_layout == "NCHW" else (1, h // s, w // s, d)
            for level, s in zip(spec.level_outputs, spec.strides)}


has_masks = without_masks
prototypes = without_prototypes


def decode(outputs: Mapping[str, np.ndarray], spec: ModelSpec, min_score: Optional[float] = None) -> Candidates:
    """All candidates of one image, ordered by level (finest first), then anchor k, row i, column j.

    For anchor k (anchor_w, anchor_h in input pixels) at cell (row i, column j) of a level with stride s:
        cx = (j + 2*sigmoid(tx) - 0.5) * s          cy = (i + 2*sigmoid(ty) - 0.5) * s
        w  = anchor_w * (2*sigmoid(tw))**2          h  = anchor_h * (2*sigmoid(th))**2
        score = sigmoid(objectness) x best sigmoid(class). Float or integer outputs.
    min_score: if given, only candidates with objectness > min_score are decoded (score <= objectness).
    """
    levels = len(spec.level_outputs)
    if not levels or not len(spec.anchors) == len(spec.strides) == levels:
        raise EdgedetError(f"{NAME} model spec needs one anchor list and one stride per level: levels "
                           f"{spec.level_outputs}, strides {spec.strides}, {len(spec.anchors)} anchor lists")
    return Candidates.concatenate([_decode_level(outputs, name, spec, stride, anchors, min_score)
                                   for name, stride, anchors in zip(level_outputs(outputs, spec), spec.strides,
                                                                    spec.anchors)])


def level_outputs(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> List[str]:
    names = [level_part_name(level, PART) for level in spec.level_outputs]
    missing = [name for name in names if name not in outputs]
    if missing:
        raise EdgedetError(f"model outputs {sorted(outputs)} lack the {NAME} head outputs {missing}")
    return names


def _decode_level(outputs: Mapping[str, np.ndarray], name: str, spec: ModelSpec, stride: int, anchors,
                  min_score: Optional[float]) -> Candidates:
    anchors_wh = np.asarray(anchors, dtype=np.float32).reshape(-1, 2)
    k, features = len(anchors_wh), 5 + spec.num_classes
    view, (h, w) = _anchor_view(outputs[name], k, features, spec.output_layout == "NHWC", name)  # (K, D, H*W)
    quant = spec.output_quant.get(name)
    objectness = dequantized_sigmoid(view[:, 4, :], quant, name).reshape(-1)
    index = np.arange(objectness.size) if min_score is None else np.flatnonzero(objectness > np.float32(min_score))
    anchor, cell = np.divmod(index, h * w)
    values = dequantized_sigmoid(view[anchor, :, cell], quant, name)  # (n, D)
    best, ids = best_class(values[:, 5:])
    xyxy = anchor_boxes_xyxy(values[:, :4], anchor, cell, w, stride, anchors_wh)
    return Candidates(xyxy, objectness[index] * best, ids)


def _anchor_view(raw: np.ndarray, k: int, features: int, nhwc: bool, name: str) -> Tuple[np.ndarray, Tuple[int, int]]:
    """(1, K*D, H, W) NCHW or (1, H, W, K*D) NHWC -> a (K, D, H*W) view and (H, W)."""
    array = np.asarray(raw)
    array = array[0] if array.ndim == 4 else array
    channels = k * features
    if array.ndim != 3 or (array.shape[2] if nhwc else array.shape[0]) != channels:
        raise EdgedetError(f"{NAME} output {name!r} has shape {np.shape(raw)}, expected {channels} channels "
                           f"({k} anchors of {features} values)")
    if nhwc:
        h, w = array.shape[:2]
        return array.reshape(h * w, k, features).transpose(1, 2, 0), (h, w)
    h, w = array.shape[1:]
    return array.reshape(k, features, h * w), (h, w)
