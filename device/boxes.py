"""Box formats and their converters: every conversion in the project happens here.

Formats: xyxy = (x1, y1, x2, y2) corners; xywh = (x1, y1, w, h) top-left and size (OpenCV, COCO);
cxcywh = (cx, cy, w, h) centre and size (YOLO). Coordinates are continuous: width = x2 - x1, no +1.
All functions take (..., 4) arrays and return the same shape and a float dtype.
"""
from __future__ import annotations

import numpy as np


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) centre/size -> corners."""
    boxes = np.asarray(boxes)
    half = boxes[..., 2:4] / 2
    return np.concatenate([boxes[..., 0:2] - half, boxes[..., 0:2] + half], axis=-1)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) corners -> centre/size."""
    boxes = np.asarray(boxes)
    return np.concatenate([(boxes[..., 0:2] + boxes[..., 2:4]) / 2, boxes[..., 2:4] - boxes[..., 0:2]], axis=-1)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) corners -> top-left/size (what OpenCV's NMSBoxes and COCO JSON want)."""
    boxes = np.asarray(boxes)
    return np.concatenate([boxes[..., 0:2], boxes[..., 2:4] - boxes[..., 0:2]], axis=-1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) top-left/size -> corners."""
    boxes = np.asarray(boxes)
    return np.concatenate([boxes[..., 0:2], boxes[..., 0:2] + boxes[..., 2:4]], axis=-1)


def box_area(xyxy: np.ndarray) -> np.ndarray:
    """(..., 4) corners -> (...) areas; inverted boxes have area 0."""
    wh = np.clip(xyxy[..., 2:4] - xyxy[..., 0:2], 0, None)
    return wh[..., 0] * wh[..., 1]


def box_iou(xyxy_a: np.ndarray, xyxy_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU: (N, 4) and (M, 4) corners -> float (N, M). Empty union gives 0."""
    a = np.asarray(xyxy_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(xyxy_b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def cell_centres(size_hw, stride: int) -> np.ndarray:
    """float64 (H/s * W/s, 2) (x, y) centres ((j + 0.5) s, (i + 0.5) s) of the cells of a stride-s grid over an
    (H, W) input, row-major (row i, then column j): where SSD's default boxes and the RPN's anchors sit."""
    rows, cols = int(size_hw[0]) // stride, int(size_hw[1]) // stride
    cy, cx = np.meshgrid((np.arange(rows) + 0.5) * stride, (np.arange(cols) + 0.5) * stride, indexing="ij")
    return np.stack([cx.ravel(), cy.ravel()], axis=1)
