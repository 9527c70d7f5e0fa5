"""The "yolov8-seg" layout (YOLOv8 and YOLO11 segment exports): a prediction (1, 4+C+M, N) or (1, N, 4+C+M) with
features (cx, cy, w, h, class scores, mask coefficients), plus prototypes (1, M, h, w) or (1, h, w, M).

Recognised by exactly those two outputs; M is the prototypes' channel count, the axis (1 or 3) that makes the
prediction's features 4 + C + M when C is known.
"""
from __future__ import annotations

from typing import Mapping, Optional, Tuple

import numpy as np

from ..candidates import Candidates, dequantized_output
from ..errors import EdgedetError
from ..spec import ModelSpec
from .shapes import Shape, describe, is_prediction, outputs_keep_file_names, proto_channel_axis, protos_chw
from .yolov8 import decode_prediction

NAME = "yolov8-seg"
MIN_SPEC_VERSION = 1
FROM_SHAPES = True


def recognises(shapes: Mapping[str, Shape], num_classes: int) -> bool:
    """A prediction and a 4-D prototype output whose channels fit the prediction's features (C known)."""
    split = _split_shapes(shapes)
    return split is not None and (not num_classes or mask_channels(*split.values(), num_classes) is not None)


def mask_channels(pred_shape: Shape, proto_shape: Shape, num_classes: int) -> Optional[int]:
    """M, the prototypes' channel count: the axis (1, then 3) whose size m gives 4 + C + m prediction features;
    with C unknown (0), the smaller of the two (prototypes have fewer channels than pixels a side). None if no
    axis fits."""
    if not num_classes:
        known = [d for d in (proto_shape[1], proto_shape[3]) if d]
        return int(min(known)) if known else None
    for m in (proto_shape[1], proto_shape[3]):
        if m and 4 + num_classes + m in pred_shape[1:]:
            return int(m)
    return None


def spec_fields(shapes: Mapping[str, Shape], num_classes: int) -> dict:
    """task, level_outputs (the prediction), proto_output and num_mask_coefs of a file without metadata."""
    split = _split_shapes(shapes)
    m = None if split is None else mask_channels(*split.values(), num_classes)
    if m is None:
        raise EdgedetError(f"outputs {describe(shapes)} do not look like a {NAME} model (a (1, 4+C+M, N) "
                           f"prediction and (1, M, h, w) prototypes)")
    pred_name, proto_name = split
    return {"task": "segment", "level_outputs": [pred_name], "proto_output": proto_name, "num_mask_coefs": m}


output_shapes = outputs_keep_file_names


def has_masks(spec: ModelSpec) -> bool:
    return True


def prototypes(outputs: Mapping[str, np.ndarray], spec: ModelSpec) -> np.ndarray:
    """The prototypes float32 (M, h, w), dequantized if integer."""
    _, proto_name = _split_outputs(outputs)
    return protos_chw(outputs[proto_name], spec, proto_name)


def decode(outputs: Mapping[str, np.ndarray], spec: ModelSpec, min_score: Optional[float] = None) -> Candidates:
    """Candidates with mask_coefs (N, M); score = best class score. Float or integer outputs.

    min_score: if given, candidates scoring <= min_score may be left out early (the caller still filters)."""
    pred_name, proto_name = _split_outputs(outputs)
    proto_shape = np.shape(outputs[proto_name])
    m = proto_shape[proto_channel_axis(proto_shape, spec)]
    return decode_prediction(dequantized_output(outputs, spec, pred_name), spec, m, min_score)


def _split_shapes(shapes: Mapping[str, Shape]) -> Optional[Mapping[str, Shape]]:
    """{prediction name: shape, prototypes name: shape} in that order, or None if the outputs are not those two."""
    preds = [n for n, s in shapes.items() if is_prediction(s)]
    protos = [n for n, s in shapes.items() if len(s) == 4]
    if len(shapes) != 2 or len(preds) != 1 or len(protos) != 1:
        return None
    return {preds[0]: shapes[preds[0]], protos[0]: shapes[protos[0]]}


def _split_outputs(outputs: Mapping[str, np.ndarray]) -> Tuple[str, str]:
    """(prediction name, prototypes name) of the outputs, matched by shape, never by position or name."""
    split = _split_shapes({name: np.shape(array) for name, array in outputs.items()})
    if split is None:
        raise EdgedetError(f"{NAME} expects one (1, 4+C+M, N) and one (1, M, h, w) output, "
                           f"got shapes {[np.shape(a) for a in outputs.values()]}")
    pred_name, proto_name = split
    return pred_name, proto_name
