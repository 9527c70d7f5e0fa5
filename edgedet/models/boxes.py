"""Torch twins of device/boxes.py, for the losses and training-time decodes: box formats and IoU.
Coordinates are continuous (width = x2 - x1); every function takes (..., 4) tensors."""
from __future__ import annotations

import torch


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre/size -> (..., 4) corners, same dtype and device."""
    half = boxes[..., 2:4] / 2
    return torch.cat([boxes[..., 0:2] - half, boxes[..., 0:2] + half], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) corners -> (..., 4) centre/size."""
    return torch.cat([(boxes[..., 0:2] + boxes[..., 2:4]) / 2, boxes[..., 2:4] - boxes[..., 0:2]], dim=-1)


def box_iou(a_xyxy: torch.Tensor, b_xyxy: torch.Tensor) -> torch.Tensor:
    """(N, 4) x (T, 4) corners -> (N, T) IoU; boxes of no area have IoU 0 with everything."""
    top_left = torch.max(a_xyxy[:, None, :2], b_xyxy[None, :, :2])
    bottom_right = torch.min(a_xyxy[:, None, 2:], b_xyxy[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area_a = (a_xyxy[:, 2:] - a_xyxy[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b_xyxy[:, 2:] - b_xyxy[:, :2]).clamp(min=0).prod(dim=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)
