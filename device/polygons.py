"""Masks -> polygons along pixel edges: for YOLO segment labels (`edgedet run --save-txt`, and the host's YOLO
writer and COCO polygons, which import this module).

Contours of the mask upsampled 2x lie on pixel edges, so rasterised the pycocotools way (no pixel centre lies on a
pixel edge) an outer contour gives back exactly its part's pixels; outer contours and holes joined by zero-width
bridges make one path whose even-odd fill (what the YOLO reader does) gives back exactly the mask.
"""
from __future__ import annotations

from typing import List, Optional

import cv2
import numpy as np


def edge_contours(mask: np.ndarray, retrieval: int = cv2.RETR_CCOMP) -> List[np.ndarray]:
    """int (V, 2) x, y vertices at whole pixel corners of every contour of a bool (H, W) mask that
    cv2.findContours retrieves with `retrieval` (RETR_CCOMP: outer contours and holes; RETR_EXTERNAL: outer only).

    Each pixel becomes a 2x2 block, so a contour point of the upsampled mask is half a pixel from the boundary;
    upsampled column u (row likewise) lies on the pixel edge ceil(u / 2). Only the mask's tight box (and a
    one-pixel margin) is upsampled and traced: an object in a whole frame costs what its box costs."""
    mask = np.asarray(mask, dtype=np.uint8)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return []
    top, left = max(int(rows[0]) - 1, 0), max(int(cols[0]) - 1, 0)
    box = mask[top:int(rows[-1]) + 2, left:int(cols[-1]) + 2]
    up = np.repeat(np.repeat(box, 2, axis=0), 2, axis=1)
    contours, _ = cv2.findContours(up, retrieval, cv2.CHAIN_APPROX_NONE)
    offset = np.array([left, top])
    return [_corner_path(contour.reshape(-1, 2)) + offset for contour in contours]


def _corner_path(points_xy: np.ndarray) -> np.ndarray:
    """int (K, 2) upsampled contour points -> int (V, 2) pixel-corner vertices, repeats and straight-line points
    dropped (a pinch where 8-connected pixels touch stays, visited twice)."""
    corners = (points_xy + 1) // 2
    corners = corners[np.any(corners != np.roll(corners, 1, axis=0), axis=1)]
    step_in, step_out = corners - np.roll(corners, 1, axis=0), np.roll(corners, -1, axis=0) - corners
    turns = step_in[:, 0] * step_out[:, 1] - step_in[:, 1] * step_out[:, 0] != 0
    return corners[turns]


def mask_to_polygon(mask: np.ndarray) -> Optional[np.ndarray]:
    """float64 (V, 2) x, y pixel coordinates of one closed path covering a bool (H, W) mask with all its parts and
    holes (the longest contour first, each other one reached by a bridge to its nearest vertex and back); None for
    an empty mask."""
    parts = sorted((c.astype(np.float64) for c in edge_contours(mask)), key=len, reverse=True)
    if not parts:
        return None
    path = parts[0]
    for part in parts[1:]:
        start = path[-1]
        nearest = int(np.argmin(((part - start) ** 2).sum(axis=1)))
        rolled = np.roll(part, -nearest, axis=0)
        path = np.concatenate([path, rolled, rolled[:1], start[None]])
    return path
