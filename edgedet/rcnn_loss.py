"""Training targets and losses of the two-stage detector (edgedet/models/rcnn.py): the lecture's four Faster R-CNN
losses plus the Mask R-CNN mask loss.

- RPN: anchors are positive at IoU >= fg_iou with a ground-truth box, negative below bg_iou, ignored in between,
  and every ground-truth box also makes its best anchor(s) positive (so small boxes are never unmatched); a
  balanced random sample per image (at most `positive_fraction` positives) gets objectness BCE, its positives
  smooth-L1 on (dx, dy, dw, dh) with weights RPN_BOX_WEIGHTS.
- Box head: proposals plus the ground-truth boxes are matched; IoU >= fg_iou is foreground with the box's class,
  the rest background (class 0). A balanced sample per image gets softmax cross-entropy over (background,
  classes), its foreground smooth-L1 on the deltas of its own class (weights ROI_BOX_WEIGHTS).
- Mask head: the foreground RoIs of that sample; targets are the ground-truth mask (Targets.masks, 1/4
  resolution) RoI-aligned to the RoI's mask grid and thresholded at 0.5, as Detectron2 does; per-pixel BCE.

Matching runs in NumPy on detached boxes (edgedet.device.boxes.box_iou); only the loss terms are torch. The box
regression terms are summed and divided by the number of sampled anchors / RoIs (torchvision's normalisation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from edgedet.device.boxes import box_iou
from edgedet.device.layouts.rcnn import ROI_BOX_WEIGHTS
from edgedet.device.two_stage import RPN_BOX_WEIGHTS
from .loss import PROTO_STRIDE, Targets
from .models.box_coder import encode_boxes
from .models.boxes import cxcywh_to_xyxy
from .models.roi_align import roi_align

SMOOTH_L1_BETA = 1.0 / 9.0  # torchvision's beta for both box terms


@dataclass
class ImageTruth:
    """The ground truth of one image of a batch."""

    xyxy: torch.Tensor  # (T, 4) float boxes, corners in input pixels
    class_ids: torch.Tensor  # (T,) int64 class ids, 0-based (the box head's label is class id + 1)
    rows: torch.Tensor  # (T,) int64 rows of these boxes in Targets.boxes (and Targets.masks)


@dataclass
class RoiSample:
    """The RoIs sampled for the box and mask heads in a batch: parallel rows."""

    rois: torch.Tensor  # (R, 5) float (batch index, x1, y1, x2, y2) input pixels, detached
    labels: torch.Tensor  # (R,) int64: 0 background, 1..C class id + 1
    box_targets: torch.Tensor  # (R, 4) float ROI_BOX_WEIGHTS deltas to the matched box (meaningful where labels > 0)
    truth_rows: torch.Tensor  # (R,) int64 row of the matched box in Targets (meaningful where labels > 0)


def split_truth(targets: Targets, batch_size: int) -> List[ImageTruth]:
    """Targets.boxes (T, 6) (image, class, cx, cy, w, h) -> one ImageTruth per image of the batch."""
    boxes = targets.boxes
    image = boxes[:, 0].long()
    truths = []
    for b in range(batch_size):
        rows = torch.nonzero(image == b).flatten()
        truths.append(ImageTruth(cxcywh_to_xyxy(boxes[rows, 2:6]), boxes[rows, 1].long(), rows))
    return truths


def match_boxes(iou: np.ndarray, fg_iou: float, bg_iou: float, best_per_truth: bool) -> Tuple[np.ndarray, np.ndarray]:
    """iou (N, T) of N candidates with T ground-truth boxes -> (labels int64 (N,): 1 positive, 0 negative, -1
    ignored; matched int64 (N,) index of the best box, 0 where T = 0). IoU >= fg_iou positive, < bg_iou negative;
    with `best_per_truth` every box's highest-IoU candidates are positive too."""
    labels = np.zeros(len(iou), dtype=np.int64)
    if iou.shape[1] == 0:
        return labels, labels.copy()
    best, matched = iou.max(axis=1), iou.argmax(axis=1)
    labels[best >= bg_iou] = -1
    labels[best >= fg_iou] = 1
    if best_per_truth:
        truth_best = iou.max(axis=0)
        labels[np.nonzero((iou == truth_best[None, :]) & (truth_best[None, :] > 0))[0]] = 1
    return labels, matched


def sample_balanced(labels: np.ndarray, count: int, positive_fraction: float) -> Tuple[np.ndarray, np.ndarray]:
    """Random (positive indices, negative indices) of labels (N,) (1/0/-1): at most count * positive_fraction
    positives, negatives filling up to `count`. Draws from torch's global generator (seeded by the caller)."""
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    num_pos = min(len(positives), int(count * positive_fraction))
    num_neg = min(len(negatives), count - num_pos)
    return _random_subset(positives, num_pos), _random_subset(negatives, num_neg)


def _random_subset(indices: np.ndarray, count: int) -> np.ndarray:
    return indices[torch.randperm(len(indices))[:count].numpy()] if count < len(indices) else indices


def sample_anchors(anchors_xyxy: np.ndarray, truth: ImageTruth, fg_iou: float, bg_iou: float, per_image: int,
                   positive_fraction: float) -> Tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """One image's RPN sample: (positive anchor indices (P,), negative anchor indices, (P, 4) xyxy boxes matched
    to the positives)."""
    iou = box_iou(anchors_xyxy, truth.xyxy.detach().cpu().numpy())
    labels, matched = match_boxes(iou, fg_iou, bg_iou, best_per_truth=True)
    positives, negatives = sample_balanced(labels, per_image, positive_fraction)
    return positives, negatives, truth.xyxy[torch.from_numpy(matched[positives]).to(truth.xyxy.device)]


def _batch_index(per_image: Sequence[np.ndarray], device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per image index arrays -> (image index, index) int64 tensors on `device`, for tensors shaped (B, N, ...)."""
    image = np.concatenate([np.full(len(a), b, dtype=np.int64) for b, a in enumerate(per_image)])
    index = np.concatenate(per_image).astype(np.int64)
    return torch.from_numpy(image).to(device), torch.from_numpy(index).to(device)


def rpn_loss(logits: torch.Tensor, deltas: torch.Tensor, anchors_xyxy: np.ndarray, truths: Sequence[ImageTruth],
             fg_iou: float, bg_iou: float, per_image: int, positive_fraction: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """RPN objectness logits (B, N), deltas (B, N, 4) over all N anchors (N, 4) -> (objectness BCE, box
    smooth-L1 on the positives), both summed over the sampled anchors / their number."""
    samples = [sample_anchors(anchors_xyxy, t, fg_iou, bg_iou, per_image, positive_fraction) for t in truths]
    positives, negatives, matched = zip(*samples)
    device = logits.device
    pos_logits = logits[_batch_index(positives, device)].float()
    neg_logits = logits[_batch_index(negatives, device)].float()
    count = max(len(pos_logits) + len(neg_logits), 1)
    obj = F.binary_cross_entropy_with_logits(pos_logits, torch.ones_like(pos_logits), reduction="sum")
    obj = obj + F.binary_cross_entropy_with_logits(neg_logits, torch.zeros_like(neg_logits), reduction="sum")
    obj = obj / count
    anchors = torch.from_numpy(anchors_xyxy[np.concatenate(positives).astype(np.int64)]).float().to(device)
    box_targets = encode_boxes(torch.cat(matched).float().to(device), anchors, RPN_BOX_WEIGHTS)
    predicted = deltas[_batch_index(positives, device)].float()
    return obj, F.smooth_l1_loss(predicted, box_targets, beta=SMOOTH_L1_BETA, reduction="sum") / count


def sample_rois(proposals: Sequence[torch.Tensor], truths: Sequence[ImageTruth], fg_iou: float, per_image: int,
                positive_fraction: float) -> RoiSample:
    """Per image proposals (P, 4) xyxy (detached) plus that image's ground-truth boxes -> the RoiSample of the
    batch (foreground: IoU >= fg_iou, everything else background)."""
    parts = [_sample_image_rois(b, p, t, fg_iou, per_image, positive_fraction)
             for b, (p, t) in enumerate(zip(proposals, truths))]
    return RoiSample(*(torch.cat(column) for column in zip(*parts)))


def _sample_image_rois(b: int, proposals: torch.Tensor, truth: ImageTruth, fg_iou: float, per_image: int,
                       positive_fraction: float) -> Tuple[torch.Tensor, ...]:
    """One image's part of RoiSample: (rois, labels, box targets, truth rows)."""
    boxes = torch.cat([proposals.detach(), truth.xyxy.detach().to(proposals)])
    labels, matched = match_boxes(box_iou(boxes.cpu().numpy(), truth.xyxy.detach().cpu().numpy()),
                                  fg_iou, fg_iou, best_per_truth=False)
    pos, neg = sample_balanced(labels, per_image, positive_fraction)
    chosen = torch.from_numpy(np.concatenate([pos, neg])).long().to(boxes.device)
    boxes = boxes[chosen]
    matched_t = torch.from_numpy(matched).long().to(boxes.device)[chosen]
    is_fg = torch.arange(len(chosen), device=boxes.device) < len(pos)
    classes = truth.class_ids[matched_t] + 1 if len(truth.rows) else torch.zeros_like(matched_t)
    labels_t = torch.where(is_fg, classes, torch.zeros_like(classes))
    targets = boxes.new_zeros(boxes.shape)
    if len(pos):
        targets[:len(pos)] = encode_boxes(truth.xyxy[matched_t[:len(pos)]].to(boxes), boxes[:len(pos)],
                                          ROI_BOX_WEIGHTS)
    rows = truth.rows[matched_t] if len(truth.rows) else torch.zeros_like(matched_t)
    rois = torch.cat([boxes.new_full((len(boxes), 1), float(b)), boxes], dim=1)
    return rois, labels_t, targets, rows


def box_head_loss(class_logits: torch.Tensor, box_deltas: torch.Tensor,
                  sample: RoiSample) -> Tuple[torch.Tensor, torch.Tensor]:
    """class_logits (R, 1+C), box_deltas (R, 4C) -> (cross-entropy, smooth-L1 of foreground rows on their class's
    deltas), both summed / R. Losses are computed in float32 whatever the heads' dtype (mixed precision)."""
    count = max(len(sample.labels), 1)  # sums / count: an empty sample gives 0, not NaN
    cls = F.cross_entropy(class_logits.float(), sample.labels, reduction="sum") / count
    fg = torch.nonzero(sample.labels > 0).flatten()
    deltas = box_deltas.view(len(box_deltas), -1, 4)[fg, sample.labels[fg] - 1].float()
    box = F.smooth_l1_loss(deltas, sample.box_targets[fg].float(), beta=SMOOTH_L1_BETA, reduction="sum")
    return cls, box / count


def mask_targets(masks: torch.Tensor, rois: torch.Tensor, truth_rows: torch.Tensor, mask_size: int) -> torch.Tensor:
    """Ground-truth masks (T, H/4, W/4) float 0/1, rois (P, 5), their matched rows (P,) -> float 0/1
    (P, mask_size, mask_size): each matched mask RoI-aligned to its RoI and thresholded at 0.5."""
    boxes = torch.cat([truth_rows[:, None].to(rois), rois[:, 1:5]], dim=1)
    pooled = roi_align(masks[:, None].to(rois), boxes, 1.0 / PROTO_STRIDE, (mask_size, mask_size))
    return (pooled[:, 0] >= 0.5).to(rois)


def mask_loss(mask_logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mask_logits (P, K, S, S) with K = 1 (class-agnostic) or C, labels (P,) 1..C, targets (P, S, S) -> mean
    per-pixel BCE on the channel of each RoI's class (0 without positives, still in the graph)."""
    channel = labels - 1 if mask_logits.shape[1] > 1 else torch.zeros_like(labels)
    chosen = mask_logits[torch.arange(len(labels), device=labels.device), channel].float()
    loss = F.binary_cross_entropy_with_logits(chosen, targets, reduction="sum")
    return loss / max(targets.numel(), 1)
