"""Segmentation outputs in the original frame: instance masks from prototypes, semantic class maps, panoptic merge.

Instance masks follow the prototype recipe: logits = coefficients @ prototypes (linear), computed only for boxes
kept by NMS and only over each box; the logits are bilinearly resampled straight to frame pixels (through the
letterbox) and thresholded at 0 there, never at prototype resolution.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

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


def _pixel_spans(boxes_xyxy: np.ndarray, size_hw: Tuple[int, int]) -> List[Tuple[int, int, int, int]]:
    """float32 (N, 4) xyxy frame boxes -> per box (row0, row1, col0, col1): the frame pixels whose centres lie in
    the box, clipped to the frame (row1 <= row0 or col1 <= col0 when none)."""
    h, w = size_hw
    bounds = np.clip(np.ceil(boxes_xyxy - np.float32(0.5)), 0, np.array([w, h, w, h], dtype=np.float32))
    return [(y1, max(y1, y2), x1, max(x1, x2)) for x1, y1, x2, y2 in bounds.astype(np.int64).tolist()]


@functools.lru_cache(maxsize=16)
def _frame_taps(letterbox: Letterbox, axis: int, map_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear taps (i0, i1, w1) into a map of `map_size` cells covering the network input, for every frame pixel
    along `axis` (0 = rows, 1 = cols); read-only, cached per letterbox (a box takes a slice)."""
    size = letterbox.src_hw[axis]
    taps = linear_taps_at(frame_to_map_coords(np.arange(size), axis, map_size, letterbox), map_size)
    for array in taps:
        array.setflags(write=False)
    return taps


def instance_masks(protos: np.ndarray, coefs: np.ndarray, xyxy_input: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """Masks of N kept detections: bool (N, h, w) at the original frame's resolution.

    protos:     float32 (M, ph, pw) prototypes covering the whole network input.
    coefs:      float32 (N, M) mask coefficients of the kept boxes.
    xyxy_input: (N, 4) boxes in network-input pixels; each mask is True only inside its box.
    A pixel is in the mask where the bilinearly resampled logit coefs @ protos is > 0.
    """
    protos = np.asarray(protos, dtype=np.float32)
    coefs = np.asarray(coefs, dtype=np.float32).reshape(-1, protos.shape[0])
    frame_h, frame_w = letterbox.src_hw
    masks = np.zeros((len(coefs), frame_h, frame_w), dtype=bool)
    row_taps = _frame_taps(letterbox, 0, protos.shape[1])
    col_taps = _frame_taps(letterbox, 1, protos.shape[2])
    spans = _pixel_spans(letterbox.boxes_to_original(xyxy_input), (frame_h, frame_w))
    for n, (y1, y2, x1, x2) in enumerate(spans):
        if y1 == y2 or x1 == x2:
            continue
        rows = tuple(t[y1:y2] for t in row_taps)
        cols = tuple(t[x1:x2] for t in col_taps)
        masks[n, y1:y2, x1:x2] = _box_logits(protos, coefs[n], rows, cols) > 0
    return masks


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
    frame_h, frame_w = letterbox.src_hw
    rows = linear_taps_at(frame_to_map_coords(np.arange(frame_h), 0, logits.shape[1], letterbox), logits.shape[1])
    cols = linear_taps_at(frame_to_map_coords(np.arange(frame_w), 1, logits.shape[2], letterbox), logits.shape[2])
    return _resample(logits, rows, cols)


def semantic_map(logits: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """Semantic logits (S, h, w) covering the network input -> int32 (H, W) class map of the original frame."""
    return semantic_logits_in_frame(logits, letterbox).argmax(axis=0).astype(np.int32)


@dataclass(frozen=True)
class PanopticSegment:
    """One segment of a panoptic map."""

    id: int  # value of this segment's pixels in the segment map (1..), 0 = void
    label: int  # semantic label (index into spec.semantic_names)
    is_thing: bool  # True for an instance (from a detection), False for a stuff region
    score: float  # detection score for things, 1.0 for stuff
    area: int  # pixels


def panoptic_merge(semantic: np.ndarray, masks: np.ndarray, scores: np.ndarray, thing_labels: Sequence[int],
                   thing_classes: Optional[Sequence[int]] = None, overlap_threshold: float = 0.5,
                   min_stuff_area: int = 0, ignore_label: int = 255) -> Tuple[np.ndarray, List[PanopticSegment]]:
    """Panoptic merge: things from instance masks, stuff from the semantic map.

    semantic:     int (H, W) semantic labels of the frame.
    masks:        bool (N, H, W) instance masks; scores (N,); thing_labels (N,) semantic label of each instance.
    thing_classes: semantic labels that are things (default: the labels in thing_labels).
    Instances are painted in descending score onto still-free pixels; one whose visible part is below
    `overlap_threshold` of its mask is dropped. Remaining pixels take their semantic label as stuff, except
    labels that belong to things (their pixels stay void) and `ignore_label`; stuff segments smaller than
    `min_stuff_area` stay void. Returns (int32 (H, W) segment ids, 0 = void; the segments).
    """
    semantic = np.asarray(semantic)
    masks = np.asarray(masks, dtype=bool).reshape(-1, *semantic.shape)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    thing_labels = np.asarray(thing_labels, dtype=np.int64).reshape(-1)
    if len(scores) != len(masks) or len(thing_labels) != len(masks):
        raise EdgedetError(f"panoptic merge: {len(masks)} masks, {len(scores)} scores, {len(thing_labels)} labels")
    segment_map = np.zeros(semantic.shape, dtype=np.int32)
    segments: List[PanopticSegment] = []
    for n in np.argsort(-scores, kind="stable"):
        area = int(masks[n].sum())
        visible = masks[n] & (segment_map == 0)
        if area == 0 or visible.sum() < overlap_threshold * area:
            continue
        segment_map[visible] = len(segments) + 1
        segments.append(PanopticSegment(len(segments) + 1, int(thing_labels[n]), True, float(scores[n]),
                                        int(visible.sum())))
    things = set(thing_labels.tolist() if thing_classes is None else [int(t) for t in thing_classes])
    free = segment_map == 0
    for label in np.unique(semantic[free]):
        if label == ignore_label or int(label) in things:
            continue
        region = free & (semantic == label)
        if region.sum() < max(min_stuff_area, 1):
            continue
        segment_map[region] = len(segments) + 1
        segments.append(PanopticSegment(len(segments) + 1, int(label), False, 1.0, int(region.sum())))
    return segment_map, segments
