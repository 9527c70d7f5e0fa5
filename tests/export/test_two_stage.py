"""The two-stage model (issue 16) on the device: one artifact per format and precision carrying its stage 1 and its
per-region heads, decoded by the NumPy second stage (proposals, RoI Align, heads, per-class decode, box masks) to
the PyTorch model's detections, through `edgedet export`, `run`, `eval` and `bench`; missing heads are named."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from edgedet.cli import main as cli_main
from edgedet.device import Detector
from edgedet.device.backends import load_backend
from edgedet.device.two_stage import HEADS_KEY
from edgedet.export.agreement import best_same_class_iou
from tests.conftest import write_tiny_shapes

torch.set_num_threads(1)
FORMATS = {"onnx": "rcnn.onnx", "onnx-int8": "rcnn-int8.onnx", "tflite": "rcnn.tflite",
           "tflite-int8": "rcnn-int8.tflite"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 128x128 synthetic data set: 16 train and 4 val images."""
    return write_tiny_shapes(tmp_path_factory.mktemp("rcnn128"), 128, train=16, val=4, min_size=12)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A seeded, untrained two-stage checkpoint at 128x128 (its detections are many and low-scoring); its box
    head moves the boxes well off their proposals, so that masks (which cover the proposals) are placed right."""
    from edgedet.models.checkpoint import checkpoint_dict, save_checkpoint
    from edgedet.models.rcnn import RCNNConfig, build_rcnn

    torch.manual_seed(0)
    model = build_rcnn(RCNNConfig(num_classes=5, input_size_hw=(128, 128))).eval()
    torch.nn.init.normal_(model.heads.box_head.box.weight, std=0.05)
    path = tmp_path_factory.mktemp("rcnn-ckpt") / "rcnn.pt"
    save_checkpoint(checkpoint_dict(model, ["circle", "square", "triangle", "star", "hexagon"], []), path)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("rcnn-export")
    code = cli_main(["export", str(checkpoint), "--format", ",".join(FORMATS), "--calib", str(data),
                     "--calib-size", "8", "--out", str(out)])
    assert code == 0
    return {fmt: out / name for fmt, name in FORMATS.items()}


def test_every_artifact_carries_its_heads_in_its_own_precision(exported):
    assert sorted(p.name for p in exported["onnx"].parent.iterdir()) == sorted(
        [*FORMATS.values(), "rcnn.tflite.json", "rcnn-int8.tflite.json"])  # nothing else to copy
    for fmt, path in exported.items():
        heads = load_backend(path, threads=1).heads
        out = heads(np.zeros((3, 64, 14, 14), np.float32))
        assert out["cls"].shape == (3, 6) and out["box"].shape == (3, 20) and out["mask"].shape == (3, 1, 28, 28)
    assert exported["onnx-int8"].stat().st_size < 0.4 * exported["onnx"].stat().st_size


def _images(data):
    return [cv2.imread(str(p)) for p in sorted((data / "val" / "images").glob("*.jpg"))]


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_fp32_exports_decode_to_the_pytorch_detections(fmt, exported, checkpoint, data):
    """The PyTorch model's 10 best detections per image (its own predict) each have a same-class twin at IoU >=
    0.99 among the fp32 export's 100 best, decoded by the device runtime."""
    from edgedet.models.checkpoint import load_checkpoint
    from edgedet.train_val import two_stage_detections

    model, spec = load_checkpoint(checkpoint)
    detector = Detector(exported[fmt], conf=0.001, iou=0.5, max_det=100, threads=1)
    compared = 0
    for image in _images(data):
        reference = two_stage_detections(model, [image], spec)[0][:10]
        ours = detector(image)
        assert best_same_class_iou(reference, ours).min(initial=1.0) >= 0.99
        compared += len(reference)
        assert ours.masks is not None and ours.masks.shape[1:] == image.shape[:2]
    assert compared > 0


def test_the_device_second_stage_equals_predict_with_the_pytorch_heads(checkpoint, data):
    """Through TorchBackend (PyTorch stage 1 and heads) the NumPy proposals, RoI Align and decode give predict's
    boxes, scores and masks."""
    from edgedet.models.checkpoint import load_checkpoint
    from edgedet.models.loading import torch_backend
    from edgedet.train_val import two_stage_detections

    model, spec = load_checkpoint(checkpoint)
    detector = Detector(torch_backend(checkpoint, threads=1), conf=0.005, iou=0.6, max_det=100)
    for image in _images(data):
        reference, ours = two_stage_detections(model, [image], spec)[0], detector(image)
        assert len(ours) == len(reference)
        np.testing.assert_allclose(ours.scores, reference.scores, atol=1e-5)  # both by descending score
        assert best_same_class_iou(reference, ours).min() > 0.999  # equal scores may come in either order
        assert best_same_class_iou(ours, reference).min() > 0.999
        agree = [(ours.masks[i] == reference.masks[i]).mean() for i in range(len(ours))
                 if np.abs(ours.xyxy[i] - reference.xyxy[i]).max() < 1e-3]
        assert len(agree) > 0.9 * len(ours) and min(agree) > 0.999


def test_int8_artifacts_run_eval_and_bench(exported, data, tmp_path, capsys):
    for fmt in ("onnx-int8", "tflite-int8"):
        out = tmp_path / f"{fmt}.jsonl"
        assert cli_main(["run", "--model", str(exported[fmt]), "--source", str(data / "val" / "images"),
                         "--json", str(out), "--conf", "0.01"]) == 0
        assert len(out.read_text().splitlines()) == 4
        report = tmp_path / f"{fmt}.json"
        assert cli_main(["eval", "--model", str(exported[fmt]), "--data", str(data), "--json", str(report)]) == 0
        assert {"bbox", "segm"} <= set(json.loads(report.read_text()))
    bench = tmp_path / "bench"
    assert cli_main(["bench", "--models", str(exported["onnx-int8"]), "--data", str(data), "--out", str(bench),
                     "--warmup", "1", "--repeats", "3"]) == 0
    (record,) = [json.loads(line) for line in (bench / "results.jsonl").read_text().splitlines()]
    assert record["model"]["layout"] == "rcnn" and "error" not in record
    assert {"inference", "roi_align", "stage2", "masks"} <= set(record["latency_ms"])
    capsys.readouterr()


def test_a_stage_one_file_without_its_heads_names_what_is_missing(exported, tmp_path, capsys):
    import onnx

    model = onnx.load(str(exported["onnx"]))
    kept = [p for p in model.metadata_props if p.key != HEADS_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    lonely = tmp_path / "rcnn.onnx"
    onnx.save_model(model, str(lonely))
    code = cli_main(["run", "--model", str(lonely), "--source", "synthetic", "--max-frames", "1"])
    err = capsys.readouterr().err
    assert code != 0 and "lacks its second stage, the per-region heads (metadata edgedet_heads)" in err
    assert "Traceback" not in err
    flatbuffer_only = tmp_path / "rcnn.tflite"
    data = exported["tflite"].read_bytes()
    flatbuffer_only.write_bytes(data[:data.rfind(b"PK\x03\x04")])  # the zip appended to the .tflite cut off
    shutil.copy(str(exported["tflite"]) + ".json", str(flatbuffer_only) + ".json")
    assert cli_main(["run", "--model", str(flatbuffer_only), "--source", "synthetic", "--max-frames", "1"]) != 0
    assert "zip member edgedet_heads.tflite" in capsys.readouterr().err


def test_calibrate_ranks_the_stage_one_layers_and_leaves_keep_float_to_export(checkpoint, data, tmp_path, capsys):
    out = tmp_path / "calibration"
    assert cli_main(["calibrate", str(checkpoint), "--calib", str(data), "--sensitivity", "--calib-size", "4",
                     "--sensitivity-images", "2", "--out", str(out)]) == 0
    report = json.loads((out / "sensitivity.json").read_text())
    assert len(report["layers"]) > 10
    assert cli_main(["calibrate", str(checkpoint), "--calib", str(data), "--auto-keep-float", "2",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pass the names to `edgedet export --keep-float`" in err and "Traceback" not in err
