"""Torch twin of device/box_coder.py (SSD and Faster R-CNN offsets against reference boxes), for the losses and
training-time decode; the formulas and `MAX_LOG_SCALE` are documented there. Boxes are (N, 4) xyxy corners."""
from __future__ import annotations

from typing import Sequence

import torch

from edgedet.device.box_coder import MAX_LOG_SCALE
from .boxes import cxcywh_to_xyxy, xyxy_to_cxcywh


def decode_deltas(deltas: torch.Tensor, reference_xyxy: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """(N, 4) (dx, dy, dw, dh) offsets against (N, 4) xyxy reference boxes -> (N, 4) xyxy boxes."""
    reference = xyxy_to_cxcywh(reference_xyxy)
    scaled = deltas / deltas.new_tensor(list(weights))
    centre = reference[:, 0:2] + scaled[:, 0:2] * reference[:, 2:4]
    size = reference[:, 2:4] * torch.exp(scaled[:, 2:4].clamp(max=MAX_LOG_SCALE))
    return cxcywh_to_xyxy(torch.cat([centre, size], dim=1))


def encode_boxes(boxes_xyxy: torch.Tensor, reference_xyxy: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """(N, 4) xyxy boxes against (N, 4) xyxy reference boxes (positive sides) -> (N, 4) offsets."""
    boxes, reference = xyxy_to_cxcywh(boxes_xyxy), xyxy_to_cxcywh(reference_xyxy)
    centre = (boxes[:, 0:2] - reference[:, 0:2]) / reference[:, 2:4]
    size = torch.log(boxes[:, 2:4] / reference[:, 2:4])
    return torch.cat([centre, size], dim=1) * boxes.new_tensor(list(weights))
