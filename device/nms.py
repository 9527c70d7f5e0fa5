"""Greedy non-maximum suppression in NumPy, kept sets equal to OpenCV's `cv2.dnn.NMSBoxes` / `NMSBoxesBatched`.

Greedy rule: visit boxes by descending score (ties: lower index first); keep a box unless its IoU with an
already kept box is > iou_threshold. Class-aware mode shifts every class into its own coordinate range (the
offset trick OpenCV's NMSBoxesBatched uses), so one pass suppresses only within a class.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.45, class_ids: Optional[np.ndarray] = None,
        agnostic: bool = False, max_det: Optional[int] = None, top_k: Optional[int] = None) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, int64 (K,), in descending score order.

    xyxy:      (N, 4) corners, any float dtype, continuous coordinates (area = w * h).
    scores:    (N,) confidences; the caller applies its score threshold before.
    class_ids: (N,) ints: suppress only within a class, unless `agnostic` is true.
    max_det:   keep at most this many boxes.  top_k: visit only the top_k highest-scoring boxes (pre-NMS cap).
    Boxes with a NaN/inf score or coordinate, or with zero or negative width or height, are dropped.
    """
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(scores)} scores")
    valid = _valid_mask(boxes, scores)
    candidates = np.flatnonzero(valid)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    if top_k is not None:
        order = order[:max(int(top_k), 0)]
    if class_ids is not None and not agnostic and len(order):
        boxes = _offset_by_class(boxes, np.asarray(class_ids).reshape(-1), order)
    limit = len(order) if max_det is None else max(int(max_det), 0)
    return _greedy(boxes[order], order, float(np.float32(iou_threshold)), limit)


def _valid_mask(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(N,) bool: finite score and coordinates, positive width and height."""
    finite = np.isfinite(scores) & np.isfinite(boxes).all(axis=1)
    with np.errstate(invalid="ignore"):
        positive = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return finite & positive


def _offset_by_class(boxes: np.ndarray, class_ids: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Shift each box by class_id * (largest coordinate + 1) on both axes, as OpenCV's NMSBoxesBatched does."""
    if len(class_ids) != len(boxes):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(class_ids)} class ids")
    span = boxes[order, 2:4].max() + 1.0
    shifted = boxes.copy()
    offset = class_ids.astype(np.float64)[order, None] * span
    shifted[order] += offset  # the same shift on x1, y1, x2, y2
    return shifted


def _greedy(sorted_boxes: np.ndarray, index: np.ndarray, iou_threshold: float, limit: int) -> np.ndarray:
    """Greedy suppression over boxes already sorted by score; loops once per KEPT box, vectorised over the rest.

    sorted_boxes: float64 (N, 4) xyxy; index: (N,) their original indices. Returns kept original indices.
    """
    x1, y1, x2, y2 = (np.ascontiguousarray(sorted_boxes[:, c]) for c in range(4))
    area = (x2 - x1) * (y2 - y1)
    kept = []
    while index.size and len(kept) < limit:
        kept.append(index[0])
        inter_w = np.minimum(x2[0], x2[1:]) - np.maximum(x1[0], x1[1:])
        inter_h = np.minimum(y2[0], y2[1:]) - np.maximum(y1[0], y1[1:])
        inter = np.maximum(inter_w, 0) * np.maximum(inter_h, 0)
        survive = np.flatnonzero(inter / (area[0] + area[1:] - inter) <= iou_threshold) + 1
        x1, y1, x2, y2, area, index = (a[survive] for a in (x1, y1, x2, y2, area, index))
    return np.asarray(kept, dtype=np.int64)
