"""edgedet.metrics.coco against pycocotools' COCOeval: every stat, the precision/recall/score arrays, edge cases."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from edgedet.device.errors import EdgedetError
from edgedet.metrics import STAT_KEYS, coco_evaluate, evaluate_coco

pytest.importorskip("pycocotools")

from edgedet.device.rle import rle_encode
from edgedet.rle import mask_to_rle, rle_to_bbox


def random_coco_case(seed: int, num_images: int = 12, cat_ids=(3, 7, 11, 20), segm: bool = False,
                     size_hw=(120, 160), max_gt: int = 6, crowd_rate: float = 0.1, tie_scores: bool = True,
                     many_dets_image: bool = True):
    """(gt dict, results list) with crowds, empty images, a category without predictions, ties and >100 dets."""
    rng = np.random.default_rng(seed)
    h, w = size_hw
    images = [{"id": int(1000 + 7 * i), "height": h, "width": w, "file_name": f"{i}.png"} for i in range(num_images)]
    categories = [{"id": c, "name": f"c{c}"} for c in cat_ids]
    anns, results = [], []
    no_pred_cat = cat_ids[-1]
    for n, image in enumerate(images):
        if n % 5 == 4:  # images without ground truth
            num_gt = 0
        else:
            num_gt = int(rng.integers(1, max_gt + 1))
        for _ in range(num_gt):
            cat = int(rng.choice(cat_ids))
            box = _random_box(rng, h, w)
            crowd = int(rng.random() < crowd_rate)
            ann = {"id": len(anns) + 1, "image_id": image["id"], "category_id": cat, "iscrowd": crowd}
            _fill_geometry(ann, box, rng, h, w, segm, crowd)
            anns.append(ann)
            for _ in range(int(rng.integers(0, 3))):  # detections near the ground truth
                if cat == no_pred_cat:
                    continue
                results.append(_detection(rng, image["id"], cat, _jitter(rng, box, h, w), h, w, segm, tie_scores))
        for _ in range(int(rng.integers(0, 4))):  # background false positives
            cat = int(rng.choice(cat_ids[:-1]))
            results.append(_detection(rng, image["id"], cat, _random_box(rng, h, w), h, w, segm, tie_scores))
    if many_dets_image:
        cat = int(cat_ids[0])
        for _ in range(130):
            results.append(_detection(rng, images[0]["id"], cat, _random_box(rng, h, w), h, w, segm, tie_scores))
    rng.shuffle(results)
    return {"images": images, "categories": categories, "annotations": anns}, list(results)


def _random_box(rng, h, w):
    bw = float(rng.uniform(2, w * 0.8))
    bh = float(rng.uniform(2, h * 0.8))
    x = float(rng.uniform(0, w - bw))
    y = float(rng.uniform(0, h - bh))
    return [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)]


def _jitter(rng, box, h, w):
    x, y, bw, bh = box
    s = rng.uniform(0, 0.25)
    nx = float(np.clip(x + rng.normal(0, s * bw), 0, w - 2))
    ny = float(np.clip(y + rng.normal(0, s * bh), 0, h - 2))
    nw = float(np.clip(bw * rng.uniform(1 - s, 1 + s), 1, w - nx))
    nh = float(np.clip(bh * rng.uniform(1 - s, 1 + s), 1, h - ny))
    return [round(nx, 2), round(ny, 2), round(nw, 2), round(nh, 2)]


def _box_mask(box, h, w, rng):
    x, y, bw, bh = box
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = x + bw / 2, y + bh / 2
    if rng.random() < 0.5:  # ellipse
        return ((xx + 0.5 - cx) / (bw / 2)) ** 2 + ((yy + 0.5 - cy) / (bh / 2)) ** 2 <= 1
    return (xx >= int(x)) & (xx < int(x + bw)) & (yy >= int(y)) & (yy < int(y + bh))


def _fill_geometry(ann, box, rng, h, w, segm, crowd):
    ann["bbox"] = box
    if not segm:
        ann["area"] = round(box[2] * box[3] * float(rng.uniform(0.6, 1.0)), 2)
        return
    mask = _box_mask(box, h, w, rng)
    if crowd:  # crowd regions are uncompressed RLE, as in COCO
        ann["segmentation"] = {"size": [h, w], "counts": [int(c) for c in mask_to_rle(mask)["counts"]]}
    elif rng.random() < 0.5:
        x, y, bw, bh = box
        ann["segmentation"] = [[x, y, x + bw * 0.9, y + bh * 0.1, x + bw, y + bh, x + bw * 0.2, y + bh * 0.8]]
    else:
        ann["segmentation"] = rle_encode(mask)
    ann["area"] = float(mask.sum())


def _detection(rng, image_id, cat, box, h, w, segm, tie_scores):
    score = float(rng.integers(1, 10) / 10) if tie_scores else float(rng.random())
    det = {"image_id": image_id, "category_id": cat, "score": score}
    if segm:
        det["segmentation"] = rle_encode(_box_mask(box, h, w, rng))
    else:
        det["bbox"] = box
    return det


def pycocotools_eval(gt: dict, results: list, iou_type: str):
    """(COCOeval after summarize) from pycocotools, silenced."""
    import contextlib
    import copy
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def assert_same_as_pycocotools(gt, results, iou_type):
    mine = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(results), iou_type)
    ref = pycocotools_eval(gt, results, iou_type)
    np.testing.assert_allclose([mine.stats[k] for k in STAT_KEYS], ref.stats, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mine.precision, ref.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(mine.recall, ref.eval["recall"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(mine.scores, ref.eval["scores"], rtol=0, atol=1e-12)
    return mine, ref


@pytest.mark.parametrize("seed", range(6))
def test_bbox_random_cases_equal_pycocotools(seed):
    gt, results = random_coco_case(seed, size_hw=(240, 320) if seed % 2 else (120, 160), tie_scores=seed < 3)
    mine, _ = assert_same_as_pycocotools(gt, results, "bbox")
    assert 0 < mine.stats["AP50"] < 1  # a non-trivial case


@pytest.mark.parametrize("seed", range(3))
def test_segm_random_cases_equal_pycocotools(seed):
    gt, results = random_coco_case(seed, num_images=8, segm=True, size_hw=(110, 130))
    mine, _ = assert_same_as_pycocotools(gt, results, "segm")
    assert 0 < mine.stats["AP50"] < 1


def test_duplicate_ground_truth_iou_ties_crowds_and_gt_id_zero():
    gt, results = random_coco_case(11, max_gt=10, crowd_rate=0.3)
    anns = gt["annotations"]
    gt["annotations"] = anns + [dict(a, id=len(anns) + i + 1) for i, a in enumerate(anns[::3])]  # identical boxes
    gt["annotations"][0]["id"] = 0  # COCOeval never counts a match to id 0 as a true positive
    assert_same_as_pycocotools(gt, results, "bbox")


def test_minus_one_for_categories_without_ground_truth_and_areas_without_objects():
    gt, results = random_coco_case(4, num_images=4)
    gt["categories"].append({"id": 99, "name": "never"})  # no ground truth: -1 in precision
    results.append({"image_id": gt["images"][0]["id"], "category_id": 99, "bbox": [1, 1, 5, 5], "score": 0.9})
    mine, _ = assert_same_as_pycocotools(gt, results, "bbox")
    assert mine.stats["APl"] == -1  # boxes of a 120x160 image are never 'large' ground truth here
    assert mine.per_class_ap()[99] == -1


def test_results_in_unknown_categories_are_ignored_and_segm_results_define_bbox_area():
    gt, results = random_coco_case(5, num_images=5, segm=True)
    results.append(dict(results[0], category_id=12345))
    mine, _ = assert_same_as_pycocotools(gt, results, "bbox")  # boxes and areas from toBbox/area of the masks
    assert mine.stats["AP"] >= 0


def test_segm_results_with_boxes_take_area_from_the_box_as_loadres():
    gt, results = random_coco_case(6, num_images=6, segm=True)
    for r in results:
        r["bbox"] = [float(v) for v in rle_to_bbox(r["segmentation"])]
        r["bbox"][2] += 7  # area differs from the mask's: loadRes uses the box
    assert_same_as_pycocotools(gt, results, "segm")


def test_box_results_evaluated_as_segm_rasterise_the_box_polygon():
    gt, results = random_coco_case(7, num_images=5, segm=True)
    box_results = [{"image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"],
                    "bbox": [float(v) for v in rle_to_bbox(r["segmentation"])]} for r in results]
    assert_same_as_pycocotools(gt, box_results, "segm")


def test_perfect_detections_score_one():
    gt, _ = random_coco_case(8, num_images=6, crowd_rate=0.0)
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"]]
    mine, _ = assert_same_as_pycocotools(gt, results, "bbox")
    assert mine.stats["AP"] == pytest.approx(1.0)
    assert mine.stats["AR100"] == pytest.approx(1.0)


def test_no_results_gives_zero_where_ground_truth_exists():
    gt, _ = random_coco_case(9, num_images=4)
    stats = coco_evaluate(gt, [], "bbox")
    assert stats["AP"] == 0 and stats["AR100"] == 0 and stats["APl"] == -1


def test_pr_curve_and_per_class_ap_are_consistent():
    gt, results = random_coco_case(10)
    ev = evaluate_coco(gt, results, "bbox")
    cat = ev.category_ids[0]
    recall, precision = ev.pr_curve(cat, iou=0.5)
    assert recall.shape == precision.shape == (101,)
    assert np.all(np.diff(precision) <= 0)  # interpolated precision is non-increasing
    assert ev.per_class_ap(iou=0.5)[cat] == pytest.approx(precision.mean())
    assert len(ev.summary_lines()) == 12
    assert ev.summary_lines()[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = ")


def test_summary_lines_are_formatted_like_pycocotools(capsys):
    gt, results = random_coco_case(2)
    ev = evaluate_coco(gt, results, "bbox")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    buffer = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        ref = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "bbox")
        ref.evaluate()
        ref.accumulate()
    with contextlib.redirect_stdout(buffer):
        ref.summarize()
    assert ev.summary_lines() == buffer.getvalue().splitlines()


@pytest.mark.parametrize("gt, results, message", [
    ({"images": [{"id": 1, "height": 5, "width": 5}], "categories": [{"id": 1}], "annotations": []},
     [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}], "not in the ground truth"),
    ({"images": [{"id": 1, "height": 5, "width": 5}], "categories": [{"id": 1}]}, {"not": "a list"}, "must be a JSON list"),
    ({"images": [], "categories": [{"id": 1}]}, [], "no images"),
    ({"images": [{"id": 1, "height": 5, "width": 5}], "categories": []}, [], "no 'categories'"),
    ({"images": [{"id": 1, "height": 5, "width": 5}], "categories": [{"id": 1}]},
     [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}], "score"),
])
def test_bad_inputs_are_edgedet_errors(gt, results, message):
    with pytest.raises(EdgedetError, match=message):
        coco_evaluate(gt, results, "bbox")


def test_unknown_iou_type_is_an_edgedet_error():
    with pytest.raises(EdgedetError, match="unknown iou type"):
        coco_evaluate({"images": [{"id": 1}], "categories": [{"id": 1}]}, [], "keypoints")


def test_segm_needs_image_sizes():
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0,
                           "segmentation": [[0, 0, 2, 0, 2, 2]]}]}
    with pytest.raises(EdgedetError, match="height"):
        coco_evaluate(gt, [], "segm")
