"""Training loss of SSD (edgedet/models/ssd.py): the SSD paper's matching, hard negative mining and two terms.

Matching: a default box is positive for the ground-truth box it overlaps most when that IoU is >= `match_iou`, and
every ground-truth box also takes its best default box (so no box goes unmatched, however small). Localisation:
smooth L1 between the predicted offsets and the matched box's offsets (device/box_coder.py, weights BOX_WEIGHTS)
over positives. Confidence: softmax cross-entropy over (background, classes) on the positives and on the hardest
negatives, `negatives_per_positive` of them per positive in each image. Both are divided by the positive count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from edgedet.device.layouts.ssd import BOX_WEIGHTS, default_boxes_xyxy
from .loss import Targets
from .models.box_coder import encode_boxes
from .models.boxes import box_iou, cxcywh_to_xyxy
from .models.ssd import SSD_STRIDES, SSDConfig, split_candidates


@dataclass
class SSDLossGains:
    """Weights and thresholds of the SSD loss."""

    loc: float = 1.0  # weight of the smooth-L1 box term (the paper's alpha)
    match_iou: float = 0.5  # IoU with a ground-truth box that makes a default box positive
    negatives_per_positive: int = 3  # hard negatives kept per positive, per image
    min_negatives: int = 8  # negatives kept in an image without positives


def match_default_boxes(defaults_xyxy: torch.Tensor, gt_xyxy: torch.Tensor, match_iou: float) -> torch.Tensor:
    """(N, 4) default boxes, (T, 4) ground-truth boxes -> int64 (N,) matched ground-truth index, -1 = background."""
    matched = torch.full((len(defaults_xyxy),), -1, dtype=torch.long, device=defaults_xyxy.device)
    if len(gt_xyxy) == 0:
        return matched
    iou = box_iou(defaults_xyxy, gt_xyxy)
    best_iou, best_gt = iou.max(dim=1)
    matched = torch.where(best_iou >= match_iou, best_gt, matched)
    best_default = iou.argmax(dim=0)  # (T,) every ground truth keeps its best default box
    matched[best_default] = torch.arange(len(gt_xyxy), device=matched.device)
    return matched


def hard_negatives(ce: torch.Tensor, positive: torch.Tensor, count: int) -> torch.Tensor:
    """bool (N,) the `count` negatives with the highest cross-entropy `ce` (N,) among ~positive."""
    negative_ce = ce.detach().masked_fill(positive, -1.0)
    keep = torch.zeros_like(positive)
    count = min(count, int((~positive).sum()))
    if count > 0:
        keep[negative_ce.topk(count).indices] = True
    return keep


class SSDLoss:
    """Callable (raw outputs in SSD.output_names order, Targets) -> (loss * batch size, parts {"loc", "conf"})."""

    def __init__(self, config: SSDConfig, gains: SSDLossGains = SSDLossGains()):
        self.config = config
        self.gains = gains
        defaults = default_boxes_xyxy(config.input_size_hw, SSD_STRIDES, config.anchors)
        self.defaults_xyxy = torch.from_numpy(np.ascontiguousarray(defaults))

    def __call__(self, outputs: Sequence[torch.Tensor], targets: Targets) -> Tuple[torch.Tensor, Dict[str, float]]:
        k = self.config.num_anchors
        loc = torch.cat([split_candidates(o, k) for o in outputs[0::2]], dim=1)  # (B, N, 4)
        conf = torch.cat([split_candidates(o, k) for o in outputs[1::2]], dim=1)  # (B, N, 1+C)
        defaults = self.defaults_xyxy.to(loc.device)
        loc_sum, conf_sum, positives = loc.new_zeros(()), conf.new_zeros(()), 0
        for image in range(len(loc)):
            gt = targets.boxes[targets.boxes[:, 0] == image]
            image_loc, image_conf, count = self._image_terms(loc[image], conf[image], defaults, gt)
            loc_sum, conf_sum, positives = loc_sum + image_loc, conf_sum + image_conf, positives + count
        scale = 1.0 / max(positives, 1)
        loc_loss, conf_loss = self.gains.loc * loc_sum * scale, conf_sum * scale
        total = (loc_loss + conf_loss) * len(loc)
        return total, {"loc": float(loc_loss.detach()), "conf": float(conf_loss.detach())}

    def _image_terms(self, loc: torch.Tensor, conf: torch.Tensor, defaults: torch.Tensor, gt: torch.Tensor):
        """One image: (smooth-L1 sum over positives, cross-entropy sum over positives and hard negatives, positive
        count). gt: (T, 6) rows of Targets.boxes."""
        gt_xyxy = cxcywh_to_xyxy(gt[:, 2:6])
        matched = match_default_boxes(defaults, gt_xyxy, self.gains.match_iou)
        positive = matched >= 0
        labels = torch.zeros(len(conf), dtype=torch.long, device=conf.device)
        labels[positive] = gt[matched[positive], 1].long() + 1
        ce = F.cross_entropy(conf, labels, reduction="none")
        count = int(positive.sum())
        negatives = hard_negatives(ce, positive, max(count * self.gains.negatives_per_positive,
                                                     self.gains.min_negatives))
        conf_term = ce[positive | negatives].sum()
        if count == 0:
            return loc.sum() * 0.0, conf_term, 0
        target = encode_boxes(gt_xyxy[matched[positive]], defaults[positive], BOX_WEIGHTS)
        loc_term = F.smooth_l1_loss(loc[positive], target, reduction="sum", beta=1.0)
        return loc_term, conf_term, count
