"""Post-processing speed against OpenCV peers measured in the same run (medians after warm-up, ratio = ours / peer).

    .venv/bin/python benchmarks/bench_postprocess.py [--repeats 30] [--seed 0]

1. NMS on clustered candidate sets (objects of 20-60 jittered candidates; 300, 1000, 3000 candidates) vs
   cv2.dnn.NMSBoxes including the xyxy -> xywh list conversion OpenCV needs; the kept sets are checked equal.
2. Full YOLOv8 (1, 84, 8400) post-processing at conf 0.25 (device.postprocessing) vs an OpenCV reference:
   transpose, score filter, NMSBoxesBatched, un-letterbox.
3. Bilinear upsampling of (C, h, w) logits (lecture.upsampling) vs cv2.resize per channel into one (C, H, W) array.
4. Instance-mask assembly for 20 kept objects from 32x160x160 prototypes into a 480x640 frame (median only).
Timing alternates blocks of ours and the peer's calls so load on a shared machine hits both alike.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List

import cv2
import numpy as np

from edgedet.device.boxes import xyxy_to_xywh
from edgedet.device.letterbox import Letterbox
from edgedet.device.masks import instance_masks
from edgedet.device.suppression import nms
from edgedet.device.postprocessing import postprocess
from edgedet.device.spec import ModelSpec
from edgedet.lecture.upsampling import upsample


def time_alternating(fns: Dict[str, Callable[[], object]], repeats: int, block: int = 5,
                     warmup: int = 3) -> Dict[str, float]:
    """Median seconds per call of each function; calls run in alternating blocks of `block` after warm-up."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeats // block)):
        for name, fn in fns.items():
            for _ in range(block):
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in samples.items()}


def clustered_candidates(rng: np.random.Generator, n: int, image_hw=(640, 640)):
    """n candidate boxes (float32 xyxy) around objects of 20-60 jittered candidates each, with scores."""
    boxes = []
    while sum(len(b) for b in boxes) < n:
        count = int(rng.integers(20, 61))
        cx, cy = rng.uniform(0, image_hw[1]), rng.uniform(0, image_hw[0])
        w, h = rng.uniform(16, 200, 2)
        jitter = rng.normal(0, 0.08, (count, 4)) * [w, h, w, h]
        boxes.append(np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) + jitter)
    xyxy = np.concatenate(boxes)[:n].astype(np.float32)
    return xyxy, rng.uniform(0.25, 1.0, n).astype(np.float32)


def opencv_nms(xyxy: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """The peer: OpenCV wants lists of top-left x, y, w, h."""
    kept = cv2.dnn.NMSBoxes(xyxy_to_xywh(xyxy).tolist(), scores.tolist(), 0.0, iou)
    return np.asarray(kept, dtype=np.int64).reshape(-1)


def bench_nms(rng, repeats: int) -> None:
    print("NMS, clustered candidates (IoU 0.45, agnostic); peer cv2.dnn.NMSBoxes incl. list conversion")
    for n in (300, 1000, 3000):
        xyxy, scores = clustered_candidates(rng, n)
        ours_kept, peer_kept = nms(xyxy, scores, 0.45), opencv_nms(xyxy, scores, 0.45)
        if not np.array_equal(np.sort(ours_kept), np.sort(peer_kept)):
            raise SystemExit(f"NMS kept sets differ from OpenCV at n={n}")
        t = time_alternating({"ours": lambda: nms(xyxy, scores, 0.45),
                              "opencv": lambda: opencv_nms(xyxy, scores, 0.45)}, repeats * 4)
        print(f"  n={n:5d} kept={len(ours_kept):4d}  ours {t['ours'] * 1e3:7.3f} ms  opencv {t['opencv'] * 1e3:7.3f} ms"
              f"  ratio {t['ours'] / t['opencv']:.2f}")


def yolov8_output(rng, num_objects: int = 20, num_classes: int = 80, size: int = 640) -> np.ndarray:
    """A realistic (1, 4+C, 8400) YOLOv8 output: low background scores, `num_objects` objects each seen by
    20-60 anchors with jittered boxes and scores above 0.25."""
    n = sum((size // s) ** 2 for s in (8, 16, 32))
    pred = np.empty((4 + num_classes, n), np.float32)
    pred[0:2] = rng.uniform(0, size, (2, n))
    pred[2:4] = rng.uniform(8, 120, (2, n))
    pred[4:] = rng.uniform(0, 0.05, (num_classes, n))
    chosen = rng.permutation(n)
    start = 0
    for _ in range(num_objects):
        count = int(rng.integers(20, 61))
        idx = chosen[start:start + count]
        start += count
        centre, wh = rng.uniform(50, size - 50, 2), rng.uniform(20, 200, 2)
        pred[0:2, idx] = centre[:, None] + rng.normal(0, 3, (2, count))
        pred[2:4, idx] = wh[:, None] * rng.uniform(0.9, 1.1, (2, count))
        pred[4 + int(rng.integers(num_classes)), idx] = rng.uniform(0.3, 0.95, count)
    return pred[None]


def opencv_yolov8(pred: np.ndarray, box: Letterbox, conf: float, iou: float):
    """The peer: the usual OpenCV YOLOv8 post-processing (transpose, score filter, NMSBoxesBatched, un-letterbox)."""
    rows = cv2.transpose(pred[0])  # (8400, 84)
    class_scores = rows[:, 4:]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), class_ids]
    keep = scores > conf
    rows, scores, class_ids = rows[keep], scores[keep], class_ids[keep]
    xywh = np.stack([rows[:, 0] - rows[:, 2] / 2, rows[:, 1] - rows[:, 3] / 2, rows[:, 2], rows[:, 3]], axis=1)
    kept = np.asarray(cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), conf, iou),
                      dtype=np.int64).reshape(-1)[:300]
    xyxy = np.concatenate([xywh[kept, :2], xywh[kept, :2] + xywh[kept, 2:]], axis=1)
    return box.boxes_to_original(xyxy), scores[kept], class_ids[kept]


def bench_yolov8(rng, repeats: int) -> None:
    pred = yolov8_output(rng)
    spec = ModelSpec(names=[str(i) for i in range(80)], input_size_hw=(640, 640), layout="yolov8", anchors=[])
    box = Letterbox.fit((480, 640), (640, 640))
    outputs = {"output0": pred}
    ours = postprocess(outputs, spec, box, conf=0.25, iou=0.45)
    peer_xyxy, _, peer_ids = opencv_yolov8(pred, box, 0.25, 0.45)
    if sorted(ours.class_ids.tolist()) != sorted(peer_ids.tolist()):
        raise SystemExit("YOLOv8 post-processing disagrees with the OpenCV reference")
    t = time_alternating({"ours": lambda: postprocess(outputs, spec, box, conf=0.25, iou=0.45),
                          "opencv": lambda: opencv_yolov8(pred, box, 0.25, 0.45)}, repeats * 2)
    print(f"YOLOv8 (1, 84, 8400) full post-processing, conf 0.25, {len(ours)} detections")
    print(f"  ours {t['ours'] * 1e3:7.3f} ms  opencv reference {t['opencv'] * 1e3:7.3f} ms"
          f"  ratio {t['ours'] / t['opencv']:.2f}")


def opencv_resize_channels(x: np.ndarray, size_hw) -> np.ndarray:
    """The peer: cv2.resize (INTER_LINEAR) of each channel into one new (C, H, W) array."""
    out = np.empty((len(x), *size_hw), np.float32)
    for c in range(len(x)):
        cv2.resize(x[c], (size_hw[1], size_hw[0]), dst=out[c], interpolation=cv2.INTER_LINEAR)
    return out


def bench_upsample(rng, repeats: int) -> None:
    print("Bilinear upsampling of logits (align_corners=False); peer cv2.resize per channel")
    for shape, size_hw in [((21, 80, 80), (640, 640)), ((21, 40, 40), (320, 320)), ((32, 160, 160), (640, 640)),
                           ((21, 60, 80), (480, 640)), ((21, 45, 60), (480, 640))]:
        x = rng.normal(size=shape).astype(np.float32)
        err = float(np.abs(upsample(x, size_hw, "bilinear") - opencv_resize_channels(x, size_hw)).max())
        t = time_alternating({"ours": lambda: upsample(x, size_hw, "bilinear"),
                              "opencv": lambda: opencv_resize_channels(x, size_hw)}, repeats)
        print(f"  {shape} -> {size_hw}: ours {t['ours'] * 1e3:7.3f} ms  opencv {t['opencv'] * 1e3:7.3f} ms"
              f"  ratio {t['ours'] / t['opencv']:.2f}  max |diff| {err:.1e}")


def bench_masks(rng, repeats: int) -> None:
    protos = rng.normal(size=(32, 160, 160)).astype(np.float32)
    coefs = rng.normal(size=(20, 32)).astype(np.float32)
    xy = rng.uniform(0, 500, (20, 2))
    xyxy = np.concatenate([xy, xy + rng.uniform(20, 140, (20, 2))], axis=1).astype(np.float32)
    box = Letterbox.fit((480, 640), (640, 640))
    t = time_alternating({"ours": lambda: instance_masks(protos, coefs, xyxy, box)}, repeats)
    print(f"Mask assembly, 20 objects from 32x160x160 prototypes into a 480x640 frame: median "
          f"{t['ours'] * 1e3:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per function (after warm-up)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic inputs")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append", help="run only these parts")
    parser.add_argument("--cv-threads", type=int, default=None,
                        help="cv2.setNumThreads for the OpenCV peers (default: OpenCV's own; ours is single-threaded)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    if args.cv_threads is not None:
        cv2.setNumThreads(args.cv_threads)
    print(f"numpy {np.__version__}, opencv {cv2.__version__}, cv2 threads {cv2.getNumThreads()}")
    for name in args.only or BENCHES:
        BENCHES[name](rng, args.repeats)


BENCHES = {"nms": bench_nms, "yolov8": bench_yolov8, "upsample": bench_upsample, "masks": bench_masks}


if __name__ == "__main__":
    main()
