"""VOC AP on hand-computed cases; semantic mIoU and panoptic PQ on hand-built maps."""
import numpy as np
import pytest

from edgedet.device.errors import EdgedetError
from edgedet.metrics import (GtSegment, PanopticMeter, SemanticMeter, panoptic_from_semantic_and_instances,
                             semantic_metrics, voc_ap, voc_evaluate)


# ---------------------------------------------------------------- VOC


def test_voc_ap_all_point_and_11_point_by_hand():
    # detections in score order: TP, FP, TP, FP with 2 ground truths -> recall .5 .5 1 1, precision 1 .5 .667 .5
    recall = np.array([0.5, 0.5, 1.0, 1.0])
    precision = np.array([1.0, 0.5, 2 / 3, 0.5])
    # all-point: envelope 1 up to recall .5, then 2/3 up to 1 -> .5*1 + .5*2/3
    assert voc_ap(recall, precision) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 11-point: r = 0..0.5 (6 points) -> 1, r = 0.6..1 (5 points) -> 2/3
    assert voc_ap(recall, precision, use_11_point=True) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)


def test_voc_ap_no_detections_is_zero():
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0), use_11_point=True) == 0.0


def _case():
    gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1}, {"id": 5}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
              {"id": 2, "image_id": 2, "category_id": 1, "bbox": [20, 20, 10, 10], "iscrowd": 0},
              {"id": 3, "image_id": 2, "category_id": 1, "bbox": [50, 50, 10, 10], "iscrowd": 1},  # difficult
          ]}
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},  # TP
        {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.8},  # duplicate -> FP
        {"image_id": 2, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.7},  # on difficult -> ignored
        {"image_id": 2, "category_id": 1, "bbox": [20, 20, 10, 5], "score": 0.6},  # IoU 0.5, not > 0.5 -> FP
        {"image_id": 2, "category_id": 1, "bbox": [20, 21, 10, 10], "score": 0.5},  # IoU .9/1.1 -> TP
    ]
    return gt, results


def test_voc_evaluate_matches_hand_computation():
    gt, results = _case()
    out = voc_evaluate(gt, results)
    # ranks (ignored one dropped): TP, FP, FP, TP -> recall .5 .5 .5 1, precision 1 .5 .333 .5
    expected = voc_ap(np.array([0.5, 0.5, 0.5, 0.5, 1.0]), np.array([1.0, 0.5, 0.5, 1 / 3, 0.5]))
    assert expected == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert out["per_class"][1] == pytest.approx(expected)
    assert out["per_class"][5] == -1  # no ground truth
    assert out["mAP"] == pytest.approx(expected)
    assert voc_evaluate(gt, results, use_11_point=True)["per_class"][1] == pytest.approx((6 * 1 + 5 * 0.5) / 11)


# ---------------------------------------------------------------- semantic


def test_semantic_iou_miou_and_pixel_accuracy_by_hand():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 255],
                   [2, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 0, 2],
                     [2, 2, 9, 0]])  # 9 is not a class: always wrong
    meter = SemanticMeter(num_classes=4)
    meter.update(pred, gt)
    out = meter.compute(["a", "b", "c", "d"])
    # class 0: tp 3, fn 1 (->1), fp 1 (gt 1 -> 0)  -> 3/5 ; class 1: tp 2, fn 1, fp 1 -> 2/4
    # class 2: tp 2, fn 1 (->9), fp 0 (pred 2 on ignore is skipped) -> 2/3 ; class 3: absent -> None
    assert out["per_class_iou"] == {"a": pytest.approx(0.6), "b": pytest.approx(0.5), "c": pytest.approx(2 / 3), "d": None}
    assert out["mIoU"] == pytest.approx((0.6 + 0.5 + 2 / 3) / 3)
    assert out["pixel_accuracy"] == pytest.approx(7 / 10)


def test_semantic_accumulates_over_images_and_checks_input():
    gt = np.zeros((2, 2), int)
    out = semantic_metrics([gt, gt + 1], [gt, gt + 1], num_classes=2)
    assert out["mIoU"] == 1.0 and out["pixel_accuracy"] == 1.0
    meter = SemanticMeter(2)
    with pytest.raises(EdgedetError):
        meter.update(np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(EdgedetError):
        meter.update(np.zeros((2, 2)), np.full((2, 2), 7))
    assert SemanticMeter(2).compute()["mIoU"] == -1


# ---------------------------------------------------------------- panoptic


def test_panoptic_quality_by_hand():
    # 1x10 strip. gt: thing A (cat 1) px 0-3, thing B (cat 1) px 4-5, stuff (cat 9) px 6-9
    gt = np.array([[1, 1, 1, 1, 2, 2, 3, 3, 3, 3]])
    gt_segments = {1: GtSegment(1), 2: GtSegment(1), 3: GtSegment(9)}
    # pred: thing matches A with 3 px (IoU 3/4), B missed, a stray thing on stuff (FP), stuff 6-8 (IoU 3/4... see below)
    pred = np.array([[1, 1, 1, 0, 0, 0, 2, 3, 3, 3]])
    pred_segments = {1: 1, 2: 1, 3: 9}
    meter = PanopticMeter({1: True, 9: False})
    meter.update(gt, gt_segments, pred, pred_segments)
    out = meter.compute({1: "thing", 9: "stuff"})
    # thing: TP A (IoU 3/4 -> union 4 - 0 void overlap... pred area 3, gt 4, inter 3 -> 3/4), FN B, FP seg 2
    assert out["things"]["PQ"] == pytest.approx(0.75 / (1 + 0.5 + 0.5))
    assert out["things"]["SQ"] == pytest.approx(0.75)
    assert out["things"]["RQ"] == pytest.approx(0.5)
    # stuff: pred 7-9 vs gt 6-9: inter 3, union 4 -> TP with 0.75
    assert out["stuff"] == {"PQ": pytest.approx(0.75), "SQ": pytest.approx(0.75), "RQ": 1.0, "n": 1}
    assert out["PQ"] == pytest.approx((0.375 + 0.75) / 2)
    assert set(out["per_class"]) == {"thing", "stuff"}


def test_panoptic_void_and_crowd_absorb_false_positives():
    gt = np.array([[0, 0, 0, 5, 5, 5, 5, 0]])
    gt_segments = {5: GtSegment(1, iscrowd=True)}
    pred = np.array([[7, 7, 7, 8, 8, 8, 0, 0]])  # 7 lies on void, 8 lies on the crowd region
    meter = PanopticMeter({1: True})
    meter.update(gt, gt_segments, pred, {7: 1, 8: 1})
    assert meter.fp[1] == 0 and meter.fn[1] == 0 and meter.tp[1] == 0
    assert meter.compute()["PQ"] == -1


def test_panoptic_map_builder_paints_instances_then_stuff():
    semantic = np.array([[0, 0, 1, 1, 255]])
    masks = np.array([[[0, 1, 1, 0, 0]], [[0, 0, 1, 1, 0]]], dtype=bool)  # second keeps 1 of 2 px -> kept at 0.5
    ids, segments = panoptic_from_semantic_and_instances(semantic, masks, [3, 4], stuff_labels=[0, 1])
    assert ids.tolist() == [[3, 1, 1, 2, 0]]
    assert {k: s.category for k, s in segments.items()} == {1: 3, 2: 4, 3: 0}


def test_panoptic_merge_things_over_stuff():
    semantic = np.zeros((10, 10), np.int64)  # label 0 = sky (stuff)
    semantic[5:] = 1  # label 1 = road (stuff)
    semantic[2:4, 2:4] = 2  # label 2 = car (thing) with no surviving instance: stays void
    semantic[9, 9] = 255  # ignore
    masks = np.zeros((3, 10, 10), bool)
    masks[0, 5:8, 5:8] = True   # car, best
    masks[1, 6:9, 6:9] = True   # car, overlaps the first by 4/9 visible 5/9 -> kept (>= 0.5)
    masks[2, 5:8, 5:8] = True   # duplicate of the first: fully hidden -> dropped
    scores = np.array([0.9, 0.8, 0.7])
    seg, segments = panoptic_from_semantic_and_instances(semantic, masks, [2, 2, 2], stuff_labels=[0, 1],
                                                         scores=scores)
    things = [k for k, s in segments.items() if s.instance is not None]
    stuff = {s.category: k for k, s in segments.items() if s.instance is None}
    assert [scores[segments[k].instance] for k in things] == pytest.approx([0.9, 0.8])
    assert [int((seg == k).sum()) for k in things] == [9, 5]
    assert set(stuff) == {0, 1}
    assert (seg[2:4, 2:4] == 0).all() and seg[9, 9] == 0
    assert (seg[5:8, 5:8] == things[0]).all()
    assert (seg == stuff[0]).sum() == 50 - 4 and (seg[0] == stuff[0]).all()
    assert sorted(np.unique(seg).tolist()) == [0] + sorted(segments)


def test_panoptic_merge_paints_by_score_when_scores_are_given():
    semantic = np.zeros((1, 6), np.int64)
    masks = np.array([[[1, 1, 1, 1, 0, 0]], [[0, 0, 1, 1, 1, 0]]], dtype=bool)
    ids, segments = panoptic_from_semantic_and_instances(semantic, masks, [3, 4], stuff_labels=[], scores=[0.2, 0.9])
    assert ids.tolist() == [[2, 2, 1, 1, 1, 0]]  # the second, scored higher, goes first and keeps its pixels
    assert [segments[k].instance for k in (1, 2)] == [1, 0]
    in_order, _ = panoptic_from_semantic_and_instances(semantic, masks, [3, 4], stuff_labels=[])
    assert in_order.tolist() == [[1, 1, 1, 1, 0, 0]]  # without scores the first goes first; the second keeps 1/3
    with pytest.raises(EdgedetError):
        panoptic_from_semantic_and_instances(semantic, masks, [3, 4], stuff_labels=[], scores=[0.5])


@pytest.mark.parametrize("min_stuff_area, kept", [(0, True), (3, True), (4, False)])
def test_panoptic_stuff_below_the_minimum_area_stays_void(min_stuff_area, kept):
    semantic = np.array([[0, 0, 0, 1, 1, 1, 1, 1]])  # stuff 0 has 3 pixels
    ids, segments = panoptic_from_semantic_and_instances(semantic, np.zeros((0, 1, 8), bool), [], stuff_labels=[0, 1],
                                                         min_stuff_area=min_stuff_area)
    assert (0 in {s.category for s in segments.values()}) == kept
    assert (ids[0, :3] != 0).all() == kept
