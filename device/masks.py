"""Segmentation outputs in the original frame: instance masks from prototypes or from per-box mask logits
(Mask R-CNN), and semantic class maps.

Instance masks follow the prototype recipe: logits = coefficients @ prototypes (linear), computed only for boxes
kept by NMS and only over each box; the logits are bilinearly resampled straight to frame pixels (through the
letterbox) and thresholded at 0 there, never at prototype resolution. The panoptic merge of both is the host's
(edgedet/metrics/panoptic.py), where the panoptic metric uses it.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np

from .errors import EdgedetError
from .letterbox import Letterbox
from .upsample import interpolate_cols, interpolate_rows, linear_taps_at


def frame_to_map_coords(pixels: np.ndarray, axis: int, map_size: int, letterbox: Letterbox) -> np.ndarray:
    """Centres of frame pixels `pixels` (ints along axis 0 = rows, 1 = cols) -> float32 source coordinates in a
    map that covers the whole network input with `map_size` cells along that axis (align_corners=False)."""
    scale = letterbox.scale_xy[1 - axis]
    offset = (letterbox.top, letterbox.left)[axis]
    input_size = letterbox.dst_hw[axis]
    input_coord = (pixels.astype(np.float32) + np.float32(0.5)) * np.float32(scale) + np.float32(offset)
    return input_coord * np.float32(map_size / input_size) - np.float32(0.5)


def _resample(maps: np.ndarray, rows, cols) -> np.ndarray:
    """Bilinear resample of (C, h, w) at row taps and column taps (i0, i1, w1) -> float32 (C, len(rows), len(cols)),
    as tiled matrix products (for large outputs such as whole frames)."""
    return interpolate_rows(interpolate_cols(maps, cols), rows)


def mask_spans(boxes_xyxy: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """float (N, 4) xyxy frame boxes -> int64 (N, 4) [row0, row1, col0, col1): the frame pixels whose centres lie
    in each box, clipped to the frame (row1 == row0 or col1 == col0 when none, as for a box with a NaN corner).
    A mask built over its box (`instance_masks`, `paste_box_masks`) is False outside its span:
    `Detections.mask_spans`."""
    h, w = size_hw
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    boxes = np.where(np.isnan(boxes).any(axis=1, keepdims=True), np.float32(0), boxes)  # a NaN corner: empty span
    bounds = np.clip(np.ceil(boxes - np.float32(0.5)), 0, np.array([w, h, w, h], dtype=np.float32)).astype(np.int64)
    spans = bounds[:, [1, 3, 0, 2]]
    np.maximum(spans[:, 1], spans[:, 0], out=spans[:, 1])
    np.maximum(spans[:, 3], spans[:, 2], out=spans[:, 3])
    return spans


@functools.lru_cache(maxsize=16)
def _frame_taps(letterbox: Letterbox, axis: int, map_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear taps (i0, i1, w1) into a map of `map_size` cells covering the network input, for every frame pixel
    along `axis` (0 = rows, 1 = cols); read-only, cached per letterbox (a box takes a slice)."""
    size = letterbox.src_hw[axis]
    taps = linear_taps_at(frame_to_map_coords(np.arange(size), axis, map_size, letterbox), map_size)
    for array in taps:
        array.setflags(write=False)
    return taps


def instance_masks(protos: np.ndarray, coefs: np.ndarray, xyxy_input: np.ndarray, letterbox: Letterbox,
                   spans: Optional[np.ndarray] = None) -> np.ndarray:
    """Masks of N kept detections: bool (N, h, w) at the original frame's resolution.

    protos:     float32 (M, ph, pw) prototypes covering the whole network input.
    coefs:      float32 (N, M) mask coefficients of the kept boxes.
    xyxy_input: (N, 4) boxes in network-input pixels; each mask is True only inside its box.
    spans:      the boxes' `mask_spans` in the frame, if the caller has them already.
    A pixel is in the mask where the bilinearly resampled logit coefs @ protos is > 0.
    """
    protos = np.asarray(protos, dtype=np.float32)
    coefs = np.asarray(coefs, dtype=np.float32).reshape(-1, protos.shape[0])
    frame_h, frame_w = letterbox.src_hw
    masks = np.zeros((len(coefs), frame_h, frame_w), dtype=bool)
    row_taps = _frame_taps(letterbox, 0, protos.shape[1])
    col_taps = _frame_taps(letterbox, 1, protos.shape[2])
    if spans is None:
        spans = mask_spans(letterbox.boxes_to_original(xyxy_input), (frame_h, frame_w))
    for n, (y1, y2, x1, x2) in enumerate(np.asarray(spans, dtype=np.int64).reshape(-1, 4).tolist()):
        if y1 == y2 or x1 == x2:
            continue
        rows = tuple(t[y1:y2] for t in row_taps)
        cols = tuple(t[x1:x2] for t in col_taps)
        masks[n, y1:y2, x1:x2] = _box_logits(protos, coefs[n], rows, cols) > 0
    return masks


def paste_box_masks(box_logits: np.ndarray, xyxy_frame: np.ndarray, frame_hw: Tuple[int, int],
                    spans: Optional[np.ndarray] = None) -> np.ndarray:
    """Mask R-CNN's masks in the frame: bool (N, H, W) from float (N, m, m) logits, each covering its box.

    xyxy_frame: (N, 4) boxes in frame pixels; spans: their `mask_spans`, if the caller has them already.
    Mask cell i of a box spanning y1..y2 is centred at y1 + (i + 0.5) * (y2 - y1) / m (as RoI Align samples it);
    the logits are bilinearly resampled at the centres of the frame pixels inside the box (the border cells extend
    to the box edge) and a pixel is in the mask where the logit is > 0.
    """
    box_logits = np.asarray(box_logits, dtype=np.float32)
    masks = np.zeros((len(box_logits), *frame_hw), dtype=bool)
    size = box_logits.shape[-1]
    xyxy_frame = np.asarray(xyxy_frame, dtype=np.float32)
    spans = mask_spans(xyxy_frame, frame_hw) if spans is None else np.asarray(spans, dtype=np.int64).reshape(-1, 4)
    for n, ((y1, y2, x1, x2), box) in enumerate(zip(spans.tolist(), xyxy_frame)):
        if y1 == y2 or x1 == x2:
            continue
        rows = _box_taps(np.arange(y1, y2), box[1], box[3], size)
        cols = _box_taps(np.arange(x1, x2), box[0], box[2], size)
        masks[n, y1:y2, x1:x2] = _resample(box_logits[n:n + 1], rows, cols)[0] > 0
    return masks


def _box_taps(pixels: np.ndarray, start: float, end: float, size: int):
    """Linear taps into a box's `size` mask cells at the centres of frame `pixels` (ints) inside start..end."""
    coords = (pixels.astype(np.float32) + np.float32(0.5) - np.float32(start)) * np.float32(size / max(end - start, 1e-6))
    return linear_taps_at(coords - np.float32(0.5), size)


def _box_logits(protos: np.ndarray, coef: np.ndarray, rows, cols) -> np.ndarray:
    """Mask logits (box_h, box_w) of one box at its row and column taps (i0, i1, w1), each non-decreasing: combine
    only the prototype cells the box samples (coef @ protos), then interpolate rows, then columns."""
    r0, r1, rw = rows
    c0, c1, cw = cols
    top, bottom, left, right = r0[0], r1[-1] + 1, c0[0], c1[-1] + 1
    cells = protos[:, top:bottom, left:right]
    region = np.dot(coef[None], cells.reshape(len(coef), -1)).reshape(cells.shape[1:])
    low = region[r0 - top]
    along_rows = low + (region[r1 - top] - low) * rw[:, None]
    start = along_rows.take(c0 - left, axis=1)
    return start + (along_rows.take(c1 - left, axis=1) - start) * cw


def semantic_logits_in_frame(logits: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """Semantic logits (S, h, w) covering the network input -> float32 (S, H, W) bilinearly resampled onto the frame."""
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 3:
        raise EdgedetError(f"semantic logits must be (S, h, w), got shape {logits.shape}")
    return _resample(logits, _frame_taps(letterbox, 0, logits.shape[1]), _frame_taps(letterbox, 1, logits.shape[2]))


def semantic_map(logits: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """Semantic logits (S, h, w) covering the network input -> int32 (H, W) class map of the original frame."""
    return semantic_logits_in_frame(logits, letterbox).argmax(axis=0).astype(np.int32)
