"""Golden int8 test on the trained shipped model: int8 detections match fp32 ones by IoU, not equality.

Uses edgedet/weights/edgedet-n-320.pt, which is in git (retrained by `make train-shipped`): an untrained model
has no confident detections to compare, so a missing checkpoint is a failure, never a skip.

What "match" means, per runtime, on 12 synthetic val images (int8 calibrated on 64 train images):
- at IoU >= 0.9 (same class), at least 90% of fp32's detections scoring >= 0.4 have an int8 twin (measured with the
  shipped checkpoint: ONNX 97%, TFLite 96% over 40 images; the rest are small boxes moved by 1-3 px);
- nothing is lost or invented: every detection scoring >= 0.5 on one side has a same-class detection at IoU >= 0.5
  on the other (run at conf 0.2), except a duplicate on the NMS boundary: a box overlapping a higher-scoring box
  of its class (IoU >= 0.3) that a small score change may suppress on one side and not the other.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgedet.export.agreement import best_same_class_iou

pytestmark = pytest.mark.slow

MATCH_SCORE = 0.4  # fp32 detections at least this confident are matched at MIN_IOU
MIN_IOU = 0.9  # same class and IoU >= this counts as the same box
MATCHED_SHARE = 0.9  # share of those fp32 detections int8 must reproduce at MIN_IOU
CONFIDENT = 0.5  # detections at least this confident must exist on the other side ...
FOUND_IOU = 0.5  # ... as a same-class box at IoU >= this
OTHER_SIDE_CONF = 0.2  # threshold of the other side's detector when looking for them
DUPLICATE_IOU = 0.3  # a box overlapping a higher-scoring box of its class this much is an NMS-boundary duplicate


@pytest.fixture(scope="module")
def shipped_exports(tmp_path_factory):
    """{"onnx", "onnx-int8", "tflite", "tflite-int8": path} of the shipped model at 320, and the val images."""
    from edgedet.cli import main
    from edgedet.models import SHIPPED_CHECKPOINT

    assert SHIPPED_CHECKPOINT.is_file(), f"the shipped checkpoint {SHIPPED_CHECKPOINT} is missing from the package"
    from edgedet.export_cli import export_artifacts
    from edgedet.export.exporter import ExportConfig

    data = tmp_path_factory.mktemp("synth320")
    assert main(["data", "synth", "--out", str(data), "--train", "64", "--val", "12", "--imgsz", "320",
                 "--seed", "1", "--workers", "1"]) == 0
    config = ExportConfig(checkpoint="shipped", formats=["onnx", "onnx-int8", "tflite", "tflite-int8"],
                          out=tmp_path_factory.mktemp("shipped"), calib=str(data), calib_size=64)
    _, _, written = export_artifacts(config)
    return written, sorted((data / "val" / "images").iterdir())


def nms_boundary_duplicates(detections) -> np.ndarray:
    """(N,) bool: the detection overlaps a higher-scoring one of its class at IoU >= DUPLICATE_IOU."""
    from edgedet.device.boxes import box_iou

    iou = box_iou(detections.xyxy, detections.xyxy)
    higher = detections.scores[None, :] > detections.scores[:, None]
    same_class = detections.class_ids[:, None] == detections.class_ids[None, :]
    return ((iou >= DUPLICATE_IOU) & higher & same_class).any(axis=1)


def unmatched_confident(found_in, looked_for, name: str) -> list:
    """Descriptions of `looked_for`'s confident, non-duplicate detections with no same-class box in `found_in`."""
    confident = (looked_for.scores >= CONFIDENT) & ~nms_boundary_duplicates(looked_for)
    best = best_same_class_iou(looked_for, found_in)
    return [f"{name} class {looked_for.class_ids[i]} score {looked_for.scores[i]:.2f} best IoU {best[i]:.2f}"
            for i in np.flatnonzero(confident & (best < FOUND_IOU))]


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
def test_int8_detections_match_fp32_by_iou(runtime, shipped_exports):
    import cv2

    from edgedet.device.pipeline import Detector

    paths, images = shipped_exports
    detectors = {(precision, conf): Detector(paths[f"{runtime}{suffix}"], conf=conf, threads=1)
                 for precision, suffix in (("fp32", ""), ("int8", "-int8"))
                 for conf in (OTHER_SIDE_CONF, MATCH_SCORE)}
    matched_ious, missing = [], []
    for image_path in images:
        image = cv2.imread(str(image_path))
        fp32, int8 = (detectors[(p, OTHER_SIDE_CONF)].predict(image) for p in ("fp32", "int8"))
        reference = detectors[("fp32", MATCH_SCORE)].predict(image)
        matched_ious.extend(best_same_class_iou(reference, int8).tolist())
        missing += [f"{image_path.name}: {m}" for m in unmatched_confident(int8, fp32, "fp32")]
        missing += [f"{image_path.name}: {m}" for m in unmatched_confident(fp32, int8, "int8")]
    assert not missing, f"confident detections without a same-class twin at IoU >= {FOUND_IOU}: {missing}"
    assert len(matched_ious) >= 20, "too few confident fp32 detections to compare"
    share = float(np.mean(np.array(matched_ious) >= MIN_IOU))
    assert share >= MATCHED_SHARE, f"only {share:.0%} of fp32 detections matched at IoU >= {MIN_IOU}"
