"""Postprocess: raw model outputs -> `Detections` in the original frame.

layout decode (device.layouts; integer outputs are dequantized by the layout, only the values it uses) -> score
filter (vectorised) -> NMS -> instance masks for the kept boxes -> un-letterbox.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

import numpy as np

from . import layouts
from .candidates import Candidates, dequantized_output
from .detections import Detections
from .errors import EdgedetError
from .letterbox import Letterbox
from .latency import timed
from .masks import instance_masks, mask_spans, paste_box_masks, semantic_map
from .spec import ModelSpec
from .suppression import nms

MAX_NMS_CANDIDATES = 30000  # pre-NMS cap: only the best this many candidates enter NMS


def filter_candidates(candidates: Candidates, conf: float, classes: Optional[Sequence[int]] = None) -> Candidates:
    """Keep candidates with score > conf (and class in `classes` if given); one vectorised mask, no loop."""
    keep = candidates.scores > np.float32(conf)
    if classes is not None:
        keep &= np.isin(candidates.class_ids, np.asarray(list(classes), dtype=np.int64))
    return candidates[np.flatnonzero(keep)]


def postprocess(outputs: Mapping[str, np.ndarray], spec: ModelSpec, letterbox: Letterbox, conf: float = 0.25,
                iou: float = 0.45, max_det: int = 300, classes: Optional[Sequence[int]] = None,
                agnostic: bool = False, timer=None, layout: Optional[str] = None, second_stage=None) -> Detections:
    """Raw outputs of one image (name -> array, any dtype) -> Detections in original-frame pixels.

    conf: keep scores > conf.  iou: NMS IoU threshold.  max_det: at most this many detections.
    classes: keep only these class ids.  agnostic: NMS across classes.  layout: override spec/shape selection.
    second_stage: a two-stage model's per-region heads (device.two_stage.RegionHeads); its layout's decode runs
    them and times its own stages.
    Masks (N, h, w) bool at the original frame's resolution are attached when the model has prototypes or box masks.
    """
    if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
        raise EdgedetError(f"conf and iou must be in 0..1, got conf={conf} iou={iou}")
    chosen = layouts.select(outputs, spec, layout)
    if second_stage is not None:
        candidates = filter_candidates(chosen.decode(outputs, spec, min_score=conf, second_stage=second_stage,
                                                     timer=timer), conf, classes)
    else:
        with timed(timer, "decode"):
            candidates = filter_candidates(chosen.decode(outputs, spec, min_score=conf), conf, classes)
    with timed(timer, "nms"):
        kept = nms(candidates.xyxy, candidates.scores, iou, class_ids=candidates.class_ids, agnostic=agnostic,
                   max_det=max_det, top_k=MAX_NMS_CANDIDATES)
        candidates = candidates[kept]
    xyxy_frame = letterbox.boxes_to_original(candidates.xyxy)
    masks = spans = None
    if candidates.mask_coefs is not None:
        with timed(timer, "masks"):
            masks, spans = _instance_masks(candidates, xyxy_frame, chosen, outputs, spec, letterbox)
    return Detections(xyxy_frame, candidates.scores, candidates.class_ids, masks, mask_spans=spans)


def _instance_masks(candidates: Candidates, xyxy_frame: np.ndarray, chosen, outputs, spec: ModelSpec,
                    letterbox: Letterbox) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(bool (N, h, w) frame masks of the kept candidates, int64 (N, 4) their `mask_spans`): box masks pasted over
    their boxes, or prototype masks over the detections' boxes `xyxy_frame` (prototypes read and dequantized only
    now, for the kept boxes); (None, None) when the model gives none."""
    if candidates.mask_boxes is not None:
        side = int(round(np.sqrt(candidates.mask_coefs.shape[1])))
        boxes = letterbox.boxes_to_original(candidates.mask_boxes)
        spans = mask_spans(boxes, letterbox.src_hw)
        return paste_box_masks(candidates.mask_coefs.reshape(-1, side, side), boxes, letterbox.src_hw, spans), spans
    protos = chosen.prototypes(outputs, spec)
    if protos is None:
        return None, None
    spans = mask_spans(xyxy_frame, letterbox.src_hw)
    return instance_masks(protos, candidates.mask_coefs, candidates.xyxy, letterbox, spans), spans


def postprocess_semantic(outputs: Mapping[str, np.ndarray], spec: ModelSpec, letterbox: Letterbox) -> np.ndarray:
    """Semantic logits (1, S, h, w) (or NHWC) of output spec.seg_output -> int32 (H, W) class map in the frame."""
    return semantic_map(semantic_logits(outputs, spec), letterbox)


def semantic_logits(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> np.ndarray:
    """Raw outputs -> float32 (S, h, w) semantic logits of output spec.seg_output, dequantized, channels first."""
    if not spec.seg_output or spec.seg_output not in outputs:
        raise EdgedetError(f"model has no semantic segmentation output (spec.seg_output={spec.seg_output!r}, "
                           f"outputs {sorted(outputs)})")
    logits = dequantized_output(outputs, spec, spec.seg_output)
    logits = logits[0] if logits.ndim == 4 else logits
    return logits.transpose(2, 0, 1) if spec.output_layout == "NHWC" else logits

