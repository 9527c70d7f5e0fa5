"""NMS: same kept sets as OpenCV's NMSBoxes / NMSBoxesBatched; invalid boxes dropped; ties stable; caps."""
import cv2
import numpy as np
import pytest

from edgedet.device.boxes import box_iou, xyxy_to_xywh
from edgedet.device.suppression import nms


def clustered_boxes(rng, n, image=320.0):
    """n candidates around a few objects, each jittered copies of one box (what a detector produces)."""
    boxes = []
    while sum(len(b) for b in boxes) < n:
        cx, cy = rng.uniform(0, image, 2)
        w, h = rng.uniform(8, 120, 2)
        count = int(rng.integers(3, 40))
        jitter = rng.normal(0, 0.1, (count, 4)) * [w, h, w, h]
        base = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        boxes.append(base + jitter)
    xyxy = np.concatenate(boxes)[:n]
    xyxy[:, 2:] = np.maximum(xyxy[:, 2:], xyxy[:, :2] + 0.5)
    return xyxy.astype(np.float32), rng.uniform(0.01, 1.0, n).astype(np.float32)


def opencv_keep(xyxy, scores, iou, class_ids=None):
    xywh = xyxy_to_xywh(xyxy.astype(np.float64)).tolist()
    if class_ids is None:
        kept = cv2.dnn.NMSBoxes(xywh, scores.tolist(), 0.0, iou)
    else:
        kept = cv2.dnn.NMSBoxesBatched(xywh, scores.tolist(), class_ids.tolist(), 0.0, iou)
    return np.asarray(kept, dtype=np.int64).reshape(-1)


@pytest.mark.parametrize("seed", range(12))
def test_agnostic_matches_opencv_nmsboxes(seed):
    rng = np.random.default_rng(seed)
    xyxy, scores = clustered_boxes(rng, int(rng.integers(1, 600)))
    iou = float(rng.choice([0.3, 0.45, 0.5, 0.7]))
    ours = nms(xyxy, scores, iou)
    theirs = opencv_keep(xyxy, scores, iou)
    np.testing.assert_array_equal(np.sort(ours), np.sort(theirs))
    assert (np.diff(scores[ours]) <= 0).all()  # descending score order


@pytest.mark.parametrize("seed", range(8))
def test_class_aware_matches_opencv_nmsboxesbatched(seed):
    rng = np.random.default_rng(100 + seed)
    xyxy, scores = clustered_boxes(rng, int(rng.integers(1, 500)))
    class_ids = rng.integers(0, 4, len(scores))
    ours = nms(xyxy, scores, 0.45, class_ids=class_ids)
    np.testing.assert_array_equal(np.sort(ours), np.sort(opencv_keep(xyxy, scores, 0.45, class_ids)))
    agnostic = nms(xyxy, scores, 0.45, class_ids=class_ids, agnostic=True)
    np.testing.assert_array_equal(np.sort(agnostic), np.sort(opencv_keep(xyxy, scores, 0.45)))


def test_class_aware_never_suppresses_across_classes():
    xyxy = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    kept = nms(xyxy, np.array([0.9, 0.8, 0.7]), 0.5, class_ids=np.array([0, 1, 0]))
    assert kept.tolist() == [0, 1]


def test_class_offsets_separate_classes_with_negative_coordinates():
    # OpenCV's offset (largest coordinate + 1 = 101) would move the class-1 box to (51, 51, 106, 106), IoU 0.57
    # with the class-0 box, and suppress it
    boxes = np.array([[40, 40, 100, 100], [-50, -50, 5, 5]], np.float32)
    kept = nms(boxes, np.array([0.9, 0.8], np.float32), 0.45, class_ids=np.array([0, 1]))
    assert sorted(kept.tolist()) == [0, 1]


def test_kept_boxes_overlap_at_most_threshold():
    rng = np.random.default_rng(5)
    xyxy, scores = clustered_boxes(rng, 400)
    kept = nms(xyxy, scores, 0.5)
    iou = box_iou(xyxy[kept], xyxy[kept])
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.5


@pytest.mark.parametrize("bad", [
    [np.nan, 0, 10, 10], [0, 0, np.inf, 10], [0, -np.inf, 10, 10],
    [5, 0, 5, 10],     # zero width
    [0, 5, 10, 5],     # zero height
    [10, 0, 0, 10],    # negative width
])
def test_invalid_boxes_are_dropped_not_fatal(bad):
    xyxy = np.array([bad, [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    kept = nms(xyxy, np.array([0.99, 0.5, 0.4], np.float32), 0.5)
    assert kept.tolist() == [1, 2]


@pytest.mark.parametrize("bad_score", [np.nan, np.inf, -np.inf])
def test_invalid_scores_are_dropped(bad_score):
    xyxy = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    assert nms(xyxy, np.array([bad_score, 0.5], np.float32), 0.5).tolist() == [1]


def test_ties_keep_lowest_index_first():
    xyxy = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.5, 0.5, 0.5, 0.5], np.float32)
    assert nms(xyxy, scores, 0.5).tolist() == [0, 3]
    # the same tie order as OpenCV
    assert sorted(opencv_keep(xyxy, scores, 0.5).tolist()) == [0, 3]


def test_max_det_and_top_k():
    xyxy = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(10)], np.float32)
    scores = np.linspace(0.1, 1.0, 10).astype(np.float32)
    assert nms(xyxy, scores, 0.5, max_det=3).tolist() == [9, 8, 7]
    assert nms(xyxy, scores, 0.5, top_k=4).tolist() == [9, 8, 7, 6]
    # top_k caps candidates BEFORE suppression: the suppressed best leaves its neighbour out too
    overlapping = np.array([[0, 0, 10, 10], [0, 0, 10, 10.5], [50, 0, 60, 10]], np.float32)
    assert nms(overlapping, np.array([0.9, 0.8, 0.7]), 0.5, top_k=2).tolist() == [0]


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single(n):
    xyxy = np.array([[0, 0, 4, 4]] * n, np.float32).reshape(-1, 4)
    kept = nms(xyxy, np.ones(n, np.float32), 0.5, class_ids=np.zeros(n, int))
    assert kept.dtype == np.int64 and kept.tolist() == list(range(n))


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        nms(np.zeros((2, 4)), np.zeros(3))


@pytest.mark.parametrize("n", [7, 399, 401, 1500])
def test_small_and_large_candidate_sets_match_opencv(n):
    """Both block strategies (few candidates: one pass per block; many: block first, then its kept boxes)."""
    rng = np.random.default_rng(n)
    xyxy, scores = clustered_boxes(rng, n)
    for limit in (None, 5):
        ours = nms(xyxy, scores, 0.5, max_det=limit)
        theirs = opencv_keep(xyxy, scores, 0.5)
        theirs = theirs[np.argsort(-scores[theirs], kind="stable")][:limit]
        np.testing.assert_array_equal(ours, theirs)


def test_small_float32_sets_match_opencv_over_many_draws():
    """Few float32 boxes run in float32: the kept sets still equal OpenCV's (double precision) on many draws."""
    for seed in range(150):
        rng = np.random.default_rng(1000 + seed)
        xyxy, scores = clustered_boxes(rng, int(rng.integers(2, 401)))
        iou = float(rng.choice([0.3, 0.45, 0.5, 0.6, 0.7]))
        np.testing.assert_array_equal(np.sort(nms(xyxy, scores, iou)), np.sort(opencv_keep(xyxy, scores, iou)),
                                      err_msg=f"seed {seed}")


def test_iou_exactly_at_threshold_keeps_both_like_opencv():
    """IoU == threshold is not > threshold: OpenCV keeps both boxes, so does the float32 path (small float32 sets)."""
    rng = np.random.default_rng(7)
    for t, dtype in [(0.5, np.float32), (0.25, np.float32), (0.75, np.float32), (0.6, np.float32)]:
        for _ in range(40):
            w = 4 * int(rng.integers(1, 100)) * 5
            h, (x, y) = int(rng.integers(1, 300)), rng.integers(0, 600, 2)
            xyxy = np.array([[x, y, x + w, y + h], [x, y, x + t * w, y + h]], dtype)  # IoU = t exactly
            scores = np.array([0.9, 0.8], np.float32)
            assert sorted(opencv_keep(xyxy, scores, t).tolist()) == [0, 1]
            assert nms(xyxy, scores, t).tolist() == [0, 1]
