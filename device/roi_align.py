"""RoI Align in NumPy (Mask R-CNN, aligned convention), the device side of the two-stage detector's second stage.

For a RoI (b, x1, y1, x2, y2) in input pixels and a feature map of stride s (spatial_scale = 1/s), the RoI is
mapped to continuous feature coordinates, where feature pixel (i, j) has its centre at (i + 0.5, j + 0.5):
    start = x1 * scale - 0.5, end = x2 * scale - 0.5   (same for y; no minimum size)
and split into oh x ow bins. Each bin averages sampling_ratio x sampling_ratio bilinear samples at the centres of a
regular sub-grid, sample (iy, ix) of bin (ph, pw) at
    y = start_y + (ph + (iy + 0.5) / g) * bin_h,   x = start_x + (pw + (ix + 0.5) / g) * bin_w.
A sample with y outside [-1, H] or x outside [-1, W] contributes 0 (it still counts in the average); the others
are clamped to [0, H - 1] x [0, W - 1] and interpolated between their four neighbours: exactly Detectron2's and
torchvision's RoIAlign(aligned=True). edgedet/models/roi_align.py is the torch twin (training); a test holds both
to a per-bin loop.

`roi_align_levels` pools each RoI from one FPN level chosen by its size (`fpn_levels`).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

# FPN level rule k = floor(K0 + log2(sqrt(w * h) / CANONICAL_SIZE)), levels 3..5 (strides 8/16/32). FPN's own
# (224 px -> P4) suits 800 px images; this project's inputs are 320x320 with objects of 12-160 px, where it would
# put nearly everything on P3. With 112 px -> P4 a RoI lands on the coarsest level where it still spans at least
# 7 feature cells, one per bin of the 7x7 box-head grid (12-112 px: P3, 112-224 px: P4, larger: P5).
CANONICAL_SIZE = 112.0  # RoI side (sqrt of area, input pixels) mapped to level K0
CANONICAL_LEVEL = 4  # K0
ROI_LEVEL_EPS = 1e-6  # keeps log2 finite for empty RoIs (they go to the finest level)


def roi_align(features: np.ndarray, rois: np.ndarray, spatial_scale: float, output_size: Tuple[int, int],
              sampling_ratio: int = 2) -> np.ndarray:
    """features float32 (B, C, H, W), rois (R, 5) (batch index, x1, y1, x2, y2) in input pixels -> float32
    (R, C, oh, ow) pooled features. Vectorised over RoIs and samples (one gather per bilinear corner)."""
    features = np.asarray(features, dtype=np.float32)
    rois = np.asarray(rois, dtype=np.float32).reshape(-1, 5)
    b, c, h, w = features.shape
    out_h, out_w = int(output_size[0]), int(output_size[1])
    g = int(sampling_ratio)
    ys = _sample_coords(rois[:, 2], rois[:, 4], spatial_scale, out_h, g)  # (R, oh*g)
    xs = _sample_coords(rois[:, 1], rois[:, 3], spatial_scale, out_w, g)  # (R, ow*g)
    y_low, y_high, wy_low, wy_high = _linear_taps(ys, h)
    x_low, x_high, wx_low, wx_high = _linear_taps(xs, w)
    flat = features.transpose(0, 2, 3, 1).reshape(b * h * w, c)  # rows (image, y, x), channels last
    base = rois[:, 0].astype(np.int64)[:, None, None] * (h * w)
    samples = np.zeros((len(rois), out_h * g, out_w * g, c), dtype=np.float32)
    for y_index, wy in ((y_low, wy_low), (y_high, wy_high)):
        for x_index, wx in ((x_low, wx_low), (x_high, wx_high)):
            rows = base + y_index[:, :, None] * w + x_index[:, None, :]  # (R, oh*g, ow*g)
            samples += (wy[:, :, None] * wx[:, None, :])[..., None] * flat[rows]
    pooled = samples.reshape(len(rois), out_h, g, out_w, g, c).mean(axis=(2, 4))
    return np.ascontiguousarray(pooled.transpose(0, 3, 1, 2))


def _sample_coords(start_px: np.ndarray, end_px: np.ndarray, scale: float, bins: int, g: int) -> np.ndarray:
    """(R,) RoI edges in input pixels -> float32 (R, bins * g) sample coordinates on the feature map, bin-major."""
    start = start_px * np.float32(scale) - np.float32(0.5)
    bin_size = (end_px * np.float32(scale) - np.float32(0.5) - start) / np.float32(bins)
    offsets = (np.arange(bins)[:, None] + (np.arange(g)[None, :] + 0.5) / g).reshape(-1).astype(np.float32)
    return start[:, None] + offsets[None, :] * bin_size[:, None]


def _linear_taps(coords: np.ndarray, size: int):
    """Sample coordinates (R, S) on an axis of `size` -> (low index, high index, low weight, high weight), each
    (R, S); weights are 0 for samples outside [-1, size] (the RoIAlign border rule)."""
    inside = (coords >= -1.0) & (coords <= size)
    clamped = np.clip(coords, 0.0, size - 1)
    low = np.floor(clamped).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    frac = (clamped - low).astype(np.float32)
    return low, high, (1.0 - frac) * inside, frac * inside


def fpn_levels(rois: np.ndarray, min_level: int, max_level: int) -> np.ndarray:
    """rois (R, 5) (batch index, x1, y1, x2, y2) -> int64 (R,) FPN level k of each (the rule above), clamped to
    [min_level, max_level]."""
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    side = np.sqrt(np.clip(rois[:, 3] - rois[:, 1], 0, None) * np.clip(rois[:, 4] - rois[:, 2], 0, None))
    level = np.floor(CANONICAL_LEVEL + np.log2(side / CANONICAL_SIZE + ROI_LEVEL_EPS))
    return np.clip(level, min_level, max_level).astype(np.int64)


def roi_align_levels(features_per_level: Sequence[np.ndarray], strides: Sequence[int], rois: np.ndarray,
                     output_size: Tuple[int, int], sampling_ratio: int = 2) -> np.ndarray:
    """Pool every RoI from its FPN level: features_per_level float32 (B, C, H/s, W/s) for strides (e.g. 8, 16, 32,
    consecutive powers of two), rois (R, 5) -> float32 (R, C, oh, ow) in the order of `rois`."""
    rois = np.asarray(rois, dtype=np.float32).reshape(-1, 5)
    first = int(round(np.log2(strides[0])))
    levels = fpn_levels(rois, first, first + len(strides) - 1) - first
    channels = features_per_level[0].shape[1]
    out = np.zeros((len(rois), channels) + tuple(int(v) for v in output_size), dtype=np.float32)
    for index, (features, stride) in enumerate(zip(features_per_level, strides)):
        chosen = np.flatnonzero(levels == index)
        if len(chosen):
            out[chosen] = roi_align(features, rois[chosen], 1.0 / stride, output_size, sampling_ratio)
    return out
