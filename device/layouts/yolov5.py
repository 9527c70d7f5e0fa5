"""The "yolov5" layout: one prediction (1, N, 5+C) or (1, 5+C, N) per image, rows (cx, cy, w, h, objectness,
class probabilities), boxes in input pixels (or 0..1 of the input when spec.boxes_normalized).

Recognised by its single prediction tensor with an axis of 5+C features (and none of 4+C, which is YOLOv8's);
the class count must be known.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from ..boxes import cxcywh_to_xyxy
from ..candidates import Candidates, best_class, dequantized_output
from ..spec import ModelSpec
from .shapes import (Shape, is_prediction, outputs_keep_file_names, prediction_fields, rows_by_feature,
                     scale_normalized, single_output, without_masks, without_prototypes)

NAME = "yolov5"
MIN_SPEC_VERSION = 1
FROM_SHAPES = True


def recognises(shapes: Mapping[str, Shape], num_classes: int) -> bool:
    """One prediction tensor with an axis of 5+C features and none of 4+C (num_classes 0 = unknown: never)."""
    if len(shapes) != 1 or not num_classes:
        return False
    shape = next(iter(shapes.values()))
    return is_prediction(shape) and 5 + num_classes in shape[1:] and 4 + num_classes not in shape[1:]


def spec_fields(shapes: Mapping[str, Shape], num_classes: int) -> dict:
    """task and level_outputs (the prediction's name) of a file without metadata."""
    return prediction_fields(shapes, NAME)


output_shapes = outputs_keep_file_names
has_masks = without_masks
prototypes = without_prototypes


def decode(outputs: Mapping[str, np.ndarray], spec: ModelSpec, min_score: Optional[float] = None) -> Candidates:
    """score = objectness x best class probability; xyxy in input pixels. Float or integer output.

    min_score: if given, only candidates scoring > min_score are returned."""
    pred = dequantized_output(outputs, spec, single_output(outputs, NAME))
    c = spec.num_classes or None
    rows = rows_by_feature(pred, None if c is None else 5 + c)
    best, ids = best_class(rows[:, 5:])
    xyxy = scale_normalized(cxcywh_to_xyxy(rows[:, :4]), spec)
    return Candidates(xyxy, rows[:, 4] * best, ids).above(min_score)
