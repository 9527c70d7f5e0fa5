"""Panoptic quality (Kirillov et al.): PQ = SQ x RQ over things and stuff, as the COCO panoptic API computes it.

A panoptic map is an int (H, W) array of segment ids (0 = void / unlabelled) plus, per segment id, its category
(and for ground truth an iscrowd flag). Per category: a predicted and a ground-truth segment match when their
IoU > 0.5 (void pixels of the prediction are left out of the union); TP adds its IoU; unmatched non-crowd ground
truth is a FN; an unmatched prediction is a FP unless more than half of it lies on void or on crowd regions of its
category.
    PQ = sum IoU(TP) / (TP + FP/2 + FN/2),  SQ = sum IoU(TP) / TP,  RQ = TP / (TP + FP/2 + FN/2)
Averages are over categories that occur (TP + FP + FN > 0), for all, things and stuff separately.

`panoptic_from_semantic_and_instances` is the project's one panoptic merge (things painted over stuff): it builds
the predicted and the ground-truth maps that the meter compares.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from edgedet.device.errors import EdgedetError

VOID = 0  # segment id of unlabelled pixels


@dataclass
class GtSegment:
    """One segment of a panoptic map (ground truth or prediction)."""

    category: int  # category id
    iscrowd: bool = False  # crowd region: never a FN, absorbs overlapping FPs of its category
    instance: Optional[int] = None  # index of the instance mask a thing segment was painted from; None for stuff


class PanopticMeter:
    """Accumulates per-category TP/FP/FN and IoU sums over images; `compute()` gives PQ/SQ/RQ."""

    def __init__(self, isthing: Mapping[int, bool]):
        self.isthing = dict(isthing)  # category id -> True for things, False for stuff
        self.tp = {c: 0 for c in self.isthing}
        self.fp = {c: 0 for c in self.isthing}
        self.fn = {c: 0 for c in self.isthing}
        self.iou = {c: 0.0 for c in self.isthing}

    def update(self, gt_ids: np.ndarray, gt_segments: Mapping[int, GtSegment],
               pred_ids: np.ndarray, pred_segments: Mapping[int, int]) -> None:
        """One image: segment-id maps (H, W) and {segment id: GtSegment} / {segment id: category id}."""
        gt_ids, pred_ids = np.asarray(gt_ids, dtype=np.int64), np.asarray(pred_ids, dtype=np.int64)
        if gt_ids.shape != pred_ids.shape:
            raise EdgedetError(f"panoptic maps differ in shape: {gt_ids.shape} vs {pred_ids.shape}")
        self._check_categories(gt_segments, pred_segments)
        gt_area = _areas(gt_ids)
        pred_area = _areas(pred_ids)
        inter = _intersections(gt_ids, pred_ids)
        matched_gt, matched_pred = set(), set()
        for (g, p), overlap in inter.items():
            if g == VOID or p == VOID or g not in gt_segments or p not in pred_segments:
                continue
            seg = gt_segments[g]
            if seg.iscrowd or seg.category != pred_segments[p]:
                continue
            union = pred_area.get(p, 0) + gt_area.get(g, 0) - overlap - inter.get((VOID, p), 0)
            iou = overlap / union
            if iou > 0.5:
                self.tp[seg.category] += 1
                self.iou[seg.category] += iou
                matched_gt.add(g)
                matched_pred.add(p)
        for g, seg in gt_segments.items():
            if g not in matched_gt and not seg.iscrowd and gt_area.get(g, 0) > 0:
                self.fn[seg.category] += 1
        crowd_of = {seg.category: g for g, seg in gt_segments.items() if seg.iscrowd}
        for p, cat in pred_segments.items():
            if p in matched_pred or pred_area.get(p, 0) == 0:
                continue
            ignored = inter.get((VOID, p), 0)
            if cat in crowd_of:
                ignored += inter.get((crowd_of[cat], p), 0)
            if ignored / pred_area[p] > 0.5:
                continue
            self.fp[cat] += 1

    def _check_categories(self, gt_segments, pred_segments) -> None:
        unknown = {s.category for s in gt_segments.values()} | set(pred_segments.values())
        unknown -= set(self.isthing)
        if unknown:
            raise EdgedetError(f"panoptic segments use unknown categories {sorted(unknown)}")

    def compute(self, names: Mapping[int, str] = None) -> Dict:
        """{"PQ", "SQ", "RQ", "things": {...}, "stuff": {...}, "per_class": {name: {PQ, SQ, RQ}}, "n": ...}."""
        per_class = {c: self._category(c) for c in self.isthing}
        out = _average(per_class, [c for c in self.isthing])
        out["things"] = _average(per_class, [c for c, t in self.isthing.items() if t])
        out["stuff"] = _average(per_class, [c for c, t in self.isthing.items() if not t])
        names = names or {}
        out["per_class"] = {str(names.get(c, c)): v for c, v in per_class.items() if v is not None}
        return out

    def _category(self, c: int):
        tp, fp, fn = self.tp[c], self.fp[c], self.fn[c]
        if tp + fp + fn == 0:
            return None
        denom = tp + 0.5 * fp + 0.5 * fn
        sq = self.iou[c] / tp if tp else 0.0
        rq = tp / denom
        return {"PQ": self.iou[c] / denom, "SQ": sq, "RQ": rq}


def _average(per_class: Dict, cats) -> Dict:
    present = [per_class[c] for c in cats if per_class[c] is not None]
    if not present:
        return {"PQ": -1.0, "SQ": -1.0, "RQ": -1.0, "n": 0}
    return {k: float(np.mean([v[k] for v in present])) for k in ("PQ", "SQ", "RQ")} | {"n": len(present)}


def _areas(ids: np.ndarray) -> Dict[int, int]:
    values, counts = np.unique(ids, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def _intersections(gt_ids: np.ndarray, pred_ids: np.ndarray) -> Dict[Tuple[int, int], int]:
    """{(gt id, pred id): pixel count} of every overlapping pair."""
    offset = int(max(pred_ids.max(initial=0), 0)) + 1
    pairs, counts = np.unique(gt_ids.ravel() * offset + pred_ids.ravel(), return_counts=True)
    return {(int(k // offset), int(k % offset)): int(n) for k, n in zip(pairs, counts)}


def panoptic_from_semantic_and_instances(semantic: np.ndarray, instance_masks: np.ndarray, instance_categories,
                                         stuff_labels, instance_iscrowd=None, overlap_keep: float = 0.5,
                                         min_stuff_area: int = 0, scores: Optional[Sequence[float]] = None):
    """The panoptic merge, for predictions and ground truth alike: things from instance masks, stuff from a
    semantic map.

    semantic:        int (H, W) labels; stuff_labels: the labels that are stuff (a stuff segment's category id is
                     its label); other labels (things without a surviving instance, the ignore label) stay void.
    instance_masks:  bool (N, H, W), with instance_categories (N,) and optional instance_iscrowd (N,).
    scores:          optional float (N,); given, instances are painted best first (stable for ties), else in order.
    Each instance takes the still-free pixels of its mask; one keeping less than `overlap_keep` of its mask is
    dropped. The one minimum-area rule (panopticapi's and Detectron2's stuff area limit): a stuff region of fewer
    than `min_stuff_area` free pixels stays void, and an empty region never becomes a segment.
    Returns (ids int32 (H, W), 0 = void; {segment id: GtSegment}), ids 1, 2, ... in painting order.
    """
    h, w = semantic.shape
    ids = np.zeros((h, w), dtype=np.int32)
    segments: Dict[int, GtSegment] = {}
    crowd = np.zeros(len(instance_masks), bool) if instance_iscrowd is None else np.asarray(instance_iscrowd, bool)
    for n in _painting_order(len(instance_masks), scores):
        area = int(instance_masks[n].sum())
        free = instance_masks[n] & (ids == VOID)
        if area == 0 or free.sum() < overlap_keep * area:
            continue
        ids[free] = len(segments) + 1
        segments[len(segments) + 1] = GtSegment(int(instance_categories[n]), bool(crowd[n]), int(n))
    for label in stuff_labels:
        region = (semantic == label) & (ids == VOID)
        if region.sum() < max(min_stuff_area, 1):
            continue
        ids[region] = len(segments) + 1
        segments[len(segments) + 1] = GtSegment(int(label), False)
    return ids, segments


def _painting_order(count: int, scores: Optional[Sequence[float]]) -> np.ndarray:
    """int (count,) instance indices: by descending score (stable) when scores are given, else 0..count-1."""
    if scores is None:
        return np.arange(count)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != count:
        raise EdgedetError(f"panoptic merge: {count} instance masks but {len(scores)} scores")
    return np.argsort(-scores, kind="stable")
