"""Training loss of the edgedet model: objectness, class, box (CIoU), instance-mask and semantic terms.

Targets are assigned by anchor shape, as the lecture describes and YOLOv5 does: a ground-truth box goes to
every anchor (of every level) whose width and height ratios to the box are within `anchor_ratio`, in the cell
holding the box centre and the two neighbouring cells nearest to the centre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .models.boxes import cxcywh_to_xyxy
from .models.decode import level_values
from .models.model import STRIDES, ModelConfig, group_outputs

PROTO_STRIDE = 4  # prototypes are at 1/4 of the input resolution
LEVEL_BALANCE = (4.0, 1.0, 0.4)  # objectness weight of p3, p4, p5 (fine levels have many more negatives)
NEIGHBOUR_OFFSETS = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))  # (dx, dy) cell offsets considered per target


@dataclass
class LossGains:
    """Weights of the loss terms (the total is their weighted sum, times the batch size)."""

    box: float = 0.05  # 1 - CIoU over positive anchors
    obj: float = 1.0  # objectness BCE over all anchors (target = IoU of the prediction)
    cls: float = 0.2  # class BCE over positive anchors
    mask: float = 0.05  # per-instance mask BCE on the prototypes, cropped to the box
    seg: float = 0.2  # semantic cross-entropy (label 255 ignored)
    anchor_ratio: float = 4.0  # max width/height ratio between a box and an anchor it is assigned to
    max_mask_positives: int = 1024  # mask loss uses at most this many positives per level (random subset)


@dataclass
class Targets:
    """The ground truth of one batch, in input pixels."""

    boxes: torch.Tensor  # (T, 6) float: image index in batch, class id, cx, cy, w, h
    masks: Optional[torch.Tensor] = None  # (T, H/4, W/4) float 0/1 instance masks at prototype resolution
    semantic: Optional[torch.Tensor] = None  # (B, H, W) int64 labels, 255 = ignore

    def to(self, device) -> "Targets":
        """The same targets on `device` (non-blocking copies from pinned memory)."""
        def move(tensor):
            return None if tensor is None else tensor.to(device, non_blocking=True)

        return Targets(boxes=move(self.boxes), masks=move(self.masks), semantic=move(self.semantic))


@dataclass
class Assignment:
    """Positive anchors of one level: parallel (P,) tensors."""

    image: torch.Tensor  # batch index
    anchor: torch.Tensor  # anchor index k
    row: torch.Tensor  # cell row i
    col: torch.Tensor  # cell column j
    target: torch.Tensor  # index into Targets.boxes
    box_xy: torch.Tensor  # (P, 2) box centre relative to the cell corner, in cells (-0.5..1.5)
    box_wh: torch.Tensor  # (P, 2) box size in cells


def bbox_ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of matching rows of (P, 4) cxcywh boxes -> (P,). CIoU = IoU - d^2/c^2 - alpha*v."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    b1x1, b1x2, b1y1, b1y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2x1, b2x2, b2y1, b2y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0) * (torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    diagonal = cw ** 2 + ch ** 2 + eps
    centre_distance = (x2 - x1) ** 2 + (y2 - y1) ** 2
    v = (4 / math.pi ** 2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (centre_distance / diagonal + v * alpha)


def assign_level(
    boxes: torch.Tensor, anchors_wh: torch.Tensor, stride: int, grid_hw: Tuple[int, int], anchor_ratio: float
) -> Assignment:
    """Match targets (T, 6) to anchors (K, 2 pixels) of one level with grid (H, W) by shape ratio + neighbour cells."""
    grid_h, grid_w = grid_hw
    xy = boxes[:, 2:4] / stride
    wh = boxes[:, 4:6] / stride
    ratio = wh[:, None, :] / (anchors_wh[None, :, :] / stride)
    matched = torch.max(ratio, 1.0 / ratio).amax(dim=2) < anchor_ratio  # (T, K)
    target_idx, anchor_idx = matched.nonzero(as_tuple=True)
    xy, wh = xy[target_idx], wh[target_idx]
    frac = xy % 1.0
    upper = torch.tensor([grid_w, grid_h], dtype=xy.dtype, device=xy.device)
    use = [
        torch.ones_like(frac[:, 0], dtype=torch.bool),
        (frac[:, 0] > 0.5) & (xy[:, 0] < upper[0] - 1),
        (frac[:, 1] > 0.5) & (xy[:, 1] < upper[1] - 1),
        (frac[:, 0] < 0.5) & (xy[:, 0] > 1),
        (frac[:, 1] < 0.5) & (xy[:, 1] > 1),
    ]
    parts = []
    for (dx, dy), keep in zip(NEIGHBOUR_OFFSETS, use):
        cell = (xy[keep] + torch.tensor([dx, dy], dtype=xy.dtype, device=xy.device)).floor()
        cell[:, 0].clamp_(0, grid_w - 1)
        cell[:, 1].clamp_(0, grid_h - 1)
        parts.append((target_idx[keep], anchor_idx[keep], cell, xy[keep] - cell, wh[keep]))
    t, k, cell, box_xy, box_wh = (torch.cat(items) for items in zip(*parts))
    return Assignment(
        image=boxes[t, 0].long(), anchor=k, row=cell[:, 1].long(), col=cell[:, 0].long(),
        target=t, box_xy=box_xy, box_wh=box_wh,
    )


class EdgeDetLoss:
    """Callable: (raw model outputs, Targets) -> (total loss scalar, dict of detached component values)."""

    def __init__(self, config: ModelConfig, gains: Optional[LossGains] = None):
        self.config = config
        self.gains = gains or LossGains()
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, outputs: Sequence[torch.Tensor], targets: Targets) -> Tuple[torch.Tensor, Dict[str, float]]:
        config, gains = self.config, self.gains
        heads = group_outputs(outputs, config)
        seg_logits, protos = heads.seg, heads.proto
        batch_size = outputs[0].shape[0]
        zero = outputs[0].new_zeros(())
        terms = {"box": zero, "obj": zero, "cls": zero, "mask": zero, "seg": zero}
        for level, anchors, stride, balance in zip(heads.levels, config.anchors, STRIDES, LEVEL_BALANCE):
            level_terms = self._level_loss(level, anchors, stride, targets, protos)
            terms["box"] = terms["box"] + level_terms["box"]
            terms["obj"] = terms["obj"] + level_terms["obj"] * balance
            terms["cls"] = terms["cls"] + level_terms["cls"]
            terms["mask"] = terms["mask"] + level_terms["mask"]
        if seg_logits is not None and targets.semantic is not None:
            terms["seg"] = semantic_loss(seg_logits, targets.semantic)
        weighted = {name: value * getattr(gains, name) for name, value in terms.items()}
        total = sum(weighted.values()) * batch_size
        return total, {name: float(value.detach()) for name, value in terms.items()}

    def _level_loss(self, level, anchors, stride, targets: Targets, protos) -> Dict[str, torch.Tensor]:
        """Loss terms of one level: {"box", "score"[, "mask"]: (B, K*D, H, W)} raw outputs."""
        config = self.config
        values = level_values(level, config.num_anchors)  # (B, K, H, W, 5+C+M)
        anchors_wh = torch.tensor(anchors, dtype=values.dtype, device=values.device)
        grid_hw = tuple(values.shape[2:4])
        obj_target = torch.zeros_like(values[..., 0])
        zero = values.new_zeros(())
        terms = {"box": zero, "cls": zero, "mask": zero}
        if len(targets.boxes):
            a = assign_level(targets.boxes.to(values.dtype), anchors_wh, stride, grid_hw, self.gains.anchor_ratio)
            if len(a.target):
                picked = values[a.image, a.anchor, a.row, a.col]  # (P, 5+C+M)
                pred_xy = 2.0 * torch.sigmoid(picked[:, 1:3]) - 0.5
                pred_wh = (2.0 * torch.sigmoid(picked[:, 3:5])) ** 2 * (anchors_wh[a.anchor] / stride)
                ciou = bbox_ciou(torch.cat([pred_xy, pred_wh], 1), torch.cat([a.box_xy, a.box_wh], 1))
                terms["box"] = (1.0 - ciou).mean()
                iou = ciou.detach().clamp(0)
                order = iou.argsort()  # the best match of a cell is written last and wins
                obj_target[a.image[order], a.anchor[order], a.row[order], a.col[order]] = iou[order].to(obj_target.dtype)
                terms["cls"] = self._class_loss(picked[:, 5:5 + config.num_classes], targets.boxes[a.target, 1].long())
                if protos is not None and targets.masks is not None:
                    terms["mask"] = self._mask_loss(picked[:, 5 + config.num_classes:], protos, a, targets, stride)
        terms["obj"] = F.binary_cross_entropy_with_logits(values[..., 0], obj_target)
        return terms

    def _class_loss(self, logits: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """BCE of (P, C) class logits against one-hot class ids (P,)."""
        one_hot = F.one_hot(class_ids, self.config.num_classes).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, one_hot)

    def _mask_loss(self, coefs, protos, a: Assignment, targets: Targets, stride: int) -> torch.Tensor:
        """BCE of coefs @ protos against the GT mask, inside the GT box, normalised by the box area (YOLACT)."""
        index = torch.arange(len(coefs), device=coefs.device)
        if len(index) > self.gains.max_mask_positives:
            index = torch.randperm(len(index), generator=self.generator)[: self.gains.max_mask_positives]
        coefs, image, target = coefs[index], a.image[index], a.target[index]
        order = image.argsort()
        coefs, image, target = coefs[order], image[order], target[order]
        proto_hw = protos.shape[2:]
        flat = protos.flatten(2)  # (B, M, Hp*Wp)
        counts = torch.bincount(image, minlength=len(protos)).tolist()
        logits = torch.cat([
            c @ flat[b] for b, c in enumerate(coefs.split(counts)) if counts[b]
        ]).view(-1, *proto_hw)  # (P, Hp, Wp)
        gt = targets.masks[target].to(logits.dtype)
        box_xyxy = cxcywh_to_xyxy(targets.boxes[target, 2:6].to(logits.dtype)) / PROTO_STRIDE
        crop = box_crop_mask(box_xyxy, proto_hw)
        bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
        area = ((box_xyxy[:, 2] - box_xyxy[:, 0]) * (box_xyxy[:, 3] - box_xyxy[:, 1])).clamp(min=1.0)
        return ((bce * crop).sum(dim=(1, 2)) / area).mean()


def box_crop_mask(xyxy: torch.Tensor, shape_hw: Tuple[int, int]) -> torch.Tensor:
    """(P, 4) corner boxes in mask pixels -> (P, H, W) float 1 inside the box (pixel centres), else 0."""
    h, w = shape_hw
    cols = torch.arange(w, device=xyxy.device, dtype=xyxy.dtype)[None, None, :] + 0.5
    rows = torch.arange(h, device=xyxy.device, dtype=xyxy.dtype)[None, :, None] + 0.5
    x1, y1, x2, y2 = (xyxy[:, i, None, None] for i in range(4))
    return ((cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)).to(xyxy.dtype)


def semantic_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, S, h, w) logits, bilinearly upsampled to the (B, H, W) labels; 255 is ignored."""
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    if not (labels != 255).any():
        return up.sum() * 0.0
    return F.cross_entropy(up, labels, ignore_index=255)

