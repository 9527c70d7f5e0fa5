"""Golden int8 test on the trained shipped model: int8 detections match fp32 ones by IoU, not equality.

Uses edgedet/weights/edgedet-n-320.pt, which is in git (retrained by `make train-shipped`): an untrained model
has no confident detections to compare, so a missing checkpoint is a failure, never a skip.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

FP32_SCORE = 0.4  # fp32 detections at least this confident must be found again in int8
INT8_CONF = 0.2  # int8 detector threshold (a little lower: scores move by a few hundredths)
MIN_IOU = 0.9  # same class and IoU >= this counts as the same box
MATCHED_SHARE = 0.9  # share of confident fp32 detections int8 must reproduce at MIN_IOU
FOUND_IOU = 0.5  # every confident fp32 detection must at least be found (same class, IoU >= this)


@pytest.fixture(scope="module")
def shipped_exports(tmp_path_factory):
    """{"onnx", "onnx-int8", "tflite", "tflite-int8": path} of the shipped model at 320, and the val images."""
    from edgedet.cli import main
    from edgedet.models import SHIPPED_CHECKPOINT

    assert SHIPPED_CHECKPOINT.is_file(), f"the shipped checkpoint {SHIPPED_CHECKPOINT} is missing from the package"
    from edgedet.export_cli import export_artifacts
    from export.exporter import ExportConfig

    data = tmp_path_factory.mktemp("synth320")
    assert main(["data", "synth", "--out", str(data), "--train", "24", "--val", "8", "--imgsz", "320",
                 "--seed", "1", "--workers", "1"]) == 0
    config = ExportConfig(checkpoint="shipped", formats=["onnx", "onnx-int8", "tflite", "tflite-int8"],
                          out=tmp_path_factory.mktemp("shipped"), calib=str(data), calib_size=24)
    _, _, written = export_artifacts(config)
    return written, sorted((data / "val" / "images").iterdir())


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
def test_int8_detections_match_fp32_by_iou(runtime, shipped_exports):
    import cv2

    from device.boxes import box_iou
    from device.pipeline import Detector

    paths, images = shipped_exports
    fp32 = Detector(paths[runtime], conf=FP32_SCORE, threads=1)
    int8 = Detector(paths[f"{runtime}-int8"], conf=INT8_CONF, threads=1)
    best_ious = []
    for image_path in images:
        image = cv2.imread(str(image_path))
        reference, quantized = fp32.predict(image), int8.predict(image)
        if len(reference) == 0:
            continue
        assert len(quantized) > 0, f"{image_path.name}: int8 found nothing, fp32 found {len(reference)}"
        iou = box_iou(reference.xyxy, quantized.xyxy)
        same_class = reference.class_ids[:, None] == quantized.class_ids[None, :]
        best = np.where(same_class, iou, 0.0).max(axis=1)
        assert (best >= FOUND_IOU).all(), f"{image_path.name}: fp32 detections missing in int8, best IoU {best.round(3)}"
        best_ious.extend(best.tolist())
    assert len(best_ious) >= 5, "too few confident fp32 detections to compare"
    share = float(np.mean(np.array(best_ious) >= MIN_IOU))
    assert share >= MATCHED_SHARE, f"only {share:.0%} of fp32 detections matched at IoU >= {MIN_IOU}"
