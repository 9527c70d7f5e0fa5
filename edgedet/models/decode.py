"""Torch twin of the device runtime's edgedet-head decode (device/layouts/edgedet.py), for the loss and training validation.

A level is the model's {"box", "score"[, "mask"]} outputs; `level_values` joins them per anchor into
raw (to, tx, ty, tw, th, tc_1..tc_C, m_1..m_M), and for anchor k at cell (row i, col j) of a level with stride s:
    cx = (j + 2*sigmoid(tx) - 0.5) * s        cy = (i + 2*sigmoid(ty) - 0.5) * s
    w  = anchor_w[k] * (2*sigmoid(tw))**2     h  = anchor_h[k] * (2*sigmoid(th))**2
    objectness = sigmoid(to), class prob = sigmoid(tc), score = objectness * class prob; mask coefs raw.
Candidates are ordered by level (finest first), then anchor k, then row i, then column j.
A test checks this module against the NumPy decode within 1e-5.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Sequence, Tuple

import torch

from .boxes import cxcywh_to_xyxy


@dataclass
class DecodedHead:
    """All candidates of a batch: N = sum over levels of K*H*W."""

    xyxy: torch.Tensor  # (B, N, 4) float boxes, corners in input pixels
    objectness: torch.Tensor  # (B, N) float in 0..1
    class_probs: torch.Tensor  # (B, N, C) float in 0..1; score = objectness * class_probs
    mask_coefs: torch.Tensor  # (B, N, M) raw mask coefficients (M may be 0)

    @property
    def scores(self) -> torch.Tensor:
        """(B, N, C) objectness * class probability."""
        return self.objectness[..., None] * self.class_probs


def split_anchor_channels(raw: torch.Tensor, num_anchors: int) -> torch.Tensor:
    """(B, K*D, H, W) -> (B, K, H, W, D)."""
    b, channels, h, w = raw.shape
    return raw.view(b, num_anchors, channels // num_anchors, h, w).permute(0, 1, 3, 4, 2)


def level_values(parts: Mapping[str, torch.Tensor], num_anchors: int) -> torch.Tensor:
    """One level's {"box": (B, K*4, H, W), "score": (B, K*(1+C), H, W)[, "mask": (B, K*M, H, W)]} ->
    (B, K, H, W, 5+C+M) per-anchor raw values (to, tx, ty, tw, th, tc_1..tc_C, m_1..m_M)."""
    box = split_anchor_channels(parts["box"], num_anchors)
    score = split_anchor_channels(parts["score"], num_anchors)
    pieces = [score[..., :1], box, score[..., 1:]]
    if "mask" in parts:
        pieces.append(split_anchor_channels(parts["mask"], num_anchors))
    return torch.cat(pieces, dim=-1)


def cell_grid(h: int, w: int, device=None, dtype=torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """Column index j and row index i, each (H, W)."""
    rows, cols = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
    )
    return cols, rows


def decode_boxes_cxcywh(
    txywh: torch.Tensor, anchors_wh: torch.Tensor, stride: float
) -> torch.Tensor:
    """(B, K, H, W, 4) raw (tx, ty, tw, th) -> (B, K, H, W, 4) (cx, cy, w, h) in input pixels.

    `anchors_wh` is (K, 2) in input pixels.
    """
    _, _, h, w, _ = txywh.shape
    cols, rows = cell_grid(h, w, txywh.device, txywh.dtype)
    xy = 2.0 * torch.sigmoid(txywh[..., 0:2]) - 0.5
    cx = (cols + xy[..., 0]) * stride
    cy = (rows + xy[..., 1]) * stride
    wh = (2.0 * torch.sigmoid(txywh[..., 2:4])) ** 2 * anchors_wh.to(txywh)[None, :, None, None, :]
    return torch.stack([cx, cy, wh[..., 0], wh[..., 1]], dim=-1)


def decode_head(
    levels: Sequence[Mapping[str, torch.Tensor]],
    anchors: Sequence[Sequence[Tuple[float, float]]],
    strides: Sequence[int],
    num_classes: int,
) -> DecodedHead:
    """Raw NCHW level outputs {"box", "score"[, "mask"]: (B, K*D, H/s, W/s)}, finest first -> all candidates,
    in the runtime's order."""
    parts: List[Tuple[torch.Tensor, ...]] = []
    for level, level_anchors, stride in zip(levels, anchors, strides):
        values = level_values(level, len(level_anchors)).float()
        anchors_wh = torch.tensor(level_anchors, dtype=values.dtype, device=values.device)
        boxes = cxcywh_to_xyxy(decode_boxes_cxcywh(values[..., 1:5], anchors_wh, float(stride)))
        b, n = values.shape[0], values.shape[1] * values.shape[2] * values.shape[3]
        parts.append((
            boxes.reshape(b, n, 4),
            torch.sigmoid(values[..., 0]).reshape(b, n),
            torch.sigmoid(values[..., 5:5 + num_classes]).reshape(b, n, num_classes),
            values[..., 5 + num_classes:].reshape(b, n, values.shape[-1] - 5 - num_classes),
        ))
    xyxy, objectness, class_probs, coefs = (torch.cat(tensors, dim=1) for tensors in zip(*parts))
    return DecodedHead(xyxy=xyxy, objectness=objectness, class_probs=class_probs, mask_coefs=coefs)
