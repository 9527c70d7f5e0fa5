"""The "yolov8-split" layout: a YOLOv8 / YOLO11 (-seg) head cut before its decode (`edgedet export MODEL.onnx`).

Per FPN level (named by spec.level_outputs, finest first, strides spec.strides) two or three outputs,
NCHW (1, D, H/s, W/s) or NHWC (1, H/s, W/s, D):
    "<level>_dist"  D=4R   box distribution logits: for each side (left, top, right, bottom) R = spec.reg_max bins
    "<level>_cls"   D=C    class logits
    "<level>_coef"  D=M    mask coefficients (-seg only)
plus the prototypes (spec.proto_output, (1, M, H/4, W/4), after the model's own activation) for -seg models.
What the exporter's graph did after these tensors happens here: the DFL softmax and its expectation, the
distance-to-box arithmetic around cell centres, the stride, the class sigmoid. Each tensor has its own int8
scale in a quantized file. Recognised by those output names.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..candidates import Candidates, dequantize_array, sigmoid
from ..errors import EdgedetError
from ..spec import ModelSpec, level_part_name
from .shapes import Shape, has_spec_prototypes, names_levels, spec_prototypes

NAME = "yolov8-split"
MIN_SPEC_VERSION = 2
FROM_SHAPES = False  # strides, level names and R are in the metadata written by the cut
PARTS = ("dist", "cls", "coef")


def recognises(shapes: Mapping[str, Shape], num_classes: int) -> bool:
    """For one or more levels a 4-D "<level>_dist" and a 4-D "<level>_cls" output."""
    return names_levels(shapes, "dist", "cls")


def spec_fields(shapes: Mapping[str, Shape], num_classes: int) -> dict:
    raise EdgedetError("a yolov8-split model needs the metadata its cut wrote (strides, level names, DFL bins); "
                       "cut the Ultralytics file again with `edgedet export MODEL.onnx`")


def parts(spec: ModelSpec) -> Tuple[str, ...]:
    """The outputs of each level: dist and cls, plus coef with mask coefficients."""
    return PARTS if spec.num_mask_coefs else PARTS[:2]


def output_shapes(spec: ModelSpec, tensor_layout: str) -> Dict[str, Shape]:
    """Role name -> shape of every output at spec.input_size_hw, in "NCHW" or "NHWC"."""
    h, w = spec.input_size_hw
    channels = {"dist": 4 * spec.reg_max, "cls": spec.num_classes, "coef": spec.num_mask_coefs}

    def shape(d: int, stride: int) -> Shape:
        return (1, d, h // stride, w // stride) if tensor_layout == "NCHW" else (1, h // stride, w // stride, d)

    shapes = {level_part_name(level, part): shape(channels[part], stride)
              for level, stride in zip(spec.level_outputs, spec.strides) for part in parts(spec)}
    if spec.proto_output:
        shapes[spec.proto_output] = shape(spec.num_mask_coefs, 4)
    return shapes


def has_masks(spec: ModelSpec) -> bool:
    return has_spec_prototypes(spec)


def prototypes(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> Optional[np.ndarray]:
    """The prototypes float32 (M, h, w) (dequantized if integer), or None without a mask head."""
    return spec_prototypes(outputs, spec)


def decode(outputs: Mapping[str, np.ndarray], spec: ModelSpec, min_score: Optional[float] = None) -> Candidates:
    """All candidates of one image, ordered by level (finest first), then row, then column (the exporter's order).

    At cell (row i, column j) of a level with stride s, with p_side = softmax over the R bins of that side:
        l, t, r, b = sum_k k * p_side[k]                   (distances in cells)
        xyxy = ((j + 0.5 - l) * s, (i + 0.5 - t) * s, (j + 0.5 + r) * s, (i + 0.5 + b) * s)
        score = sigmoid(best class logit); mask coefficients linear.
    Float or integer outputs (spec.output_quant). Only the class logits are read in full; with min_score, the
    box and mask values are gathered for the cells whose best class scores above it.
    """
    if spec.reg_max < 1:
        raise EdgedetError(f"{NAME} model spec has no DFL bin count (reg_max {spec.reg_max})")
    if not spec.level_outputs or len(spec.level_outputs) != len(spec.strides):
        raise EdgedetError(f"{NAME} model spec needs one stride per level, got levels {spec.level_outputs} and "
                           f"strides {spec.strides}")
    return Candidates.concatenate([_decode_level(outputs, names, spec, stride, min_score)
                                   for names, stride in zip(level_outputs(outputs, spec), spec.strides)])


def level_outputs(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> List[Dict[str, str]]:
    """Per level (finest first) {part: output name}, all present in `outputs`."""
    levels = [{part: level_part_name(level, part) for part in parts(spec)} for level in spec.level_outputs]
    missing = [name for names in levels for name in names.values() if name not in outputs]
    if missing:
        raise EdgedetError(f"model outputs {sorted(outputs)} lack the {NAME} head outputs {missing}")
    return levels


def _decode_level(outputs: Mapping[str, np.ndarray], names: Mapping[str, str], spec: ModelSpec, stride: int,
                  min_score: Optional[float]) -> Candidates:
    nhwc = spec.output_layout == "NHWC"
    cls_view, (h, w) = _cells_by_channel(outputs[names["cls"]], nhwc, spec.num_classes, names["cls"])
    logits = dequantize_array(cls_view, spec.output_quant.get(names["cls"]), names["cls"])  # (C, H*W)
    best_logit = logits.max(axis=0)
    if min_score is None:
        cells = np.arange(h * w)
    else:
        cells = np.flatnonzero(best_logit > _logit_below(min_score))
    scores = sigmoid(best_logit[cells])
    class_ids = logits[:, cells].argmax(axis=0).astype(np.int32)
    dist = _gather(outputs, names["dist"], cells, nhwc, 4 * spec.reg_max, spec)  # (n, 4R)
    ltrb = _expected_bins(dist.reshape(len(cells), 4, spec.reg_max))
    row, col = np.divmod(cells, w)
    centre_x, centre_y = col.astype(np.float32) + np.float32(0.5), row.astype(np.float32) + np.float32(0.5)
    s = np.float32(stride)
    xyxy = np.stack([(centre_x - ltrb[:, 0]) * s, (centre_y - ltrb[:, 1]) * s,
                     (centre_x + ltrb[:, 2]) * s, (centre_y + ltrb[:, 3]) * s], axis=1)
    coefs = (np.ascontiguousarray(_gather(outputs, names["coef"], cells, nhwc, spec.num_mask_coefs, spec))
             if "coef" in names else None)
    return Candidates(xyxy, scores, class_ids, coefs)


def _logit_below(score: float) -> np.float32:
    """A float32 logit at or just below logit(score): every cell whose sigmoid exceeds `score` lies above it (one
    step lower than the rounded logit, so float32 rounding never drops one; the caller filters by score again)."""
    if score <= 0:
        return np.float32(-np.inf)
    if score >= 1:
        return np.float32(np.inf)
    return np.nextafter(np.float32(np.log(score / (1 - score))), np.float32(-np.inf))


def _expected_bins(logits: np.ndarray) -> np.ndarray:
    """(n, 4, R) bin logits -> (n, 4) expected bin index under the softmax over R (the DFL integral)."""
    shifted = logits - logits.max(axis=2, keepdims=True)
    weights = np.exp(shifted)
    bins = np.arange(logits.shape[2], dtype=np.float32)
    return (weights @ bins) / weights.sum(axis=2)


def _gather(outputs: Mapping[str, np.ndarray], name: str, cells: np.ndarray, nhwc: bool, channels: int,
            spec: ModelSpec) -> np.ndarray:
    """float32 (n, D) values of output `name` at the given cells (dequantized after gathering)."""
    view, _ = _cells_by_channel(outputs[name], nhwc, channels, name)
    return dequantize_array(view[:, cells].T, spec.output_quant.get(name), name)


def _cells_by_channel(raw: np.ndarray, nhwc: bool, channels: int, name: str) -> Tuple[np.ndarray, Tuple[int, int]]:
    """(1, D, H, W) NCHW or (1, H, W, D) NHWC -> a (D, H*W) view and (H, W); checks the channel count."""
    array = np.asarray(raw)
    array = array[0] if array.ndim == 4 else array
    if array.ndim != 3 or (array.shape[2] if nhwc else array.shape[0]) != channels:
        raise EdgedetError(f"{NAME} output {name!r} has shape {np.shape(raw)}, expected {channels} channels")
    if nhwc:
        h, w = array.shape[:2]
        return array.reshape(h * w, channels).T, (h, w)
    h, w = array.shape[1:]
    return array.reshape(channels, h * w), (h, w)
