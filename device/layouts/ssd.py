"""The "ssd" layout: this project's SSD head (Liu et al. 2016, as in the lecture): default boxes on several feature
maps, no top-down path, softmax over background plus classes.

Per level (named by spec.level_outputs, finest first, with spec.strides) two outputs, NCHW (1, K*D, H/s, W/s) or NHWC
(1, H/s, W/s, K*D), with per default box k the D channels
    "<level>_loc"   D=4    (dx, dy, dw, dh) offsets from the default box (device/box_coder.py, weights BOX_WEIGHTS)
    "<level>_conf"  D=1+C  logits of (background, class_1..class_C)
Default box k of a level is spec.anchors[level][k] = (w, h) in input pixels, centred on each cell's centre
((j + 0.5) * s, (i + 0.5) * s). Candidates are ordered by level, then default box k, then row i, then column j;
the training loss (edgedet/ssd_loss.py) uses `default_boxes_xyxy` for the same boxes in the same order.
Recognised by its output names, decoded only with the model's edgedet metadata (its default boxes).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..box_coder import decode_deltas
from ..boxes import cell_centres
from ..candidates import Candidates, best_class, dequantize_array, softmax
from ..errors import EdgedetError
from ..spec import ModelSpec, level_part_name
from .shapes import Shape, level_output_shapes, names_levels, without_masks, without_prototypes

NAME = "ssd"
MIN_SPEC_VERSION = 2
FROM_SHAPES = False  # the default boxes are in the edgedet metadata only
PARTS = ("loc", "conf")  # the outputs of one level, named "<level>_<part>"
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # SSD's variances (0.1, 0.2) as box-coder weights

has_masks = without_masks
prototypes = without_prototypes


def recognises(shapes: Mapping[str, Shape], num_classes: int) -> bool:
    """The head's outputs by name: for one or more levels a 4-D "<level>_loc" and a 4-D "<level>_conf"."""
    return names_levels(shapes, "loc", "conf")


def spec_fields(shapes: Mapping[str, Shape], num_classes: int) -> dict:
    raise EdgedetError("the ssd layout needs the model's edgedet metadata (its default boxes and strides); "
                       "re-export the model from its checkpoint")


def part_channels(spec: ModelSpec, part: str) -> int:
    """Channels of one level part: loc K*4, conf K*(1+C)."""
    return spec.num_anchors * (4 if part == "loc" else 1 + spec.num_classes)


def output_shapes(spec: ModelSpec, tensor_layout: str) -> Optional[Dict[str, Shape]]:
    """Role name -> shape of every output, in forward order (each level's loc, then conf)."""
    return level_output_shapes(spec, {part: part_channels(spec, part) for part in PARTS}, tensor_layout)


def default_boxes_xyxy(size_hw: Tuple[int, int], strides: Sequence[int],
                       boxes_wh: Sequence[Sequence[Tuple[float, float]]]) -> np.ndarray:
    """float32 (N, 4) xyxy default boxes in input pixels of every level, in candidate order (level, box k, row,
    column); boxes_wh: per level K (w, h)."""
    parts = []
    for stride, level_wh in zip(strides, boxes_wh):
        centres = cell_centres(size_hw, stride)  # (H*W, 2), row-major
        for w, h in level_wh:
            half = np.array([w / 2, h / 2])
            parts.append(np.concatenate([centres - half, centres + half], axis=1))
    return np.concatenate(parts).astype(np.float32)


def decode(outputs: Mapping[str, np.ndarray], spec: ModelSpec, min_score: Optional[float] = None) -> Candidates:
    """All candidates of one image (those scoring > min_score when given), in candidate order:
    score = softmax probability of the best non-background class, box = the default box moved by its offsets."""
    levels = _level_names(outputs, spec)
    defaults = _default_boxes(spec)
    parts, offset = [], 0
    for names, stride in zip(levels, spec.strides):
        rows, cols = spec.input_size_hw[0] // stride, spec.input_size_hw[1] // stride
        count = spec.num_anchors * rows * cols
        parts.append(_decode_level(outputs, names, spec, defaults[offset:offset + count], min_score))
        offset += count
    return Candidates.concatenate(parts)


def _level_names(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> List[Dict[str, str]]:
    if not spec.anchors or len(spec.anchors) != len(spec.strides):
        raise EdgedetError(f"ssd model spec needs one default-box list per stride {spec.strides}, "
                           f"got {len(spec.anchors)}")
    levels = [{part: level_part_name(level, part) for part in PARTS} for level in spec.level_outputs]
    missing = [name for parts in levels for name in parts.values() if name not in outputs]
    if missing:
        raise EdgedetError(f"model outputs {sorted(outputs)} lack the ssd head outputs {missing}")
    return levels


_DEFAULTS_CACHE: Dict[tuple, np.ndarray] = {}  # one spec's default boxes, built once per process


def _default_boxes(spec: ModelSpec) -> np.ndarray:
    key = (tuple(spec.input_size_hw), tuple(spec.strides), tuple(tuple(map(tuple, level)) for level in spec.anchors))
    if key not in _DEFAULTS_CACHE:
        _DEFAULTS_CACHE[key] = default_boxes_xyxy(spec.input_size_hw, spec.strides, spec.anchors)
    return _DEFAULTS_CACHE[key]


def _decode_level(outputs: Mapping[str, np.ndarray], names: Mapping[str, str], spec: ModelSpec,
                  defaults_xyxy: np.ndarray, min_score: Optional[float]) -> Candidates:
    """One level: (K*H*W) candidates from its loc and conf outputs and its default boxes (candidate order)."""
    nhwc = spec.output_layout == "NHWC"
    k = spec.num_anchors
    logits = _per_candidate(outputs[names["conf"]], k, nhwc, part_channels(spec, "conf"), names["conf"])
    logits = dequantize_array(logits, spec.output_quant.get(names["conf"]), names["conf"])  # (N, 1+C)
    best, ids = best_class(softmax(logits)[:, 1:])  # column 0 is the background
    index = np.arange(len(best)) if min_score is None else np.flatnonzero(best > np.float32(min_score))
    loc = _per_candidate(outputs[names["loc"]], k, nhwc, part_channels(spec, "loc"), names["loc"])[index]
    deltas = dequantize_array(loc, spec.output_quant.get(names["loc"]), names["loc"])
    xyxy = decode_deltas(deltas, defaults_xyxy[index], BOX_WEIGHTS)
    return Candidates(xyxy, best[index], ids[index])


def _per_candidate(raw: np.ndarray, k: int, nhwc: bool, channels: int, name: str) -> np.ndarray:
    """(1, K*D, H, W) NCHW or (1, H, W, K*D) NHWC -> (K*H*W, D) rows in candidate order (box k, row, column)."""
    array = np.asarray(raw)
    array = array[0] if array.ndim == 4 else array
    if array.ndim != 3 or (array.shape[2] if nhwc else array.shape[0]) != channels:
        raise EdgedetError(f"ssd output {name!r} has shape {np.shape(raw)}, expected {channels} channels "
                           f"({k} default boxes)")
    if nhwc:
        h, w = array.shape[:2]
        return array.reshape(h * w, k, channels // k).transpose(1, 0, 2).reshape(k * h * w, channels // k)
    h, w = array.shape[1:]
    return array.reshape(k, channels // k, h * w).transpose(0, 2, 1).reshape(k * h * w, channels // k)

