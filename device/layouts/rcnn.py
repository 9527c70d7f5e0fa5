"""The "rcnn" layout: this project's two-stage detector (Faster R-CNN with FPN and a Mask R-CNN head).

Stage 1 (the model file) returns per FPN level (spec.level_outputs, finest first, spec.strides), NCHW or NHWC:
    "<level>_feat"     (1, F, H/s, W/s)   FPN features (F = spec.second_stage["feature_channels"])
    "<level>_rpn_obj"  (1, A, H/s, W/s)   objectness logits of the A anchors per cell
    "<level>_rpn_box"  (1, 4A, H/s, W/s)  their (dx, dy, dw, dh), anchor-major, two_stage.RPN_BOX_WEIGHTS
in that order (all features first). The decode then runs the second stage (device/two_stage.py): proposals (top-k,
decode, clip, NMS), RoI Align on each proposal's FPN level (device/roi_align.py, P x P), the heads file on the
pooled features, and per class: softmax probability, the box decoded from the proposal (ROI_BOX_WEIGHTS) and
clipped; every (proposal, class) pair scoring > min_score is a candidate, carrying its proposal's m x m mask
logits over the proposal box. spec.second_stage holds the settings: anchor_sizes, anchor_ratios, pre_nms_top_k,
post_nms_top_k, nms_iou, min_side, pool_size, sampling_ratio, mask_size, class_agnostic_masks, feature_channels.
edgedet/models/rcnn.py's `predict` is the PyTorch twin; a test holds the two to the same detections.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from ..box_coder import decode_deltas
from ..candidates import Candidates, dequantize_array, softmax
from ..errors import EdgedetError
from ..latency import timed
from ..roi_align import roi_align_levels
from ..spec import ModelSpec, level_part_name
from ..two_stage import clip_boxes, rpn_levels, select_proposals, spec_anchors
from .shapes import Shape, level_output_shapes, names_levels, without_prototypes

NAME = "rcnn"
MIN_SPEC_VERSION = 2
FROM_SHAPES = False  # anchors and the second stage's settings are in the edgedet metadata only
ROI_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # box-head deltas against proposals (Fast R-CNN)

prototypes = without_prototypes


def has_masks(spec: ModelSpec) -> bool:
    return True


def recognises(shapes: Mapping[str, Shape], num_classes: int) -> bool:
    """The stage-1 outputs by name: for one or more levels a 4-D "<level>_rpn_obj" and "<level>_rpn_box"."""
    return names_levels(shapes, "rpn_obj", "rpn_box")


def spec_fields(shapes: Mapping[str, Shape], num_classes: int) -> dict:
    raise EdgedetError("the rcnn layout needs the model's edgedet metadata (its anchors and second stage); "
                       "re-export the model from its checkpoint")


def output_shapes(spec: ModelSpec, tensor_layout: str) -> Optional[Dict[str, Shape]]:
    """Role name -> shape of every stage-1 output, in forward order."""
    anchors = len(spec.anchors[0]) if spec.anchors else 0
    features = {"feat": int(spec.second_stage.get("feature_channels", 0))}
    return {**level_output_shapes(spec, features, tensor_layout),
            **level_output_shapes(spec, {"rpn_obj": anchors, "rpn_box": 4 * anchors}, tensor_layout)}


def decode(outputs: Mapping[str, np.ndarray], spec: ModelSpec, min_score: Optional[float] = None,
           second_stage=None, timer=None) -> Candidates:
    """Stage-1 outputs of one image + the heads (`second_stage`, a device.two_stage.RegionHeads or its PyTorch
    twin) -> candidates in input pixels (module docstring). Times "decode", "roi_align" and "stage2" on `timer`."""
    if second_stage is None:
        raise EdgedetError("a two-stage (rcnn) model decodes only with its heads file loaded beside it")
    settings, nchw = spec.second_stage, _nchw_outputs(outputs, spec)
    with timed(timer, "decode"):
        rpn = rpn_levels(nchw, spec, spec.level_outputs)
        proposals = select_proposals([r[0] for r in rpn], [r[1] for r in rpn], spec_anchors(spec),
                                     spec.input_size_hw, settings)
    with timed(timer, "roi_align"):
        features = [nchw[level_part_name(level, "feat")] for level in spec.level_outputs]
        rois = np.concatenate([np.zeros((len(proposals), 1), np.float32), proposals], axis=1)
        pooled = roi_align_levels(features, spec.strides, rois, (int(settings["pool_size"]),) * 2,
                                  int(settings["sampling_ratio"]))
    with timed(timer, "stage2"):
        heads = second_stage(pooled)
    with timed(timer, "decode"):
        return region_candidates(heads, proposals, spec, 0.0 if min_score is None else min_score)


def region_candidates(heads: Mapping[str, np.ndarray], proposals: np.ndarray, spec: ModelSpec,
                      min_score: float) -> Candidates:
    """The heads' outputs on P proposals -> the (proposal, class) pairs scoring > min_score, with their boxes and
    their proposal's mask logits, in proposal-major, class-minor order."""
    probs = softmax(np.asarray(heads["cls"], dtype=np.float32))[:, 1:]  # (P, C) without background
    roi, cls = np.nonzero(probs > np.float32(min_score))
    deltas = np.asarray(heads["box"], dtype=np.float32).reshape(len(probs), -1, 4)[roi, cls]
    xyxy = clip_boxes(decode_deltas(deltas, proposals[roi], ROI_BOX_WEIGHTS), spec.input_size_hw)
    masks = np.asarray(heads["mask"], dtype=np.float32)
    channel = np.zeros_like(cls) if spec.second_stage["class_agnostic_masks"] else cls
    mask_logits = masks[roi, channel].reshape(len(roi), masks.shape[-2] * masks.shape[-1])
    return Candidates(xyxy, probs[roi, cls], cls.astype(np.int32), mask_logits, proposals[roi])


def _nchw_outputs(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> Dict[str, np.ndarray]:
    """The stage-1 outputs as float32 NCHW (dequantized; NHWC TFLite outputs transposed)."""
    names = output_shapes(spec, "NCHW")
    missing = [name for name in names if name not in outputs]
    if missing:
        raise EdgedetError(f"model outputs {sorted(outputs)} lack the rcnn stage-1 outputs {missing}")
    values = {}
    for name in names:
        array = dequantize_array(outputs[name], spec.output_quant.get(name), name)
        values[name] = array.transpose(0, 3, 1, 2) if spec.output_layout == "NHWC" else array
    return values
