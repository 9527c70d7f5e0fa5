"""Greedy non-maximum suppression in NumPy, kept sets equal to OpenCV's `cv2.dnn.NMSBoxes` / `NMSBoxesBatched`
(for class-aware NMS: whenever no coordinate is negative; see `_offset_by_class`).

Greedy rule: visit boxes by descending score (ties: lower index first); keep a box unless its IoU with an
already kept box is > iou_threshold. Class-aware mode shifts every class into its own coordinate range (the
offset trick OpenCV's NMSBoxesBatched uses, widened for negative coordinates), so one pass suppresses only
within a class.
"""
from __future__ import annotations

import math
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
    boxes = np.asarray(xyxy).reshape(-1, 4)
    scores = np.asarray(scores).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(scores)} scores")
    class_aware = class_ids is not None and not agnostic
    rows, valid = _box_rows(boxes, scores, _work_dtype(boxes, class_aware))
    if valid is not None and rows.dtype != np.float64:  # invalid (or float32-overflowing) boxes: the float64 rules
        rows, valid = _box_rows(boxes, scores, np.float64)
    order = _by_score(valid, scores)
    if top_k is not None:
        order = order[:max(int(top_k), 0)]
    limit = len(order) if max_det is None else min(max(int(max_det), 0), len(order))
    if limit == 0:
        return np.zeros(0, np.int64)
    rows = np.take(rows, order, axis=1)
    if class_aware:
        _offset_by_class(rows, np.asarray(class_ids).reshape(-1), order, len(boxes))
    t = float(np.float32(iou_threshold))  # OpenCV compares against a float32 threshold
    rows[4] *= t / (1.0 + t)
    return _greedy(rows, order, limit)


def _work_dtype(boxes: np.ndarray, class_aware: bool):
    """float32 for small sets of float32 boxes (half the memory traffic of the (block, N) passes, where NumPy call
    overhead dominates); float64 otherwise: float64 inputs keep their precision, and class offsets push
    coordinates to magnitudes where float32 steps are coarse."""
    small = len(boxes) <= _SMALL
    return np.float32 if small and boxes.dtype == np.float32 and not class_aware else np.float64


def _box_rows(boxes: np.ndarray, scores: np.ndarray, dtype=np.float64):
    """(N, 4) xyxy -> (`dtype` (5, N) rows (x1, y1, -x2, -y2, area), the layout `_greedy` works on; bool (N,)
    valid: finite score and coordinates, positive width and height, or None when every box is valid)."""
    rows = np.empty((5, len(boxes)), dtype=dtype)
    rows[0:2] = boxes[:, 0:2].T
    np.negative(boxes[:, 2:4].T, out=rows[2:4])
    with np.errstate(invalid="ignore", over="ignore"):
        neg_wh = rows[0:2] + rows[2:4]  # (-w, -h); NaN fails every comparison and inf - inf is NaN
        np.multiply(neg_wh[0], neg_wh[1], out=rows[4])
        if len(boxes) and neg_wh.max() < 0 and math.isfinite(np.dot(rows[4], scores)):  # the common case, two passes
            return rows, None
        valid = (np.maximum(neg_wh[0], neg_wh[1]) < 0) & np.isfinite(rows[4] * scores)
    return rows, valid


def _by_score(valid: Optional[np.ndarray], scores: np.ndarray) -> np.ndarray:
    """Indices of the valid boxes (all if `valid` is None) by descending score, ties by index (a stable sort,
    as OpenCV's)."""
    if valid is None:
        return np.argsort(np.negative(scores), kind="stable")
    candidates = np.flatnonzero(valid)
    return candidates[np.argsort(np.negative(scores[candidates]), kind="stable")]


def _offset_by_class(rows: np.ndarray, class_ids: np.ndarray, order: np.ndarray, n: int) -> None:
    """Shift each box (in place) by class_id * span on both axes, so boxes of different classes never overlap.

    span = largest coordinate + 1, as OpenCV's NMSBoxesBatched uses, when no coordinate is negative; with
    negative coordinates (decoded boxes reaching past the image's top-left corner) OpenCV's offset can let
    classes overlap, so span = largest - smallest coordinate + 1 there."""
    if len(class_ids) != n:
        raise ValueError(f"nms: {n} boxes but {len(class_ids)} class ids")
    largest, smallest = -rows[2:4].min(), rows[0:2].min()
    offset = class_ids[order].astype(np.float64) * (largest - min(smallest, 0.0) + 1.0)
    rows[0:2] += offset
    rows[2:4] -= offset


def _greedy(rows: np.ndarray, index: np.ndarray, limit: int) -> np.ndarray:
    """Exact greedy suppression in blocks: a few NumPy passes per block of the best remaining boxes, never a
    Python loop over candidates.

    rows: float64 (5, N) (x1, y1, -x2, -y2, area * t / (1 + t)) in visiting order (descending score); index: (N,)
    their indices. One np.maximum gives both intersection corners, and IoU > t <=> intersection > t / (1 + t) *
    (area_a + area_b). Each round resolves greedy NMS inside a block of the best remaining boxes on its small
    suppression matrix (every higher-ranked survivor is in the block), then drops every later box that a kept
    block box suppresses. Returns the kept indices, at most `limit`.
    """
    kept, small = [], index.size <= _SMALL
    while index.size:
        if small and index.size <= len(_BITS):  # what is left fits one block: resolve it all, no survivor pass
            kept.extend(index[_resolve_block(_suppression(rows, rows), limit - len(kept))].tolist())
            break
        if small:  # few boxes: one (block, remaining) pass serves both steps
            size = _SMALL_BLOCK
            suppress = _suppression(rows[:, :size], rows)
            local = _resolve_block(suppress[:, :size], limit - len(kept))
            later = suppress[local, size:]
        else:  # many boxes: resolve the block on its own, then test only its kept boxes against the rest
            size = _LARGE_BLOCK
            head = rows[:, :size]
            local = _resolve_block(_suppression(head, head), limit - len(kept))
            later = _suppression(np.take(head, local, axis=1), rows[:, size:])
        kept.extend(index[local].tolist())
        if len(kept) >= limit or index.size == size:
            break
        survive = ~np.logical_or.reduce(later, axis=0)
        rows, index = np.compress(survive, rows[:, size:], axis=1), index[size:][survive]
    return np.asarray(kept, dtype=np.int64)


def _suppression(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool (A, B): IoU(a_i, b_j) > t for columns of the (5, A) and (5, B) row layouts of `_greedy`."""
    corner = np.maximum(a[0:4, :, None], b[0:4, None, :])  # (max x1, max y1, -min x2, -min y2)
    neg_wh = corner[0:2]
    neg_wh += corner[2:4]
    np.minimum(neg_wh[0], 0, out=neg_wh[0])  # no overlap in x: product 0; in y only: product <= 0, never > area
    return neg_wh[0] * neg_wh[1] > a[4][:, None] + b[4][None, :]


def _resolve_block(suppress: np.ndarray, limit: int) -> list:
    """Greedy NMS inside one block: suppress (B, B) bool, B <= 62, only row i < column j counts. Kept rows.

    Row i's bits for columns j <= i (itself, earlier rows) are ORed into `dead` only after row i was decided,
    and only later rows are tested, so they need no masking."""
    size = len(suppress)
    row_bits = np.dot(suppress, _BITS[:size]).tolist()  # row i: bitmask of the rows it overlaps
    dead, kept = 0, []
    for row in range(size):
        if not dead >> row & 1:
            kept.append(row)
            if len(kept) == limit:
                break
            dead |= row_bits[row]
    return kept


_SMALL = 400  # at most this many candidates: small blocks tested against everything left in one pass
_SMALL_BLOCK = 16  # block size then (clustered sets: the first 16 boxes already clear most clusters)
_LARGE_BLOCK = 32  # block size for more candidates
_BITS = np.left_shift(1, np.arange(62, dtype=np.int64))  # 1 << j
