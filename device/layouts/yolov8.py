"""The "yolov8" layout (YOLOv8 and YOLO11 detect exports): one prediction (1, 4+C, N) or (1, N, 4+C) per image,
features (cx, cy, w, h, class scores), no objectness; boxes in input pixels (or 0..1 when spec.boxes_normalized).

Recognised by its single prediction tensor with an axis of 4+C features (any prediction when C is unknown).
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from ..boxes import cxcywh_to_xyxy
from ..candidates import Candidates, best_class, dequantized_output
from ..spec import ModelSpec
from .shapes import (Shape, is_prediction, outputs_keep_file_names, prediction_fields, rows_by_feature,
                     scale_normalized, single_output, without_masks, without_prototypes)

NAME = "yolov8"
MIN_SPEC_VERSION = 1
FROM_SHAPES = True


def recognises(shapes: Mapping[str, Shape], num_classes: int) -> bool:
    """One prediction tensor with an axis of 4+C features (num_classes 0 = unknown: any prediction tensor)."""
    if len(shapes) != 1:
        return False
    shape = next(iter(shapes.values()))
    return is_prediction(shape) and (not num_classes or 4 + num_classes in shape[1:])


def spec_fields(shapes: Mapping[str, Shape], num_classes: int) -> dict:
    """task and level_outputs (the prediction's name) of a file without metadata."""
    return prediction_fields(shapes, NAME)


output_shapes = outputs_keep_file_names
has_masks = without_masks
prototypes = without_prototypes


def decode(outputs: Mapping[str, np.ndarray], spec: ModelSpec, min_score: Optional[float] = None) -> Candidates:
    """score = best class score; xyxy in input pixels. Float or integer output.

    min_score: if given, candidates scoring <= min_score may be left out early (a speed-up, not a filter
    contract: the caller still applies its threshold)."""
    pred = dequantized_output(outputs, spec, single_output(outputs, NAME))
    return decode_prediction(pred, spec, 0, min_score)


def decode_prediction(pred: np.ndarray, spec: ModelSpec, num_mask_coefs: int,
                      min_score: Optional[float] = None) -> Candidates:
    """float32 (1, 4+C+M, N) or (1, N, 4+C+M) -> Candidates, with mask_coefs (N, M) when num_mask_coefs > 0."""
    c = spec.num_classes or None
    features = None if c is None else 4 + c + num_mask_coefs
    if pred.ndim == 3 and pred.shape[0] == 1 and (pred.shape[1] == features or
                                                  (features is None and pred.shape[1] < pred.shape[2])):
        return _decode_channels_first(pred[0], spec, num_mask_coefs, min_score)
    rows = rows_by_feature(pred, features)
    num_classes = rows.shape[1] - 4 - num_mask_coefs
    best, ids = best_class(rows[:, 4:4 + num_classes])
    coefs = np.ascontiguousarray(rows[:, 4 + num_classes:]) if num_mask_coefs else None
    return Candidates(scale_normalized(cxcywh_to_xyxy(rows[:, :4]), spec), best, ids, coefs)


def _decode_channels_first(pred: np.ndarray, spec: ModelSpec, num_mask_coefs: int,
                           min_score: Optional[float]) -> Candidates:
    """(4+C+M, N) -> Candidates without transposing the whole array: the best score is a reduction along the
    channel axis; with `min_score`, only columns scoring above it are gathered and get their class and box."""
    num_classes = pred.shape[0] - 4 - num_mask_coefs
    if num_classes:
        best = pred[4:4 + num_classes].max(axis=0)
    else:
        best = np.ones(pred.shape[1], np.float32)
    if min_score is not None:
        keep = np.flatnonzero(best > np.float32(min_score))
        pred, best = pred[:, keep], best[keep]
    ids = pred[4:4 + num_classes].argmax(axis=0).astype(np.int32) if num_classes else np.zeros(len(best), np.int32)
    xyxy = cxcywh_to_xyxy(pred[:4].T)
    coefs = np.ascontiguousarray(pred[4 + num_classes:].T) if num_mask_coefs else None
    return Candidates(scale_normalized(xyxy, spec), best, ids, coefs)
