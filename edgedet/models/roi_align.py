"""Torch twin of device/roi_align.py (RoI Align, aligned convention, and its FPN level assignment), for training the
two-stage detector: differentiable in the features, vectorised over RoIs (no Python loop over them). The
coordinate rules, the border rule and the level rule (CANONICAL_SIZE, CANONICAL_LEVEL) are documented there.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch

from edgedet.device.roi_align import CANONICAL_LEVEL, CANONICAL_SIZE, ROI_LEVEL_EPS


def roi_align(features: torch.Tensor, rois: torch.Tensor, spatial_scale: float, output_size: Tuple[int, int],
              sampling_ratio: int = 2) -> torch.Tensor:
    """features (B, C, H, W), rois (R, 5) (batch index, x1, y1, x2, y2) in input pixels -> (R, C, oh, ow) pooled
    features, same dtype as `features`; gradients flow to `features`."""
    b, c, h, w = features.shape
    out_h, out_w = int(output_size[0]), int(output_size[1])
    g = int(sampling_ratio)
    # coordinates in at least float32 (half precision is 0.25 px at 320 px); weights in the features' dtype
    rois = rois.to(torch.promote_types(features.dtype, torch.float32)).reshape(-1, 5)
    ys = _sample_coords(rois[:, 2], rois[:, 4], spatial_scale, out_h, g)  # (R, oh*g)
    xs = _sample_coords(rois[:, 1], rois[:, 3], spatial_scale, out_w, g)  # (R, ow*g)
    y_low, y_high, wy_low, wy_high = _linear_taps(ys, h)
    x_low, x_high, wx_low, wx_high = _linear_taps(xs, w)
    flat = features.permute(0, 2, 3, 1).reshape(b * h * w, c)  # rows (image, y, x), channels last
    base = rois[:, 0].long()[:, None, None] * (h * w)
    samples = features.new_zeros((len(rois), out_h * g, out_w * g, c))
    for y_index, wy in ((y_low, wy_low), (y_high, wy_high)):
        for x_index, wx in ((x_low, wx_low), (x_high, wx_high)):
            rows = base + y_index[:, :, None] * w + x_index[:, None, :]  # (R, oh*g, ow*g)
            weight = (wy[:, :, None] * wx[:, None, :]).to(features.dtype)
            samples = samples + weight[..., None] * flat[rows]
    pooled = samples.reshape(len(rois), out_h, g, out_w, g, c).mean(dim=(2, 4))
    return pooled.permute(0, 3, 1, 2).contiguous()


def _sample_coords(start_px: torch.Tensor, end_px: torch.Tensor, scale: float, bins: int, g: int) -> torch.Tensor:
    """(R,) RoI edges in input pixels -> (R, bins * g) sample coordinates on the feature map, bin-major."""
    start = start_px * scale - 0.5
    bin_size = (end_px * scale - 0.5 - start) / bins
    grid = torch.arange(bins, dtype=start.dtype, device=start.device)[:, None]
    sub = (torch.arange(g, dtype=start.dtype, device=start.device)[None, :] + 0.5) / g
    return start[:, None] + (grid + sub).reshape(-1)[None, :] * bin_size[:, None]


def _linear_taps(coords: torch.Tensor, size: int):
    """Sample coordinates (R, S) on an axis of `size` -> (low index, high index, low weight, high weight), each
    (R, S); weights are 0 for samples outside [-1, size] (the RoIAlign border rule)."""
    inside = ((coords >= -1.0) & (coords <= size)).to(coords.dtype)
    clamped = coords.clamp(0.0, size - 1)
    low = clamped.floor()
    frac = clamped - low
    low = low.long()
    high = (low + 1).clamp(max=size - 1)
    return low, high, (1.0 - frac) * inside, frac * inside


def fpn_levels(rois: torch.Tensor, min_level: int, max_level: int) -> torch.Tensor:
    """rois (R, 5) (batch index, x1, y1, x2, y2) -> int64 (R,) FPN level of each, clamped to the given levels."""
    rois = rois.detach().double().reshape(-1, 5)
    side = torch.sqrt((rois[:, 3] - rois[:, 1]).clamp(min=0) * (rois[:, 4] - rois[:, 2]).clamp(min=0))
    level = torch.floor(CANONICAL_LEVEL + torch.log2(side / CANONICAL_SIZE + ROI_LEVEL_EPS))
    return level.clamp(min_level, max_level).long()


def roi_align_levels(features_per_level: Sequence[torch.Tensor], strides: Sequence[int], rois: torch.Tensor,
                     output_size: Tuple[int, int], sampling_ratio: int = 2) -> torch.Tensor:
    """Pool every RoI from its FPN level: features_per_level (B, C, H/s, W/s) for strides (e.g. 8, 16, 32,
    consecutive powers of two), rois (R, 5) -> (R, C, oh, ow) in the order of `rois`."""
    rois = rois.reshape(-1, 5)
    first = int(round(math.log2(strides[0])))
    levels = fpn_levels(rois, first, first + len(strides) - 1) - first
    reference = features_per_level[0]
    out = reference.new_zeros((len(rois), reference.shape[1]) + tuple(int(v) for v in output_size))
    for index, (features, stride) in enumerate(zip(features_per_level, strides)):
        chosen = torch.nonzero(levels == index).flatten()
        if len(chosen):
            out = out.index_copy(0, chosen, roi_align(features, rois[chosen], 1.0 / stride, output_size,
                                                       sampling_ratio))
    return out
