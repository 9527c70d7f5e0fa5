"""`edgedet export MODEL.onnx` on the models users bring: Ultralytics YOLOv8 / YOLO11 (detect, -seg) and
anchor-based YOLOv5 files (tests/fixtures/ultralytics, made by scripts/ultralytics_models.py), and a YOLOv8 head
in the graph form of Ultralytics 8.0-8.3 (one Concat of box and class per level, a Split after), built here.

- the cut fp32 graph decodes to the same candidates and detections as the source file (boxes within 1e-3 px,
  scores within 1e-5);
- the int8 file runs under `edgedet run` and `edgedet eval` with no flags;
- the gates fail when they should; bad files get one line.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedet.device.backends import load_backend
from edgedet.device.layouts import select
from edgedet.device.pipeline import Detector
from edgedet.device.preprocessing import preprocess
from edgedet.export.agreement import agreement
from edgedet.export.foreign_onnx import cut_foreign_onnx

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ultralytics"
MODELS = ["yolov8-det", "yolov8-seg", "yolo11-det", "yolo11-seg", "yolov5-det"]
EDGEDET = [sys.executable, "-m", "edgedet"]
NAMES = ["circle", "square", "triangle", "star", "hexagon"]


@pytest.fixture(scope="module")
def images(synth_data):
    """Four BGR synthetic val images (160x160): the fixtures' random heads give a spread of scores on them."""
    paths = sorted((synth_data / "val" / "images").iterdir())[:4]
    return [cv2.imread(str(path)) for path in paths]


def candidates(path, image):
    backend = load_backend(path, threads=1)
    x, _ = preprocess(image, backend.spec)
    outputs = backend.run(x)
    layout = select(outputs, backend.spec)
    return layout.decode(outputs, backend.spec), layout.prototypes(outputs, backend.spec)


def assert_same_candidates(source, cut, image):
    (expected, expected_protos), (got, got_protos) = candidates(source, image), candidates(cut, image)
    assert len(got) == len(expected) > 0
    np.testing.assert_allclose(got.xyxy, expected.xyxy, atol=1e-3, rtol=0)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5, rtol=0)
    unsaturated = expected.scores < 0.999  # sigmoid ties at 1.0 in float32 may pick another class
    assert (got.class_ids[unsaturated] == expected.class_ids[unsaturated]).all()
    if expected.mask_coefs is not None:
        np.testing.assert_allclose(got.mask_coefs, expected.mask_coefs, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(got_protos, expected_protos)


def assert_same_detections(source, cut, image):
    expected = Detector(str(source), conf=0.25, threads=1).predict(image)
    got = Detector(str(cut), conf=0.25, threads=1).predict(image)
    assert len(got) == len(expected)
    np.testing.assert_allclose(got.xyxy, expected.xyxy, atol=1e-3, rtol=0)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5, rtol=0)
    if expected.masks is not None:
        assert (got.masks != expected.masks).mean() < 1e-3


@pytest.mark.parametrize("name", MODELS)
def test_cut_graph_decodes_like_the_source(name, images, tmp_path):
    source, cut = FIXTURES / f"{name}.onnx", tmp_path / f"{name}.onnx"
    spec = cut_foreign_onnx(source, cut)
    assert spec.layout == ("yolov5-split" if name.startswith("yolov5") else "yolov8-split")
    assert spec.names == NAMES and spec.level_outputs == ["p3", "p4", "p5"] and spec.strides == (8, 16, 32)
    for image in images:
        assert_same_candidates(source, cut, image)
        assert_same_detections(source, cut, image)


def test_cut_outputs_are_one_tensor_per_level_and_role(tmp_path):
    import onnx

    cut_foreign_onnx(FIXTURES / "yolov8-seg.onnx", tmp_path / "cut.onnx")
    outputs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim]
               for o in onnx.load(str(tmp_path / "cut.onnx")).graph.output}
    assert outputs == {"p3_dist": [1, 64, 12, 12], "p3_cls": [1, 5, 12, 12], "p3_coef": [1, 32, 12, 12],
                       "p4_dist": [1, 64, 6, 6], "p4_cls": [1, 5, 6, 6], "p4_coef": [1, 32, 6, 6],
                       "p5_dist": [1, 64, 3, 3], "p5_cls": [1, 5, 3, 3], "p5_coef": [1, 32, 3, 3],
                       "proto": [1, 32, 24, 24]}


def test_yolov5_cut_reads_the_anchors_from_the_graph(tmp_path):
    spec = cut_foreign_onnx(FIXTURES / "yolov5-det.onnx", tmp_path / "cut.onnx")
    assert spec.anchors == [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)],
                            [(116, 90), (156, 198), (373, 326)]]


# ---------------------------------------------------------------- the head of Ultralytics 8.0-8.3 files


def old_style_yolov8(path: Path, num_classes: int = 3, reg_max: int = 16, imgsz: int = 64, dynamic: bool = False) -> Path:
    """An ONNX file whose head has the graph form of Ultralytics 8.0-8.3 exports, written for this test: per
    level one Concat of the box (4 x reg_max) and class convolutions, a Concat over levels, a Split into box
    distribution and class logits, the DFL (softmax, integral Conv), distance-to-box around cell centres times
    the strides, the class sigmoid, one final Concat (1, 4 + C, N). Ultralytics-style metadata_props."""
    import onnx
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.ModuleList([nn.Conv2d(3, 8, 3, 8, 1), nn.Conv2d(8, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1)])
            self.box = nn.ModuleList([nn.Conv2d(8, 4 * reg_max, 1) for _ in range(3)])
            self.cls = nn.ModuleList([nn.Conv2d(8, num_classes, 1) for _ in range(3)])
            self.integral = nn.Conv2d(reg_max, 1, 1, bias=False)
            self.integral.weight.data[:] = torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1)
            centres, strides = [], []
            for stride in (8, 16, 32):
                cells = imgsz // stride
                y, x = torch.meshgrid(torch.arange(cells) + 0.5, torch.arange(cells) + 0.5, indexing="ij")
                centres.append(torch.stack([x.reshape(-1), y.reshape(-1)]))
                strides.append(torch.full((cells * cells,), float(stride)))
            self.register_buffer("centres", torch.cat(centres, 1)[None])
            self.register_buffer("strides", torch.cat(strides)[None])

        def forward(self, x):
            levels = []
            for feature, box, cls in zip(self.features, self.box, self.cls):
                x = torch.relu(feature(x))
                levels.append(torch.cat([box(x), cls(x)], 1))
            joined = torch.cat([level.view(1, 4 * reg_max + num_classes, -1) for level in levels], 2)
            dist, logits = joined.split((4 * reg_max, num_classes), 1)
            n = dist.shape[2]
            sides = self.integral(dist.view(1, 4, reg_max, n).transpose(2, 1).softmax(1)).view(1, 4, n)
            near, far = sides.chunk(2, 1)
            top_left, bottom_right = self.centres - near, self.centres + far
            boxes = torch.cat([(top_left + bottom_right) / 2, bottom_right - top_left], 1) * self.strides
            return torch.cat([boxes, logits.sigmoid()], 1)

    with torch.no_grad():
        torch.onnx.export(Head().eval(), (torch.rand(1, 3, imgsz, imgsz),), str(path), input_names=["images"],
                          output_names=["output0"], opset_version=17, dynamo=False,
                          dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}} if dynamic else None)
    model = onnx.load(str(path))
    names = {i: f"class{i}" for i in range(num_classes)}
    for key, value in {"names": str(names), "imgsz": str([imgsz, imgsz]), "stride": "32", "task": "detect"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def test_cut_of_the_split_head_of_older_ultralytics_files(images, tmp_path):
    source = old_style_yolov8(tmp_path / "old.onnx")
    cut = tmp_path / "cut.onnx"
    spec = cut_foreign_onnx(source, cut)
    assert spec.layout == "yolov8-split" and spec.reg_max == 16 and spec.names == ["class0", "class1", "class2"]
    for image in images[:2]:
        assert_same_candidates(source, cut, image)


def test_split_head_with_as_many_classes_as_box_channels_is_told_apart_by_concat_order(images, tmp_path):
    source = old_style_yolov8(tmp_path / "old64.onnx", num_classes=64)
    cut = tmp_path / "cut.onnx"
    spec = cut_foreign_onnx(source, cut)
    assert spec.reg_max == 16 and spec.num_classes == 64
    assert_same_candidates(source, cut, images[0])


def test_a_dynamic_shape_export_is_cut_at_its_metadata_size(images, tmp_path):
    source = old_style_yolov8(tmp_path / "dynamic.onnx", dynamic=True)
    cut = tmp_path / "cut.onnx"
    spec = cut_foreign_onnx(source, cut)
    assert spec.input_size_hw == (64, 64)
    assert_same_candidates(source, cut, images[0])


# ---------------------------------------------------------------- the command


@pytest.mark.parametrize("name", MODELS)
def test_every_fixture_exports_to_int8_that_runs(name, synth_data, images, tmp_path):
    result = subprocess.run([*EDGEDET, "export", str(FIXTURES / f"{name}.onnx"), "--format", "onnx-int8", "--calib",
                             str(synth_data / "train" / "images"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "agreement with source on 8 calibration images (in-sample)" in result.stdout
    int8 = Detector(str(tmp_path / f"{name}-int8.onnx"), threads=1, conf=0.05)
    assert sum(len(int8.predict(image)) for image in images) > 0


def test_a_file_without_metadata_exports_with_names_and_layout(synth_data, tmp_path):
    import onnx

    model = onnx.load(str(FIXTURES / "yolov8-det.onnx"))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n")
    result = subprocess.run([*EDGEDET, "export", str(bare), "--names", str(names), "--layout", "yolov8", "--imgsz",
                             "96", "--format", "onnx-int8", "--calib", str(synth_data / "train" / "images"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert load_backend(tmp_path / "out" / "bare-int8.onnx", threads=1).spec.names == NAMES


@pytest.fixture(scope="module")
def int8_seg(synth_data, tmp_path_factory):
    """`edgedet export yolov8-seg.onnx --format onnx,onnx-int8 --calib <unlabelled images>`: (result, out folder)."""
    out = tmp_path_factory.mktemp("foreign")
    result = subprocess.run([*EDGEDET, "export", str(FIXTURES / "yolov8-seg.onnx"), "--format", "onnx,onnx-int8",
                             "--calib", str(synth_data / "train" / "images"), "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    return result, out


def test_export_of_a_foreign_onnx_writes_int8_and_reports_agreement(int8_seg):
    result, out = int8_seg
    assert result.returncode == 0, result.stderr
    assert (out / "yolov8-seg.onnx").is_file() and (out / "yolov8-seg-int8.onnx").is_file()
    line = next(line for line in result.stdout.splitlines() if line.startswith("onnx-int8 ") and "agreement" in line)
    assert "precision" in line and "recall" in line and "mean IoU" in line
    spec = load_backend(out / "yolov8-seg-int8.onnx", threads=1).spec
    assert spec.layout == "yolov8-split" and spec.precision == "int8" and "per-channel" in spec.quantization


def test_int8_of_a_foreign_onnx_runs_and_evaluates_without_flags(int8_seg, synth_data, tmp_path):
    _, out = int8_seg
    model = out / "yolov8-seg-int8.onnx"
    run = subprocess.run([*EDGEDET, "run", "--model", str(model), "--source", str(synth_data / "val" / "images"),
                          "--json", str(tmp_path / "dets.jsonl"), "--conf", "0.05"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    frames = [json.loads(line) for line in (tmp_path / "dets.jsonl").read_text().splitlines()]
    detections = [d for frame in frames for d in frame["detections"]]
    assert len(frames) == 4 and detections
    assert {d["class_name"] for d in detections} <= set(NAMES) and all("segmentation" in d for d in detections)
    evaluation = subprocess.run([*EDGEDET, "eval", "--model", str(model), "--data", str(synth_data),
                                 "--json", str(tmp_path / "metrics.json")], capture_output=True, text=True, timeout=300)
    assert evaluation.returncode == 0, evaluation.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "bbox" in metrics and "segm" in metrics


def test_int8_stays_close_to_the_source(int8_seg, images):
    _, out = int8_seg
    source = [Detector(str(FIXTURES / "yolov8-seg.onnx"), threads=1).predict(image) for image in images]
    int8 = [Detector(str(out / "yolov8-seg-int8.onnx"), threads=1).predict(image) for image in images]
    measured = agreement(source, int8)
    assert measured.reference_boxes > 0
    assert measured.precision >= 0.6 and measured.recall >= 0.6 and measured.mean_iou >= 0.7


def test_min_agreement_rejects_an_int8_file_below_it(synth_data, tmp_path):
    result = subprocess.run([*EDGEDET, "export", str(FIXTURES / "yolov8-det.onnx"), "--format", "onnx-int8",
                             "--calib", str(synth_data / "train" / "images"), "--calib-size", "4",
                             "--min-agreement", "0.999", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "below --min-agreement 0.999" in result.stderr
    assert (tmp_path / "yolov8-det-int8.onnx.rejected").is_file() and not (tmp_path / "yolov8-det-int8.onnx").exists()


def test_max_map_drop_gate_compares_with_the_source_file(synth_data, tmp_path):
    result = subprocess.run([*EDGEDET, "export", str(FIXTURES / "yolov8-det.onnx"), "--format", "onnx-int8",
                             "--calib", str(synth_data), "--calib-size", "4", "--max-map-drop", "-50",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    table = result.stdout[result.stdout.index("artifact"):]
    assert table.splitlines()[1].startswith("source") and str(FIXTURES / "yolov8-det.onnx") in table
    assert "that --max-map-drop -50.0 asks for" in result.stderr or "more than --max-map-drop -50.0 allows" in result.stderr


def test_tflite_int8_from_a_foreign_onnx(synth_data, images, tmp_path):
    result = subprocess.run([*EDGEDET, "export", str(FIXTURES / "yolov8-det.onnx"), "--format", "tflite,tflite-int8",
                             "--calib", str(synth_data / "train" / "images"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    for image in images[:2]:
        assert_same_detections(FIXTURES / "yolov8-det.onnx", tmp_path / "yolov8-det.tflite", image)
    int8 = load_backend(tmp_path / "yolov8-det-int8.tflite", threads=1)
    assert int8.spec.layout == "yolov8-split" and int8.spec.input_dtype == "int8"
    source = [Detector(str(FIXTURES / "yolov8-det.onnx"), threads=1).predict(image) for image in images]
    got = [Detector(int8).predict(image) for image in images]
    assert agreement(source, got).recall >= 0.6


# ---------------------------------------------------------------- bad input


def test_a_file_that_is_not_onnx_names_itself(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x00not a protobuf at all\xff" * 10)
    result = subprocess.run([*EDGEDET, "export", str(bad), "--format", "onnx", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("edgedet export: error: ") and str(bad) in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def classifier_onnx(path: Path) -> Path:
    """A tiny image classifier: (1, 3, 32, 32) -> (1, 10) scores: not a detector."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)).eval()
    with torch.no_grad():
        torch.onnx.export(model, (torch.rand(1, 3, 32, 32),), str(path), input_names=["images"], opset_version=17,
                          dynamo=False)
    return path


def test_a_model_that_is_no_detector_is_refused_in_one_line(tmp_path):
    model = classifier_onnx(tmp_path / "classifier.onnx")
    result = subprocess.run([*EDGEDET, "export", str(model), "--format", "onnx", "--names", "a,b", "--layout",
                             "yolov8", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("edgedet export: error: ") and len(result.stderr.strip().splitlines()) == 1


def test_a_detector_whose_head_is_not_found_says_what_was_looked_for(tmp_path):
    """A (1, 4+C, N) prediction straight from a convolution: the layout fits, but there is no decode to cut."""
    import torch
    from torch import nn

    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 7, 3, 8, 1)

        def forward(self, x):
            return self.conv(x).flatten(2)

    path = tmp_path / "flat.onnx"
    with torch.no_grad():
        torch.onnx.export(Flat().eval(), (torch.rand(1, 3, 64, 64),), str(path), input_names=["images"],
                          opset_version=17, dynamo=False)
    result = subprocess.run([*EDGEDET, "export", str(path), "--format", "onnx", "--names", "a,b,c", "--layout",
                             "yolov8", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no YOLOv8 head found" in result.stderr and "--layout" in result.stderr


# ---------------------------------------------------------------- agreement


def test_agreement_counts_twins_of_the_same_class_only():
    from edgedet.device.detections import Detections

    reference = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([0.9, 0.8], np.float32),
                           np.array([0, 1], np.int32))
    test = Detections(np.array([[0, 0, 10, 11], [20, 20, 30, 30], [50, 50, 60, 60]], np.float32),
                      np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 2, 1], np.int32))
    measured = agreement([reference], [test])
    assert measured.recall == 0.5 and measured.precision == pytest.approx(1 / 3)
    assert measured.mean_iou == pytest.approx(100 / 110)
    empty = Detections.empty()
    assert agreement([empty], [empty]).precision == 1.0 and agreement([empty], [empty]).recall == 1.0
