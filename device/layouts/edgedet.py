"""The "edgedet" layout: this project's raw multi-scale anchor head.

Per FPN level (named by spec.level_outputs, finest first) two or three outputs, NCHW (1, K*D, H/s, W/s) or NHWC
(1, H/s, W/s, K*D), with per anchor k the D channels
    "<level>_box"   D=4    (tx, ty, tw, th) raw regressions
    "<level>_score" D=1+C  (to, tc_1..tc_C) raw logits
    "<level>_mask"  D=M    mask coefficients (only with an instance-mask head)
plus optional semantic logits (spec.seg_output) and mask prototypes (spec.proto_output, (1, M, H/4, W/4)).
Recognised by those output names; its anchors, strides and level names come only from its edgedet metadata.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..candidates import Candidates, best_class, dequantize_array, dequantized_sigmoid
from ..errors import EdgedetError
from ..spec import ModelSpec, level_part_name
from .shapes import Shape, anchor_boxes_xyxy, has_spec_prototypes, names_levels, spec_prototypes

NAME = "edgedet"
MIN_SPEC_VERSION = 2  # version 1 had one combined output per level
FROM_SHAPES = False  # anchors and level names are in the edgedet metadata only


def recognises(shapes: Mapping[str, Shape], num_classes: int) -> bool:
    """The head's outputs by name: for one or more levels a 4-D "<level>_box" and a 4-D "<level>_score"."""
    return names_levels(shapes, "box", "score")


def spec_fields(shapes: Mapping[str, Shape], num_classes: int) -> dict:
    """Never from shapes alone: raises, naming what only the edgedet metadata holds."""
    raise EdgedetError("the edgedet layout needs the model's edgedet metadata (its anchors, strides and level "
                       "names); re-export the model from its checkpoint")


def output_shapes(spec: ModelSpec, tensor_layout: str) -> Optional[Dict[str, Shape]]:
    """Role name -> shape of every output the spec describes, for matching the file's tensors to roles."""
    return spec.edgedet_output_shapes(tensor_layout)


def has_masks(spec: ModelSpec) -> bool:
    return has_spec_prototypes(spec)


def prototypes(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> Optional[np.ndarray]:
    """The prototypes float32 (M, h, w) (dequantized if integer), or None without a mask head."""
    return spec_prototypes(outputs, spec)


def decode(outputs: Mapping[str, np.ndarray], spec: ModelSpec, min_score: Optional[float] = None) -> Candidates:
    """All candidates of one image, ordered by level (finest first), then anchor k, row i, column j.

    For anchor k (anchor_w, anchor_h in input pixels) at cell (row i, column j) of a level with stride s:
        cx = (j + 2*sigmoid(tx) - 0.5) * s          cy = (i + 2*sigmoid(ty) - 0.5) * s
        w  = anchor_w * (2*sigmoid(tw))**2          h  = anchor_h * (2*sigmoid(th))**2
        score = sigmoid(to) x best sigmoid(tc); mask coefficients = m (linear); xyxy in input pixels.
    Outputs may be float or integer (spec.output_quant). Only the objectness channel is read in full; the other
    values are gathered and dequantized for the candidates decoded.
    min_score: if given, only candidates with objectness > min_score are decoded (score <= objectness, so every
    candidate scoring > min_score is kept, with exactly the values of the full decode); the caller still applies
    its threshold. tests/device/test_decode.py keeps the plain per-level reference this must equal bit for bit.
    """
    if not spec.anchors or len(spec.anchors) != len(spec.strides):
        raise EdgedetError(f"edgedet model spec needs one anchor list per stride {spec.strides}, "
                           f"got {len(spec.anchors)}")
    levels = level_outputs(outputs, spec)
    return Candidates.concatenate([_decode_level(outputs, names, spec, stride, anchors, min_score)
                                   for names, stride, anchors in zip(levels, spec.strides, spec.anchors)])


def level_outputs(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> List[Dict[str, str]]:
    """Per level (finest first) {part: output name} for the parts of spec.head_parts, all present in `outputs`."""
    levels = [{part: level_part_name(level, part) for part in spec.head_parts} for level in spec.level_outputs]
    missing = [name for parts in levels for name in parts.values() if name not in outputs]
    if missing:
        raise EdgedetError(f"model outputs {sorted(outputs)} lack the edgedet head outputs {missing}")
    return levels


def _decode_level(outputs: Mapping[str, np.ndarray], names: Mapping[str, str], spec: ModelSpec, stride: int,
                  anchors, min_score: Optional[float]) -> Candidates:
    """One level's candidates (those with objectness > min_score when given), in anchor, row, column order."""
    anchors_wh = np.asarray(anchors, dtype=np.float32).reshape(-1, 2)
    k, nhwc = len(anchors_wh), spec.output_layout == "NHWC"
    views = {part: _anchor_view(outputs[name], k, nhwc, spec.part_channels(part), name) for part, name in names.items()}
    score_view, (h, w) = views["score"]
    raw_objectness = score_view[:, :, 0].T if nhwc else score_view[:, 0, :]  # (K, H*W): candidate order
    quant = {part: spec.output_quant.get(name) for part, name in names.items()}
    objectness = dequantized_sigmoid(raw_objectness, quant["score"], names["score"]).reshape(-1)
    index = np.arange(objectness.size) if min_score is None else np.flatnonzero(objectness > np.float32(min_score))
    anchor, cell = np.divmod(index, h * w)

    def gather(part: str, squash: bool) -> np.ndarray:
        view = views[part][0]
        rows = view[cell, anchor, :] if nhwc else view[anchor, :, cell]  # (n, D), the channel order of one anchor
        return (dequantized_sigmoid if squash else dequantize_array)(rows, quant[part], names[part])

    xyxy = anchor_boxes_xyxy(gather("box", True), anchor, cell, w, stride, anchors_wh)
    best, ids = best_class(gather("score", True)[:, 1:])
    coefs = np.ascontiguousarray(gather("mask", False)) if "mask" in views else None
    return Candidates(xyxy, objectness[index] * best, ids, coefs)


def _anchor_view(raw: np.ndarray, k: int, nhwc: bool, channels: int, name: str) -> Tuple[np.ndarray, Tuple[int, int]]:
    """(1, K*D, H, W) NCHW -> view (K, D, H*W); (1, H, W, K*D) NHWC -> view (H*W, K, D). Returns (view, (H, W)).

    Checks that the output has `channels` (= K*D) channels on its channel axis."""
    array = np.asarray(raw)
    array = array[0] if array.ndim == 4 else array
    if array.ndim != 3 or (array.shape[2] if nhwc else array.shape[0]) != channels:
        raise EdgedetError(f"edgedet output {name!r} has shape {np.shape(raw)}, expected {channels} channels "
                           f"({k} anchors)")
    h, w = array.shape[:2] if nhwc else array.shape[1:]
    view = array.reshape(h * w, k, channels // k) if nhwc else array.reshape(k, channels // k, h * w)
    return view, (h, w)
