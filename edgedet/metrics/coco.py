"""COCO detection metrics (bbox and segm), numerically identical to pycocotools' COCOeval, in vectorised NumPy.

What pycocotools does, and this module reproduces (definitions in the lecture: greedy matching in score order,
PR curve, AP per class, mean over IoU 0.50:0.05:0.95):
- evaluation is per (image, category) pair; detections are sorted by score with a stable sort and only the
  first 100 per pair are kept;
- each detection, best score first, takes the unmatched ground truth with the highest IoU >= t (ties go to the
  later ground truth); regular ground truth is preferred over "ignored" ground truth (crowd, or area outside the
  area range); crowd ground truth can be matched many times and its IoU denominator is the detection's area;
- a detection matched to ignored ground truth, or unmatched and outside the area range, is ignored;
- precision at 101 recall thresholds after making precision monotone; -1 where a category has no regular
  ground truth; stats are means over the entries > -1.
The per-detection greedy matching runs as one loop over detection rank, vectorised over all (image, category)
pairs of similar size, all area ranges and all IoU thresholds at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgedet.device.errors import EdgedetError
from edgedet.rle import counts_of_many, iou_from_intersection, segmentation_to_rle

IOU_TYPES = ("bbox", "segm")
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class CocoParams:
    """COCOeval's default detection parameters."""

    iou_thresholds: np.ndarray = field(default_factory=lambda: np.linspace(0.5, 0.95, 10, endpoint=True))  # T IoU thresholds
    recall_thresholds: np.ndarray = field(default_factory=lambda: np.linspace(0.0, 1.0, 101, endpoint=True))  # R recall points
    max_dets: Tuple[int, ...] = (1, 10, 100)  # M detection budgets per (image, category), ascending
    area_ranges: Tuple[Tuple[float, float], ...] = ((0, 1e10), (0, 32**2), (32**2, 96**2), (96**2, 1e10))  # A [lo, hi] in px^2
    area_labels: Tuple[str, ...] = ("all", "small", "medium", "large")  # names of area_ranges


@dataclass
class CocoEvaluation:
    """Everything COCOeval.accumulate/summarize produce, keyed by the ground truth's category ids."""

    stats: Dict[str, float]  # the 12 summary numbers (STAT_KEYS), -1 where undefined
    precision: np.ndarray  # float64 (T, R, K, A, M), -1 where a category has no regular ground truth
    recall: np.ndarray  # float64 (T, K, A, M), -1 likewise
    scores: np.ndarray  # float64 (T, R, K, A, M): detection score at each recall threshold
    category_ids: List  # K category ids in ascending order (the order of axis K)
    params: CocoParams  # thresholds used
    iou_type: str  # "bbox" or "segm"

    def per_class_ap(self, iou: Optional[float] = None) -> Dict:
        """category id -> AP over all areas at 100 dets (mean over IoU thresholds, or at `iou`); -1 if undefined."""
        p = self.precision[..., 0, -1]  # (T, R, K)
        if iou is not None:
            p = p[np.flatnonzero(self.params.iou_thresholds == iou)]
        out = {}
        for k, cat in enumerate(self.category_ids):
            values = p[:, :, k]
            values = values[values > -1]
            out[cat] = float(values.mean()) if values.size else -1.0
        return out

    def pr_curve(self, category_id, iou: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
        """(recall thresholds (R,), interpolated precision (R,)) of one category, all areas, 100 dets."""
        t = np.flatnonzero(self.params.iou_thresholds == iou)
        if len(t) == 0:
            raise EdgedetError(f"IoU {iou} is not one of the evaluated thresholds")
        k = self.category_ids.index(category_id)
        return self.params.recall_thresholds.copy(), self.precision[t[0], :, k, 0, -1].copy()

    def summary_lines(self) -> List[str]:
        """The 12 lines COCOeval.summarize prints."""
        return [_summary_line(self.params, spec, self.stats[key]) for key, spec in zip(STAT_KEYS, _STAT_SPECS)]


# (is_ap, iou or None, area label, max dets) of each summary stat, as COCOeval._summarizeDets
_STAT_SPECS = (
    (True, None, "all", 100), (True, 0.5, "all", 100), (True, 0.75, "all", 100),
    (True, None, "small", 100), (True, None, "medium", 100), (True, None, "large", 100),
    (False, None, "all", 1), (False, None, "all", 10), (False, None, "all", 100),
    (False, None, "small", 100), (False, None, "medium", 100), (False, None, "large", 100),
)


def coco_evaluate(gt: dict, results: Sequence[dict], iou_type: str = "bbox") -> Dict[str, float]:
    """The 12 COCO stats (AP, AP50, ..., ARl) of `results` (a COCO results list) against the COCO dict `gt`."""
    return evaluate_coco(gt, results, iou_type).stats


def evaluate_coco(gt: dict, results: Sequence[dict], iou_type: str = "bbox",
                  params: Optional[CocoParams] = None) -> CocoEvaluation:
    """Full COCO evaluation (stats, precision/recall arrays, per-class AP, PR curves); see the module docstring."""
    if iou_type not in IOU_TYPES:
        raise EdgedetError(f"unknown iou type {iou_type!r}; expected one of {', '.join(IOU_TYPES)}")
    params = params or CocoParams()
    images = _parse_images(gt)
    category_ids = _parse_categories(gt)
    gts = _parse_ground_truth(gt, images, category_ids, iou_type)
    dts = _parse_results(results, images, category_ids, iou_type)
    pairs = _Pairs(gts, dts, max(params.max_dets))
    ious = _pair_ious(pairs, gts, dts, iou_type)
    dt_matched, dt_ignored = _match_all(pairs, gts, dts, ious, params)
    precision, recall, scores = _accumulate(pairs, gts, dts, dt_matched, dt_ignored, len(category_ids), params)
    stats = _summarize(precision, recall, params)
    return CocoEvaluation(stats, precision, recall, scores, category_ids, params, iou_type)


# ---------------------------------------------------------------- parsing


@dataclass
class _Images:
    ids: List  # sorted unique image ids
    index: Dict  # image id -> position in ids
    shape_hw: np.ndarray  # int64 (I, 2) height, width


@dataclass
class _Annotations:
    """Parallel arrays over the annotations (ground truth) or detections of the evaluated images/categories."""

    image: np.ndarray  # int64 (N,) index into _Images.ids
    category: np.ndarray  # int64 (N,) index into the sorted category ids
    box_xywh: np.ndarray  # float64 (N, 4) COCO boxes [x, y, w, h]
    area: np.ndarray  # float64 (N,) area used for the area ranges
    crowd: np.ndarray  # bool (N,) iscrowd (always False for detections)
    score: np.ndarray  # float64 (N,) detection score (zeros for ground truth)
    id_nonzero: np.ndarray  # bool (N,) annotation id != 0 (COCOeval stores matches by id, so id 0 never counts)
    masks: Optional[List["_Runs"]]  # foreground runs of each mask (segm only)


def _parse_images(gt: dict) -> _Images:
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list):
        raise EdgedetError("ground truth is not a COCO dict with an 'images' list")
    by_id = {}
    for image in gt["images"]:
        try:
            by_id[image["id"]] = (int(image.get("height", 0)), int(image.get("width", 0)))
        except (KeyError, TypeError, ValueError):
            raise EdgedetError(f"ground-truth image entry {image!r:.80} has no valid 'id'/'height'/'width'") from None
    if not by_id:
        raise EdgedetError("ground truth has no images")
    ids = _sorted_ids(by_id, "image")
    shape = np.array([by_id[i] for i in ids], dtype=np.int64).reshape(-1, 2)
    return _Images(ids, {v: i for i, v in enumerate(ids)}, shape)


def _parse_categories(gt: dict) -> List:
    cats = gt.get("categories")
    if not isinstance(cats, list) or not cats:
        raise EdgedetError("ground truth has no 'categories'")
    try:
        return _sorted_ids({c["id"] for c in cats}, "category")
    except (KeyError, TypeError):
        raise EdgedetError("a ground-truth category has no 'id'") from None


def _sorted_ids(ids, what: str) -> List:
    try:
        return sorted(ids)
    except TypeError:
        raise EdgedetError(f"{what} ids must be all numbers or all strings") from None


def _parse_ground_truth(gt: dict, images: _Images, category_ids: List, iou_type: str) -> _Annotations:
    """The evaluated ground truth (annotations of the GT's images and categories), in file order."""
    anns = gt.get("annotations") or []
    if not isinstance(anns, list):
        raise EdgedetError("ground-truth 'annotations' must be a list")
    cat_index = {c: k for k, c in enumerate(category_ids)}
    try:
        img = [images.index.get(a["image_id"]) for a in anns]
        cat = [cat_index.get(a["category_id"]) for a in anns]
    except (KeyError, TypeError):
        raise EdgedetError("every ground-truth annotation needs 'image_id' and 'category_id'") from None
    keep = [i for i in range(len(anns)) if img[i] is not None and cat[i] is not None]
    kept = [anns[i] for i in keep]
    image = np.array([img[i] for i in keep], dtype=np.int64)
    boxes = _boxes([a.get("bbox") for a in kept], "ground-truth annotation")
    rles = None
    if iou_type == "segm":
        rles = _Runs.many([_gt_rle(a, images.shape_hw[i]) for a, i in zip(kept, image)])
    area = [a.get("area") for a in kept]
    if any(v is None for v in area):  # COCO files always have it; fall back to mask or box area
        area = [v if v is not None else (rles[n].area if rles else boxes[n, 2] * boxes[n, 3])
                for n, v in enumerate(area)]
    return _Annotations(
        image=image, category=np.array([cat[i] for i in keep], dtype=np.int64), box_xywh=boxes,
        area=_floats(area, "ground-truth 'area'"), crowd=np.array([bool(a.get("iscrowd", 0)) for a in kept], dtype=bool),
        score=np.zeros(len(kept)), id_nonzero=np.array([a.get("id", 1) != 0 for a in kept], dtype=bool), masks=rles)


def _gt_rle(ann: dict, shape_hw) -> dict:
    if "segmentation" not in ann:
        raise EdgedetError(f"ground-truth annotation id {ann.get('id')} has no 'segmentation' (needed for segm)")
    if min(int(shape_hw[0]), int(shape_hw[1])) <= 0:
        raise EdgedetError(f"image {ann.get('image_id')} has no 'height'/'width' in the ground truth (needed for segm)")
    return segmentation_to_rle(ann["segmentation"], int(shape_hw[0]), int(shape_hw[1]))


def _parse_results(results, images: _Images, category_ids: List, iou_type: str) -> _Annotations:
    """Detections as COCO.loadRes reads them: the first result decides whether boxes or masks define area/bbox."""
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise EdgedetError("results must be a JSON list of {image_id, category_id, score, bbox|segmentation}")
    _check_result_images(results, images)
    from_boxes = bool(results) and "bbox" in results[0] and results[0]["bbox"] != []
    if results and not from_boxes and "segmentation" not in results[0]:
        raise EdgedetError("results have neither 'bbox' nor 'segmentation'")
    cat_index = {c: k for k, c in enumerate(category_ids)}
    cats = [cat_index.get(r.get("category_id")) for r in results]
    kept = [r for r, c in zip(results, cats) if c is not None]
    image = np.array([images.index[r["image_id"]] for r in kept], dtype=np.int64)
    try:
        score = _floats([r["score"] for r in kept], "result 'score'")
    except KeyError:
        raise EdgedetError("every result needs a 'score'") from None
    shapes = images.shape_hw[image] if len(kept) else np.zeros((0, 2), np.int64)
    if from_boxes:
        boxes, area, rles = _box_results(kept, shapes, iou_type)
    else:
        boxes, area, rles = _mask_results(kept, shapes, iou_type)
    return _Annotations(image=image, category=np.array([c for c in cats if c is not None], dtype=np.int64),
                        box_xywh=boxes, area=area, crowd=np.zeros(len(kept), dtype=bool), score=score,
                        id_nonzero=np.ones(len(kept), dtype=bool), masks=rles)


def _box_results(kept: list, shapes: np.ndarray, iou_type: str):
    """Boxes given: area = w * h; for segm, the given mask or else the box's polygon (as loadRes)."""
    boxes = _boxes([r.get("bbox") for r in kept], "result")
    rles = None
    if iou_type == "segm":
        rles = []
        for r, box, (h, w) in zip(kept, boxes, shapes):
            x1, y1, x2, y2 = box[0], box[1], box[0] + box[2], box[1] + box[3]
            seg = r.get("segmentation", [[x1, y1, x1, y2, x2, y2, x2, y1]])
            rles.append(segmentation_to_rle(seg, int(h), int(w)))
        rles = _Runs.many(rles)
    return boxes, boxes[:, 2] * boxes[:, 3], rles


def _mask_results(kept: list, shapes: np.ndarray, iou_type: str):
    """Masks given: area = mask pixels, bbox = given box or the mask's tight box (as loadRes)."""
    rles = []
    for r, (h, w) in zip(kept, shapes):
        seg = r.get("segmentation")
        if not isinstance(seg, dict):
            raise EdgedetError("mask results need 'segmentation' as RLE {size, counts}")
        rles.append(segmentation_to_rle(seg, int(h), int(w)))
    rles = _Runs.many(rles)
    boxes = np.array([_boxes([r["bbox"]], "result")[0] if "bbox" in r else runs.box
                      for r, runs in zip(kept, rles)], dtype=np.float64).reshape(-1, 4)
    area = np.array([runs.area for runs in rles], dtype=np.float64)
    return boxes, area, rles if iou_type == "segm" else None


def _check_result_images(results: list, images: _Images) -> None:
    try:
        unknown = {r["image_id"] for r in results} - set(images.index)
    except (KeyError, TypeError):
        raise EdgedetError("every result needs an 'image_id'") from None
    if unknown:
        some = ", ".join(str(i) for i in sorted(unknown, key=str)[:5])
        raise EdgedetError(f"results refer to {len(unknown)} image id(s) not in the ground truth (e.g. {some})")


def _boxes(values: list, what: str) -> np.ndarray:
    """float64 (N, 4) COCO boxes [x, y, w, h]; an EdgedetError names the first bad one."""
    if not values:
        return np.zeros((0, 4), dtype=np.float64)
    try:
        boxes = np.array(values, dtype=np.float64)
        if boxes.shape == (len(values), 4):
            return boxes
    except (TypeError, ValueError):
        pass
    bad = next((v for v in values if not (isinstance(v, (list, tuple)) and len(v) == 4)), values[0] if values else None)
    raise EdgedetError(f"a {what} has no valid 'bbox' [x, y, w, h] (got {bad!r:.60})")


def _floats(values: list, what: str) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64).reshape(len(values))
    except (TypeError, ValueError):
        raise EdgedetError(f"every {what} must be a number") from None


# ---------------------------------------------------------------- (image, category) pairs


class _Pairs:
    """Ground truth and detections grouped by (image, category) pair.

    Ground truth keeps file order inside a pair; detections are sorted by score (stable, as pycocotools'
    mergesort) and cut to `max_det` per pair. `gt_order` / `dt_order` index the parsed annotations.
    """

    def __init__(self, gts: _Annotations, dts: _Annotations, max_det: int):
        num_cats = int(max(gts.category.max(initial=-1), dts.category.max(initial=-1))) + 1
        self.num_cats = num_cats
        gt_key = gts.image * num_cats + gts.category
        dt_key = dts.image * num_cats + dts.category
        self.gt_order = np.argsort(gt_key, kind="stable")
        dt_sorted = np.lexsort((-dts.score, dt_key))
        dt_key_sorted = dt_key[dt_sorted]
        first = np.searchsorted(dt_key_sorted, dt_key_sorted, side="left")
        rank = np.arange(len(dt_sorted)) - first
        keep = rank < max_det
        self.dt_order = dt_sorted[keep]  # detections in (image, category, -score) order, <= max_det per pair
        self.dt_rank = rank[keep]  # position inside its pair
        gt_key_sorted = gt_key[self.gt_order]
        dt_key_kept = dt_key_sorted[keep]
        self.keys = np.union1d(gt_key_sorted, dt_key_kept)
        self.gt_start = np.searchsorted(gt_key_sorted, self.keys, side="left")
        self.gt_count = np.searchsorted(gt_key_sorted, self.keys, side="right") - self.gt_start
        self.dt_start = np.searchsorted(dt_key_kept, self.keys, side="left")
        self.dt_count = np.searchsorted(dt_key_kept, self.keys, side="right") - self.dt_start


# ---------------------------------------------------------------- IoU


def _box_iou_xywh(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """float64 (..., D, G) IoU of boxes d (..., D, 4) and g (..., G, 4) in xywh, as pycocotools' bbIou.

    crowd (..., G): against a crowd box the denominator is the detection's area.
    """
    dx, dy, dw, dh = (d[..., :, None, i] for i in range(4))
    gx, gy, gw, gh = (g[..., None, :, i] for i in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    da, ga = dw * dh, gw * gh
    union = np.where(crowd[..., None, :], da, da + ga - inter)
    overlap = (w > 0) & (h > 0)
    return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


def _pair_ious(pairs: _Pairs, gts: _Annotations, dts: _Annotations, iou_type: str):
    """For segm: dict pair position -> (D, G) mask IoU computed on the runs; for bbox: None (done per bucket)."""
    if iou_type == "bbox":
        return None
    out = {}
    for p in np.flatnonzero((pairs.gt_count > 0) & (pairs.dt_count > 0)):
        g_idx = pairs.gt_order[pairs.gt_start[p]:pairs.gt_start[p] + pairs.gt_count[p]]
        d_idx = pairs.dt_order[pairs.dt_start[p]:pairs.dt_start[p] + pairs.dt_count[p]]
        g_runs = [gts.masks[i] for i in g_idx]
        d_runs = [dts.masks[i] for i in d_idx]
        out[p] = _runs_iou(d_runs, g_runs, gts.crowd[g_idx])
    return out


@dataclass
class _Runs:
    """Foreground runs of one RLE mask in flat column-major pixel positions."""

    size: tuple  # (H, W)
    starts: np.ndarray  # int64 (K,) first pixel of each run
    ends: np.ndarray  # int64 (K,) one past the last pixel
    before: np.ndarray  # int64 (K,) foreground pixels in the runs before this one
    area: int  # foreground pixels
    box: np.ndarray  # float64 (4,) tight [x, y, w, h] (pycocotools toBbox)

    @classmethod
    def many(cls, rles: List[dict]) -> List["_Runs"]:
        """Runs of many RLE dicts, decoded and measured in one batch of NumPy calls."""
        n = len(rles)
        if n == 0:
            return []
        counts, offsets = counts_of_many(rles)
        sizes = np.array([r["size"] for r in rles], dtype=np.int64).reshape(n, 2)
        owner = np.repeat(np.arange(n), np.diff(offsets))
        running = np.cumsum(counts)
        ends = running - np.concatenate([[0], running])[offsets[:-1]][owner]
        fg = ((np.arange(len(counts)) - offsets[owner]) % 2 == 1) & (counts > 0)
        fg_owner, starts, ends, lengths = owner[fg], (ends - counts)[fg], ends[fg], counts[fg]
        fg_offsets = np.searchsorted(fg_owner, np.arange(n + 1), side="left")
        done = np.cumsum(lengths)
        before = done - lengths - np.concatenate([[0], done])[fg_offsets[:-1]][fg_owner]
        area = np.bincount(fg_owner, weights=lengths, minlength=n).astype(np.int64)
        boxes = _boxes_of_runs(starts, ends, fg_owner, fg_offsets, sizes[:, 0])
        return [cls((int(sizes[i, 0]), int(sizes[i, 1])), starts[a:b], ends[a:b], before[a:b], int(area[i]), boxes[i])
                for i, (a, b) in enumerate(zip(fg_offsets[:-1], fg_offsets[1:]))]

    def covered_before(self, x: np.ndarray) -> np.ndarray:
        """Foreground pixels at flat positions < x, for each x (int64 array)."""
        k = np.searchsorted(self.starts, x, side="right") - 1
        kk = np.maximum(k, 0)
        inside = np.clip(x - self.starts[kk], 0, self.ends[kk] - self.starts[kk]) if len(self.starts) else 0
        return np.where(k >= 0, self.before[kk] + inside, 0) if len(self.starts) else np.zeros_like(x)


def _boxes_of_runs(starts, ends, owner, offsets, heights) -> np.ndarray:
    """float64 (N, 4) tight [x, y, w, h] per mask from its foreground runs (pycocotools toBbox); zeros if empty."""
    n = len(offsets) - 1
    boxes = np.zeros((n, 4), dtype=np.float64)
    has = np.diff(offsets) > 0
    if not has.any():
        return boxes
    h = heights[owner]
    first, last = starts, ends - 1
    col0, col1, row0, row1 = first // h, last // h, first % h, last % h
    at = offsets[:-1][has]
    x0, x1 = np.minimum.reduceat(col0, at), np.maximum.reduceat(col1, at)
    y0, y1 = np.minimum.reduceat(row0, at), np.maximum.reduceat(row1, at)
    wraps = np.maximum.reduceat((col1 > col0).astype(np.int64), at) > 0  # a run over a column edge spans all rows
    y0 = np.where(wraps, 0, y0)
    y1 = np.where(wraps, heights[has] - 1, y1)
    boxes[has] = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1)
    return boxes


def _runs_iou(d_runs: List[_Runs], g_runs: List[_Runs], crowd: np.ndarray) -> np.ndarray:
    """(D, G) mask IoU as pycocotools' rleIou: only box-overlapping pairs are intersected; a mask whose size
    differs from the ground truth's never matches; crowd ground truth divides by the detection's area."""
    boxes_d = np.array([r.box for r in d_runs]).reshape(-1, 4)
    boxes_g = np.array([r.box for r in g_runs]).reshape(-1, 4)
    overlap = _box_iou_xywh(boxes_d, boxes_g, np.zeros(len(g_runs), dtype=bool)) > 0
    inter = np.zeros(overlap.shape, dtype=np.float64)
    for d, g in zip(*np.nonzero(overlap)):
        a, b = d_runs[d], g_runs[g]
        if a.size == b.size:
            inter[d, g] = float((b.covered_before(a.ends) - b.covered_before(a.starts)).sum())
    area_d = np.array([r.area for r in d_runs], dtype=np.float64)
    area_g = np.array([r.area for r in g_runs], dtype=np.float64)
    return iou_from_intersection(inter, area_d, area_g, crowd)


# ---------------------------------------------------------------- greedy matching


def _match_all(pairs: _Pairs, gts: _Annotations, dts: _Annotations, segm_ious, params: CocoParams):
    """Per kept detection (pairs.dt_order), per area range and IoU threshold: (matched, ignored) bool (A, T, N).

    matched means COCOeval's dtMatches != 0 (matched to a ground truth whose id is not 0).
    """
    n = len(pairs.dt_order)
    num_a, num_t = len(params.area_ranges), len(params.iou_thresholds)
    lo = np.array([r[0] for r in params.area_ranges])[:, None]
    hi = np.array([r[1] for r in params.area_ranges])[:, None]
    dt_area = dts.area[pairs.dt_order]
    dt_outside = (dt_area[None] < lo) | (dt_area[None] > hi)  # (A, N)
    matched = np.zeros((num_a, num_t, n), dtype=bool)
    ignored_match = np.zeros((num_a, num_t, n), dtype=bool)
    both = np.flatnonzero((pairs.gt_count > 0) & (pairs.dt_count > 0))
    for bucket in _buckets(pairs.dt_count[both], pairs.gt_count[both]):
        _match_bucket(both[bucket], pairs, gts, dts, segm_ious, params, (lo, hi), matched, ignored_match)
    ignored = ignored_match | (~matched & dt_outside[:, None, :])
    return matched, ignored


def _buckets(d_counts: np.ndarray, g_counts: np.ndarray) -> List[np.ndarray]:
    """Group pairs by (D, G) rounded up to powers of two, so padding costs at most 2x per axis."""
    if len(d_counts) == 0:
        return []
    d_bin = np.ceil(np.log2(np.maximum(d_counts, 1))).astype(np.int64)
    g_bin = np.ceil(np.log2(np.maximum(g_counts, 1))).astype(np.int64)
    key = d_bin * 64 + g_bin
    order = np.argsort(key, kind="stable")
    splits = np.flatnonzero(np.diff(key[order])) + 1
    return np.split(order, splits)


def _match_bucket(pair_ids, pairs, gts, dts, segm_ious, params, area_bounds, matched, ignored_match) -> None:
    """Greedy matching of the pairs `pair_ids`, vectorised over pairs x area ranges x thresholds."""
    d_cnt, g_cnt = pairs.dt_count[pair_ids], pairs.gt_count[pair_ids]
    num_d, num_g = int(d_cnt.max()), int(g_cnt.max())
    d_valid = np.arange(num_d)[None] < d_cnt[:, None]  # (P, D)
    g_valid = np.arange(num_g)[None] < g_cnt[:, None]  # (P, G)
    d_pos = pairs.dt_start[pair_ids, None] + np.minimum(np.arange(num_d)[None], d_cnt[:, None] - 1)
    g_idx = pairs.gt_order[pairs.gt_start[pair_ids, None] + np.minimum(np.arange(num_g)[None], g_cnt[:, None] - 1)]
    crowd = gts.crowd[g_idx] & g_valid
    ious = _bucket_ious(pair_ids, d_pos, g_idx, crowd, pairs, gts, dts, segm_ious)
    lo, hi = area_bounds
    g_area = gts.area[g_idx]
    g_ignored = gts.crowd[g_idx][None] | (g_area[None] < lo[:, :, None]) | (g_area[None] > hi[:, :, None])  # (A, P, G)
    g_ignored = g_ignored[:, None]  # (A, 1, P, G)
    thr = np.minimum(params.iou_thresholds, 1 - 1e-10)[:, None, None]  # (T, 1, 1)
    taken = np.zeros((len(lo), len(thr), len(pair_ids), num_g), dtype=bool)  # matched non-crowd ground truth
    rows = np.arange(len(pair_ids))
    a_ix, t_ix = np.arange(len(lo))[:, None, None], np.arange(len(thr))[None, :, None]
    for d in range(num_d):
        iou_d = ious[:, d, :]  # (P, G)
        candidate = ((iou_d[None] >= thr) & g_valid[None])[None] & ~taken  # (A, T, P, G)
        regular = candidate & ~g_ignored
        has_regular = regular.any(-1, keepdims=True)
        usable = np.where(has_regular, regular, candidate)
        best = num_g - 1 - np.argmax(np.where(usable, iou_d, -1.0)[..., ::-1], axis=-1)  # last index among ties
        found = usable.any(-1) & d_valid[None, None, :, d]  # (A, T, P)
        best_ignored = g_ignored[a_ix, 0, rows, best]  # (A, T, P)
        best_id_ok = gts.id_nonzero[g_idx[rows, best]]
        taken[a_ix, t_ix, rows, best] |= found & ~crowd[rows, best]
        valid_rows = d_valid[:, d]
        pos = d_pos[valid_rows, d]
        matched[:, :, pos] = (found & best_id_ok)[..., valid_rows]
        ignored_match[:, :, pos] = (found & best_ignored)[..., valid_rows]


def _bucket_ious(pair_ids, d_pos, g_idx, crowd, pairs, gts, dts, segm_ious) -> np.ndarray:
    """float64 (P, D, G) IoU for a bucket (padding entries are garbage and masked by the caller)."""
    if segm_ious is None:
        d_idx = pairs.dt_order[d_pos]
        return _box_iou_xywh(dts.box_xywh[d_idx], gts.box_xywh[g_idx], crowd)
    out = np.zeros((len(pair_ids), d_pos.shape[1], g_idx.shape[1]), dtype=np.float64)
    for row, p in enumerate(pair_ids):
        block = segm_ious[p]
        out[row, :block.shape[0], :block.shape[1]] = block
    return out


# ---------------------------------------------------------------- accumulate and summarize


def _accumulate(pairs, gts, dts, dt_matched, dt_ignored, num_cats: int, params: CocoParams):
    """precision (T, R, K, A, M), recall (T, K, A, M), scores (T, R, K, A, M) as COCOeval.accumulate."""
    num_t, num_r = len(params.iou_thresholds), len(params.recall_thresholds)
    num_a, num_m = len(params.area_ranges), len(params.max_dets)
    precision = -np.ones((num_t, num_r, num_cats, num_a, num_m))
    recall = -np.ones((num_t, num_cats, num_a, num_m))
    scores = -np.ones((num_t, num_r, num_cats, num_a, num_m))
    regular_gt = _regular_gt_counts(gts, num_cats, params)  # (K, A)
    dt_cat = dts.category[pairs.dt_order]
    dt_score = dts.score[pairs.dt_order]
    for k in range(num_cats):
        in_cat = np.flatnonzero(dt_cat == k)  # (image, rank) order, as COCOeval concatenates images
        in_cat = in_cat[np.argsort(-dt_score[in_cat], kind="stable")]
        for m, max_det in enumerate(params.max_dets):
            sel = in_cat[pairs.dt_rank[in_cat] < max_det]
            for a in range(num_a):
                npig = regular_gt[k, a]
                if npig == 0:
                    continue
                curve = _pr_at_thresholds(dt_matched[a][:, sel], dt_ignored[a][:, sel], dt_score[sel], npig, params)
                precision[:, :, k, a, m], recall[:, k, a, m], scores[:, :, k, a, m] = curve
    return precision, recall, scores


def _regular_gt_counts(gts: _Annotations, num_cats: int, params: CocoParams) -> np.ndarray:
    """int (K, A): ground truth that is neither crowd nor outside the area range."""
    out = np.zeros((num_cats, len(params.area_ranges)), dtype=np.int64)
    for a, (lo, hi) in enumerate(params.area_ranges):
        regular = ~gts.crowd & (gts.area >= lo) & (gts.area <= hi)
        out[:, a] = np.bincount(gts.category[regular], minlength=num_cats)[:num_cats]
    return out


def _pr_at_thresholds(matched, ignored, det_scores, npig: int, params: CocoParams):
    """Interpolated precision (T, R), final recall (T,) and scores (T, R) of one category/area/budget."""
    tp = np.cumsum(matched & ~ignored, axis=1).astype(float)
    fp = np.cumsum(~matched & ~ignored, axis=1).astype(float)
    num_t, nd = tp.shape
    num_r = len(params.recall_thresholds)
    rc = tp / npig
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # monotone (non-increasing) envelope
    q = np.zeros((num_t, num_r))
    ss = np.zeros((num_t, num_r))
    final_recall = rc[:, -1] if nd else np.zeros(num_t)
    for t in range(num_t):
        idx = np.searchsorted(rc[t], params.recall_thresholds, side="left")
        ok = idx < nd
        q[t, ok] = pr[t, idx[ok]]
        ss[t, ok] = det_scores[idx[ok]]
    return q, final_recall, ss


def _summarize(precision: np.ndarray, recall: np.ndarray, params: CocoParams) -> Dict[str, float]:
    """The 12 stats: means over the entries > -1 of the selected slices, -1 if there are none."""
    stats = {}
    for key, (is_ap, iou, area, max_det) in zip(STAT_KEYS, _STAT_SPECS):
        a = [i for i, label in enumerate(params.area_labels) if label == area]
        m = [i for i, d in enumerate(params.max_dets) if d == max_det]
        s = precision if is_ap else recall
        if iou is not None:
            s = s[np.where(iou == params.iou_thresholds)[0]]
        s = s[:, :, :, a, m] if is_ap else s[:, :, a, m]
        valid = s[s > -1]
        stats[key] = float(np.mean(valid)) if valid.size else -1.0
    return stats


def _summary_line(params: CocoParams, spec, value: float) -> str:
    is_ap, iou, area, max_det = spec
    title = "Average Precision" if is_ap else "Average Recall"
    kind = "(AP)" if is_ap else "(AR)"
    thr = params.iou_thresholds
    iou_text = f"{thr[0]:0.2f}:{thr[-1]:0.2f}" if iou is None else f"{iou:0.2f}"
    return f" {title:<18} {kind} @[ IoU={iou_text:<9} | area={area:>6s} | maxDets={max_det:>3d} ] = {value:0.3f}"
