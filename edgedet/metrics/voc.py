"""PASCAL VOC average precision at one IoU threshold (default 0.5): all-point and 11-point interpolation.

Matching as the lecture describes: per class, detections in descending score order (stable for ties); each
takes the ground truth of its image with the highest IoU; above the threshold it is a TP if that ground truth
is still free, else an FP; "difficult" ground truth (COCO iscrowd) neither rewards nor penalises a detection
and does not count in recall. Boxes use continuous coordinates (no VOC +1 on widths).
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from edgedet.device.boxes import box_iou, xywh_to_xyxy
from edgedet.device.errors import EdgedetError


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_11_point: bool = False) -> float:
    """AP from a PR curve (recall ascending, both (N,)).

    all-point: area under the monotone (non-increasing) envelope of precision, summed where recall changes.
    11-point:  mean over recall r in {0, 0.1, ..., 1} of the highest precision at recall >= r (0 if none).
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if use_11_point:
        points = [precision[recall >= r].max() if (recall >= r).any() else 0.0 for r in np.linspace(0, 1, 11)]
        return float(np.mean(points))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    change = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


def voc_evaluate(gt: dict, results: Sequence[dict], iou_threshold: float = 0.5, use_11_point: bool = False) -> Dict:
    """{"mAP": mean over classes with ground truth, "per_class": {category id: AP, or -1 without ground truth}}.

    gt is a COCO dict, results a COCO results list with "bbox" [x, y, w, h].
    """
    cats = [c["id"] for c in gt.get("categories", [])]
    if not cats:
        raise EdgedetError("ground truth has no 'categories'")
    per_class = {}
    for cat in cats:
        g = [a for a in gt.get("annotations", []) if a["category_id"] == cat]
        d = [r for r in results if r["category_id"] == cat]
        per_class[cat] = _class_ap(g, d, iou_threshold, use_11_point)
    valid = [v for v in per_class.values() if v >= 0]
    return {"mAP": float(np.mean(valid)) if valid else -1.0, "per_class": per_class}


def _class_ap(gts: list, dets: list, iou_threshold: float, use_11_point: bool) -> float:
    """AP of one class; -1 when it has no (non-difficult) ground truth."""
    npos = sum(1 for a in gts if not a.get("iscrowd", 0))
    if npos == 0:
        return -1.0
    by_image = {}
    for a in gts:
        by_image.setdefault(a["image_id"], []).append(a)
    boxes = {img: xywh_to_xyxy(np.array([a["bbox"] for a in anns], dtype=np.float64)) for img, anns in by_image.items()}
    difficult = {img: np.array([bool(a.get("iscrowd", 0)) for a in anns]) for img, anns in by_image.items()}
    taken = {img: np.zeros(len(anns), dtype=bool) for img, anns in by_image.items()}
    order = np.argsort([-float(r["score"]) for r in dets], kind="stable")
    tp = np.zeros(len(dets))
    fp = np.zeros(len(dets))
    for rank, i in enumerate(order):
        det = dets[i]
        img = det["image_id"]
        if img not in boxes:
            fp[rank] = 1
            continue
        ious = box_iou(xywh_to_xyxy(np.array([det["bbox"]], dtype=np.float64)), boxes[img])[0]
        best = int(np.argmax(ious))
        if ious[best] <= iou_threshold:  # a match needs IoU > threshold (VOC)
            fp[rank] = 1
        elif difficult[img][best]:
            continue
        elif not taken[img][best]:
            tp[rank], taken[img][best] = 1, True
        else:
            fp[rank] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / npos
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(recall, precision, use_11_point)
