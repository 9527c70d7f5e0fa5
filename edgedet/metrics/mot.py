"""Multi-object tracking metrics: CLEAR MOT (MOTA, MOTP, ID switches) and the identity scores (IDF1, IDP, IDR).

Both follow py-motmetrics (the MOTChallenge toolkit's Python port) with IoU distance: a ground-truth box and a
track's box may correspond in a frame when their IoU >= `iou_threshold` (0.5).

- CLEAR MOT (Bernardin & Stiefelhagen 2008), frame by frame: a ground-truth object keeps the track it was last
  matched to while they still correspond; the others are paired by an assignment that maximises the number of
  pairs, then their summed IoU. A pair whose object was last matched to another track is an ID switch.
  MOTA = 1 - (misses + false positives + switches) / ground-truth boxes; MOTP = mean IoU of the matches.
- Identity (Ristani et al. 2016), over the whole sequence: each ground-truth id is paired with at most one track
  id so as to maximise the frames where the two correspond (IDTP); IDF1 = 2 IDTP / (ground-truth boxes + track
  boxes), IDP = IDTP / track boxes, IDR = IDTP / ground-truth boxes.

A sequence is a list of frames, each a `MotFrame`: ids int (K,) and boxes xyxy (K, 4) in pixels.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from edgedet.device.boxes import box_iou
from edgedet.device.tracking import max_gain_assignment


@dataclass(frozen=True)
class MotFrame:
    """The objects of one frame: ground truth, or a tracker's output."""

    ids: np.ndarray  # int (K,): identity of each object (ground-truth id, or track id)
    xyxy: np.ndarray  # float (K, 4): boxes, corners in pixels

    @classmethod
    def of(cls, ids, xyxy) -> "MotFrame":
        return cls(np.asarray(ids, dtype=np.int64).reshape(-1), np.asarray(xyxy, dtype=np.float64).reshape(-1, 4))


def clear_mot(truth: Sequence[MotFrame], tracks: Sequence[MotFrame], iou_threshold: float = 0.5) -> Dict[str, float]:
    """CLEAR MOT over a sequence -> {"mota", "motp", "matches", "misses", "false_positives", "switches",
    "ground_truth"}; truth and tracks have one `MotFrame` per frame, in order."""
    _check_lengths(truth, tracks)
    last_track: Dict[int, int] = {}  # ground-truth id -> the track id it was last matched to
    totals = {"matches": 0, "misses": 0, "false_positives": 0, "switches": 0, "ground_truth": 0}
    iou_sum = 0.0
    for gt, hyp in zip(truth, tracks):
        iou = box_iou(gt.xyxy, hyp.xyxy)
        pairs = _frame_matches(gt, hyp, iou >= iou_threshold, iou, last_track)
        for i, j in pairs:
            g, h = int(gt.ids[i]), int(hyp.ids[j])
            totals["switches"] += int(g in last_track and last_track[g] != h)
            last_track[g] = h
            iou_sum += float(iou[i, j])
        totals["matches"] += len(pairs)
        totals["misses"] += len(gt.ids) - len(pairs)
        totals["false_positives"] += len(hyp.ids) - len(pairs)
        totals["ground_truth"] += len(gt.ids)
    errors = totals["misses"] + totals["false_positives"] + totals["switches"]
    mota = 1.0 - errors / totals["ground_truth"] if totals["ground_truth"] else float("nan")
    motp = iou_sum / totals["matches"] if totals["matches"] else float("nan")
    return {"mota": mota, "motp": motp, **totals}


def _frame_matches(gt: MotFrame, hyp: MotFrame, valid: np.ndarray, iou: np.ndarray,
                   last_track: Dict[int, int]) -> List[Tuple[int, int]]:
    """One frame's (gt index, track index) pairs: the kept correspondences first, then the assignment of the rest."""
    column_of = {int(h): j for j, h in enumerate(hyp.ids.tolist())}
    pairs = []
    for i, g in enumerate(gt.ids.tolist()):
        j = column_of.get(last_track[g]) if g in last_track else None
        if j is not None and valid[i, j] and j not in {p[1] for p in pairs}:
            pairs.append((i, j))
    free = valid.copy()
    for i, j in pairs:
        free[i, :], free[:, j] = False, False
    # as many pairs as possible, then the largest summed IoU: a pair's count outweighs any sum of IoUs
    weight = float(len(gt.ids) + 1)
    rows, cols = max_gain_assignment(np.where(free, weight + iou, 0.0))
    return pairs + list(zip(rows.tolist(), cols.tolist()))


def identity_scores(truth: Sequence[MotFrame], tracks: Sequence[MotFrame],
                    iou_threshold: float = 0.5) -> Dict[str, float]:
    """IDF1, IDP, IDR over a sequence -> {"idf1", "idp", "idr", "idtp", "idfp", "idfn"}."""
    _check_lengths(truth, tracks)
    together: Dict[Tuple[int, int], int] = defaultdict(int)  # (gt id, track id) -> frames they correspond
    gt_boxes = hyp_boxes = 0
    for gt, hyp in zip(truth, tracks):
        gt_boxes, hyp_boxes = gt_boxes + len(gt.ids), hyp_boxes + len(hyp.ids)
        rows, cols = np.nonzero(box_iou(gt.xyxy, hyp.xyxy) >= iou_threshold)
        for g, h in zip(gt.ids[rows].tolist(), hyp.ids[cols].tolist()):
            together[(g, h)] += 1
    gt_ids = sorted({g for g, _ in together})
    hyp_ids = sorted({h for _, h in together})
    frames = np.zeros((len(gt_ids), len(hyp_ids)))
    gt_index, hyp_index = {g: k for k, g in enumerate(gt_ids)}, {h: k for k, h in enumerate(hyp_ids)}
    for (g, h), count in together.items():
        frames[gt_index[g], hyp_index[h]] = count
    rows, cols = max_gain_assignment(frames)
    idtp = int(frames[rows, cols].sum())
    idfp, idfn = hyp_boxes - idtp, gt_boxes - idtp
    total = gt_boxes + hyp_boxes
    return {"idf1": 2 * idtp / total if total else float("nan"), "idp": idtp / hyp_boxes if hyp_boxes else float("nan"),
            "idr": idtp / gt_boxes if gt_boxes else float("nan"), "idtp": idtp, "idfp": idfp, "idfn": idfn}


def mot_metrics(truth: Sequence[MotFrame], tracks: Sequence[MotFrame], iou_threshold: float = 0.5) -> Dict[str, float]:
    """`clear_mot` and `identity_scores` in one dict."""
    return {**clear_mot(truth, tracks, iou_threshold), **identity_scores(truth, tracks, iou_threshold)}


def _check_lengths(truth: Sequence[MotFrame], tracks: Sequence[MotFrame]) -> None:
    if len(truth) != len(tracks):
        raise ValueError(f"MOT metrics: {len(truth)} ground-truth frames but {len(tracks)} tracker frames")
