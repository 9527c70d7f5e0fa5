"""Anchors of the two-stage detector's region proposal network (RPN), in NumPy: the one implementation, used by the
torch model (edgedet/models/rcnn.py) for training and by the device runtime for decoding.

Per FPN level of stride s on an input of H x W pixels (multiples of 32), the grid is (H/s, W/s) and every cell
(row i, column j) holds A = len(sizes) * len(ratios) anchors centred on the cell centre ((j + 0.5) s, (i + 0.5) s).
Anchor a = size_index * len(ratios) + ratio_index has area size^2 and aspect ratio h / w = ratio:
    w = size / sqrt(ratio),  h = size * sqrt(ratio).
Order of a level's anchors (and of its flattened RPN outputs, `flatten_rpn_level`): row i, then column j, then
anchor a, i.e. flat index (i * W/s + j) * A + a. The RPN head's channels are anchor-major: objectness channel a,
box channels 4a..4a+3 = (dx, dy, dw, dh) of anchor a. Levels are concatenated finest first. Boxes are float32 xyxy
input pixels (device/boxes.py conventions).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from .boxes import cell_centres


def cell_anchors(sizes: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
    """float32 (A, 4) xyxy anchors centred on (0, 0), sizes outer, ratios (h / w) inner."""
    size = np.repeat(np.asarray(sizes, dtype=np.float64), len(ratios))
    ratio = np.tile(np.asarray(ratios, dtype=np.float64), len(sizes))
    half_w, half_h = size / np.sqrt(ratio) / 2, size * np.sqrt(ratio) / 2
    return np.stack([-half_w, -half_h, half_w, half_h], axis=1).astype(np.float32)


def level_anchors(size_hw: Tuple[int, int], stride: int, sizes: Sequence[float],
                  ratios: Sequence[float]) -> np.ndarray:
    """float32 (H/s * W/s * A, 4) xyxy anchors of one level, ordered row, column, anchor."""
    centres = np.tile(cell_centres(size_hw, stride), 2)[:, None, :]  # (H*W, 1, 4) (x, y, x, y), row-major
    return (centres + cell_anchors(sizes, ratios)[None]).reshape(-1, 4).astype(np.float32)


def anchors_per_level(size_hw: Tuple[int, int], strides: Sequence[int], sizes_per_level: Sequence[Sequence[float]],
                      ratios: Sequence[float]) -> List[np.ndarray]:
    """One `level_anchors` array per stride (finest first)."""
    return [level_anchors(size_hw, s, sizes, ratios) for s, sizes in zip(strides, sizes_per_level)]


def flatten_rpn_level(objectness: np.ndarray, box: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One level's raw RPN outputs, objectness (B, A, h, w) and box (B, A*4, h, w) -> (B, h*w*A) logits and
    (B, h*w*A, 4) (dx, dy, dw, dh), in the anchor order of `level_anchors`."""
    b, a, h, w = objectness.shape
    logits = objectness.transpose(0, 2, 3, 1).reshape(b, h * w * a)
    deltas = box.reshape(b, a, 4, h, w).transpose(0, 3, 4, 1, 2).reshape(b, h * w * a, 4)
    return logits, deltas
