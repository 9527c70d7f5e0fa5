"""The box coder of SSD and Faster R-CNN: boxes as offsets from reference boxes (default boxes, anchors, proposals).

For a reference box (cx_a, cy_a, w_a, h_a) and weights (wx, wy, ww, wh), a box (cx, cy, w, h) is coded as
    dx = wx * (cx - cx_a) / w_a      dy = wy * (cy - cy_a) / h_a
    dw = ww * log(w / w_a)           dh = wh * log(h / h_a)
and decoded by the inverse, with dw and dh clamped to `MAX_LOG_SCALE` so that exp() cannot overflow.
SSD's "variances" (0.1, 0.2) are weights (10, 10, 5, 5); Faster R-CNN's RPN uses (1, 1, 1, 1) and its box head
(10, 10, 5, 5). edgedet/models/box_coder.py is the torch twin (training); a test holds both to these formulas.
Boxes are xyxy corners (device/boxes.py formats), float32.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .boxes import cxcywh_to_xyxy, xyxy_to_cxcywh

MAX_LOG_SCALE = math.log(1000.0 / 16)  # largest decoded dw/dh: a box at most 62.5x its reference's side


def decode_deltas(deltas: np.ndarray, reference_xyxy: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """float (N, 4) (dx, dy, dw, dh) offsets against (N, 4) xyxy reference boxes -> float32 (N, 4) xyxy boxes."""
    deltas = np.asarray(deltas, dtype=np.float32)
    reference = xyxy_to_cxcywh(np.asarray(reference_xyxy, dtype=np.float32))
    scaled = deltas / np.asarray(weights, dtype=np.float32)
    centre = reference[:, 0:2] + scaled[:, 0:2] * reference[:, 2:4]
    size = reference[:, 2:4] * np.exp(np.minimum(scaled[:, 2:4], np.float32(MAX_LOG_SCALE)))
    return cxcywh_to_xyxy(np.concatenate([centre, size], axis=1)).astype(np.float32, copy=False)


def encode_boxes(boxes_xyxy: np.ndarray, reference_xyxy: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """(N, 4) xyxy boxes against (N, 4) xyxy reference boxes (both with positive sides) -> float32 (N, 4) offsets."""
    boxes = xyxy_to_cxcywh(np.asarray(boxes_xyxy, dtype=np.float32))
    reference = xyxy_to_cxcywh(np.asarray(reference_xyxy, dtype=np.float32))
    centre = (boxes[:, 0:2] - reference[:, 0:2]) / reference[:, 2:4]
    size = np.log(boxes[:, 2:4] / reference[:, 2:4])
    return (np.concatenate([centre, size], axis=1) * np.asarray(weights, dtype=np.float32)).astype(np.float32)
