"""Semantic segmentation metrics: confusion matrix, per-class IoU, mIoU and pixel accuracy with an ignore label."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from edgedet.device.errors import EdgedetError

IGNORE_INDEX = 255  # ground-truth label that counts for no class


class SemanticMeter:
    """Accumulates a confusion matrix over images; `compute()` gives per-class IoU, mIoU and pixel accuracy.

    Ground-truth pixels equal to `ignore_index` are skipped. Predicted labels outside 0..C-1 count as wrong.
    A class absent from both ground truth and prediction has IoU NaN (None in `compute()`) and is left out of mIoU.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        if num_classes < 1:
            raise EdgedetError("semantic evaluation needs at least one class")
        self.num_classes = int(num_classes)  # C
        self.ignore_index = int(ignore_index)  # label skipped in the ground truth
        self.confusion = np.zeros((num_classes, num_classes + 1), dtype=np.int64)  # [gt, pred]; last column = invalid pred

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: pred and gt are integer label maps of the same (H, W) shape."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise EdgedetError(f"semantic prediction {pred.shape} and ground truth {gt.shape} differ in shape")
        valid = gt != self.ignore_index
        g = gt[valid].astype(np.int64)
        if g.size and (g.min() < 0 or g.max() >= self.num_classes):
            raise EdgedetError(f"ground-truth label {int(g.max())} is outside 0..{self.num_classes - 1} (and not ignore)")
        p = pred[valid].astype(np.int64)
        p = np.where((p >= 0) & (p < self.num_classes), p, self.num_classes)
        bins = np.bincount(g * (self.num_classes + 1) + p, minlength=self.num_classes * (self.num_classes + 1))
        self.confusion += bins.reshape(self.num_classes, self.num_classes + 1)

    def per_class_iou(self) -> np.ndarray:
        """float64 (C,): TP / (TP + FP + FN) per class, NaN where the class never occurs."""
        tp = np.diag(self.confusion[:, : self.num_classes]).astype(np.float64)
        fn = self.confusion.sum(1) - tp
        fp = self.confusion[:, : self.num_classes].sum(0) - tp
        union = tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)

    def compute(self, names: Optional[List[str]] = None) -> Dict:
        """{"mIoU", "pixel_accuracy", "per_class_iou": {name: IoU or None}}; mIoU is -1 with no labelled pixels."""
        iou = self.per_class_iou()
        total = self.confusion.sum()
        correct = np.trace(self.confusion[:, : self.num_classes])
        names = names or [str(i) for i in range(self.num_classes)]
        return {
            "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else -1.0,
            "pixel_accuracy": float(correct / total) if total else -1.0,
            "per_class_iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, iou)},
        }


def semantic_metrics(preds, gts, num_classes: int, ignore_index: int = IGNORE_INDEX, names=None) -> Dict:
    """mIoU, pixel accuracy and per-class IoU over paired label maps (iterables of (H, W) int arrays)."""
    meter = SemanticMeter(num_classes, ignore_index)
    for pred, gt in zip(preds, gts):
        meter.update(pred, gt)
    return meter.compute(names)
