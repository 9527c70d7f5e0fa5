"""edgedet.metrics.coco_evaluate vs pycocotools' COCOeval on a 5,000-image, 5-category bbox case.

Both evaluate the same in-memory ground truth and results (pycocotools: COCO index + loadRes + evaluate +
accumulate + summarize; edgedet: coco_evaluate from the same dicts). One warm-up, then the median of
--repeats runs each. The 12 stats must be identical; the script prints both times and their ratio.

    .venv/bin/python benchmarks/bench_cocoeval.py [--images 5000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import statistics
import sys
import time

import numpy as np

from edgedet.metrics import STAT_KEYS, coco_evaluate


def make_case(num_images: int, num_cats: int = 5, seed: int = 0):
    """COCO-like boxes: 0-15 objects per 640x480 image, detections = jittered objects + false positives."""
    rng = np.random.default_rng(seed)
    cat_ids = [1, 2, 3, 5, 8][:num_cats]
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(num_images)]
    anns, results = [], []
    for image in images:
        for _ in range(int(rng.integers(0, 16))):
            w, h = float(rng.uniform(4, 300)), float(rng.uniform(4, 300))
            x, y = float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h))
            cat = int(rng.choice(cat_ids))
            anns.append({"id": len(anns) + 1, "image_id": image["id"], "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": int(rng.random() < 0.02)})
            for _ in range(int(rng.integers(0, 3))):
                j = rng.normal(0, 0.1, 4) * [w, h, w, h]
                results.append({"image_id": image["id"], "category_id": cat, "score": round(float(rng.random()), 3),
                                "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])]})
        for _ in range(int(rng.integers(0, 10))):
            w, h = float(rng.uniform(4, 200)), float(rng.uniform(4, 200))
            results.append({"image_id": image["id"], "category_id": int(rng.choice(cat_ids)),
                            "score": round(float(rng.random()), 3),
                            "bbox": [float(rng.uniform(0, 600)), float(rng.uniform(0, 440)), w, h]})
    gt = {"images": images, "categories": [{"id": c, "name": str(c)} for c in cat_ids], "annotations": anns}
    return gt, results


def run_pycocotools(gt: dict, results: list) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def run_edgedet(gt: dict, results: list) -> np.ndarray:
    stats = coco_evaluate(gt, results, "bbox")
    return np.array([stats[k] for k in STAT_KEYS])


def timed(fn, gt, results, repeats: int):
    """(median seconds, stats); inputs are deep-copied outside the timed region (pycocotools mutates them)."""
    times, stats = [], None
    for _ in range(repeats + 1):  # first run is warm-up
        g, r = copy.deepcopy(gt), copy.deepcopy(results)
        start = time.perf_counter()
        stats = fn(g, r)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    gt, results = make_case(args.images)
    print(f"case: {args.images} images, {len(gt['categories'])} categories, {len(gt['annotations'])} objects, "
          f"{len(results)} detections")
    t_ref, ref = timed(run_pycocotools, gt, results, args.repeats)
    t_ours, ours = timed(run_edgedet, gt, results, args.repeats)
    diff = float(np.abs(ref - ours).max())
    print(f"pycocotools COCOeval: {t_ref:.3f} s (median of {args.repeats})")
    print(f"edgedet coco_evaluate: {t_ours:.3f} s (median of {args.repeats})")
    print(f"speed-up: {t_ref / t_ours:.1f}x   max |stat difference|: {diff:.2e}   AP={ours[0]:.4f} AP50={ours[1]:.4f}")
    if diff > 1e-4:
        print("stats differ from pycocotools", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
