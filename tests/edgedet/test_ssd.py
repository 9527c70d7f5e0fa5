"""SSD (issue 16): default boxes, matching, hard negative mining, the loss against the device decode's order, a few
training steps, and the whole path through the CLI: train, export (ONNX and TFLite, fp32 and int8), run, eval and
bench on the exports, with the exported graphs decoding to the PyTorch model's detections."""
import json

import numpy as np
import pytest
import torch

from edgedet.cli import main as cli_main
from edgedet.device.box_coder import decode_deltas
from edgedet.device.layouts import ssd as ssd_layout
from edgedet.loss import Targets
from edgedet.models.family import model_spec
from edgedet.models.ssd import SSD_STRIDES, SSDConfig, build_ssd, default_box_sizes, split_candidates
from edgedet.ssd_loss import SSDLoss, hard_negatives, match_default_boxes
from tests.conftest import fit_steps, train_tiny, write_tiny_shapes

torch.set_num_threads(1)
NAMES = ["circle", "square", "triangle", "star", "hexagon"]


def test_default_box_sizes_follow_the_ssd_recipe_on_a_log_scale():
    sizes = default_box_sizes(320, min_scale=0.05, max_scale=0.55)
    assert len(sizes) == len(SSD_STRIDES) and all(len(level) == 4 for level in sizes)
    scales = [level[0][0] for level in sizes]  # ratio-1 box of scale s_k
    assert scales[0] == pytest.approx(16.0) and scales[-1] == pytest.approx(176.0)
    assert np.allclose(np.diff(np.log(scales)), np.log(scales[1] / scales[0]), atol=1e-3)  # geometric spacing
    w, h = sizes[0][1]
    assert w / h == pytest.approx(2.0, rel=1e-3) and w * h == pytest.approx(16.0 ** 2, rel=1e-3)
    assert sizes[0][3][0] == pytest.approx(np.sqrt(16.0 * sizes[1][0][0]), rel=1e-3)  # s'_k = sqrt(s_k s_k+1)


def test_default_boxes_are_centred_on_cells_in_candidate_order():
    boxes = ssd_layout.default_boxes_xyxy((128, 64), (32, 64), [[(10.0, 20.0), (4.0, 4.0)], [(50.0, 50.0), (8, 8)]])
    assert boxes.shape == ((4 * 2 + 2 * 1) * 2, 4)
    # level 0 (4 rows x 2 columns), box k=0, row 1, column 1 -> index 0*8 + 1*2 + 1 = 3: centre (48, 48)
    np.testing.assert_allclose(boxes[3], [43.0, 38.0, 53.0, 58.0])
    np.testing.assert_allclose(boxes[8 + 0], [14.0, 14.0, 18.0, 18.0])  # box k=1, row 0, column 0: centre (16, 16)
    np.testing.assert_allclose(boxes[16], [7.0, 7.0, 57.0, 57.0])  # level 1, box 0, row 0: centre (32, 32)


def test_matching_gives_every_ground_truth_its_best_default_box():
    defaults = torch.tensor([[0.0, 0, 10, 10], [0, 0, 20, 20], [50, 50, 70, 70], [100, 100, 140, 140]])
    gt = torch.tensor([[0.0, 0, 19, 19], [98.0, 98, 102, 102]])  # the second overlaps nothing at IoU >= 0.5
    matched = match_default_boxes(defaults, gt, 0.5)
    assert matched.tolist() == [-1, 0, -1, 1]
    assert match_default_boxes(defaults, gt[:0], 0.5).tolist() == [-1] * 4


def test_hard_negative_mining_keeps_the_highest_losses_among_negatives():
    ce = torch.tensor([0.1, 5.0, 0.3, 0.2, 4.0, 0.9])
    positive = torch.tensor([False, True, False, False, False, False])
    assert hard_negatives(ce, positive, 2).tolist() == [False, False, False, False, True, True]
    assert hard_negatives(ce, positive, 10).sum() == 5


def test_the_loss_reads_candidates_in_the_device_decode_order():
    torch.manual_seed(0)
    config = SSDConfig(num_classes=5, anchors=default_box_sizes(128), input_size_hw=(128, 128))
    model = build_ssd(config).eval()
    with torch.no_grad():
        outputs = model(torch.rand(1, 3, 128, 128))
    k = config.num_anchors
    loc = torch.cat([split_candidates(o, k) for o in outputs[0::2]], dim=1)[0].numpy()
    conf = torch.cat([split_candidates(o, k) for o in outputs[1::2]], dim=1)[0].softmax(-1).numpy()
    defaults = SSDLoss(config).defaults_xyxy.numpy()
    spec = model_spec(config, NAMES, [])
    candidates = ssd_layout.decode({n: o.numpy() for n, o in zip(model.output_names, outputs)}, spec)
    np.testing.assert_allclose(candidates.xyxy, decode_deltas(loc, defaults, ssd_layout.BOX_WEIGHTS), atol=1e-4)
    np.testing.assert_allclose(candidates.scores, conf[:, 1:].max(axis=1), atol=1e-6)
    np.testing.assert_array_equal(candidates.class_ids, conf[:, 1:].argmax(axis=1))
    nhwc = {n: np.ascontiguousarray(o.numpy().transpose(0, 2, 3, 1)) for n, o in zip(model.output_names, outputs)}
    from dataclasses import replace

    again = ssd_layout.decode(nhwc, replace(spec, output_layout="NHWC"), min_score=0.001)
    kept = candidates.scores > 0.001
    np.testing.assert_allclose(again.xyxy, candidates.xyxy[kept], atol=1e-5)


def test_a_few_steps_lower_the_ssd_loss(tiny_ssd_data):
    from edgedet.data import load_dataset
    from edgedet.train_data import TrainDataset, collate

    dataset = load_dataset(tiny_ssd_data, split="train")
    images, targets, _ = collate([TrainDataset(dataset.samples, (64, 64), with_masks=False)[i] for i in range(8)])
    torch.manual_seed(0)
    config = SSDConfig(num_classes=5, anchors=default_box_sizes(64, 0.15, 0.8), input_size_hw=(64, 64))
    losses, parts = fit_steps(build_ssd(config), SSDLoss(config), images, targets)
    assert parts["loc"] > 0 and parts["conf"] > 0
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])


def test_an_image_without_objects_still_trains_its_background():
    config = SSDConfig(num_classes=2, anchors=default_box_sizes(64), input_size_hw=(64, 64))
    model = build_ssd(config)
    loss, parts = SSDLoss(config)(model(torch.rand(2, 3, 64, 64)), Targets(boxes=torch.zeros((0, 6))))
    loss.backward()
    assert parts["loc"] == 0.0 and parts["conf"] > 0


@pytest.fixture(scope="module")
def tiny_ssd_data(tmp_path_factory):
    """A 64x64 synthetic data set: 24 train and 4 val images."""
    return write_tiny_shapes(tmp_path_factory.mktemp("ssd64"), 64, train=24, val=4)


@pytest.fixture(scope="module")
def trained_ssd(tiny_ssd_data, tmp_path_factory):
    """best.pt of `edgedet train --model ssd-n` for 2 epochs at 64x64."""
    return train_tiny(tiny_ssd_data, "ssd-n", tmp_path_factory.mktemp("ssd-run"))


def test_train_verb_writes_an_ssd_checkpoint(trained_ssd):
    from edgedet.models import load_checkpoint

    lines = [json.loads(line) for line in (trained_ssd / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2] and "box/AP50" in lines[0] and "mask/AP50" not in lines[0]
    raw = torch.load(trained_ssd / "best.pt", weights_only=True)
    assert raw["family"] == "ssd" and raw["strides"] == list(SSD_STRIDES) and raw["semantic_names"] == []
    model, spec = load_checkpoint(trained_ssd / "best.pt")
    assert spec.layout == "ssd" and spec.task == "detect" and spec.names == NAMES
    assert model.output_names == tuple(ssd_layout.output_shapes(spec, "NCHW"))


@pytest.fixture(scope="module")
def exported_ssd(trained_ssd, tiny_ssd_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ssd-export")
    code = cli_main(["export", str(trained_ssd / "best.pt"), "--format", "onnx,onnx-int8,tflite,tflite-int8",
                     "--calib", str(tiny_ssd_data), "--calib-size", "8", "--out", str(out)])
    assert code == 0
    return {fmt: out / name for fmt, name in (("onnx", "best.onnx"), ("onnx-int8", "best-int8.onnx"),
                                              ("tflite", "best.tflite"), ("tflite-int8", "best-int8.tflite"))}


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_fp32_exports_decode_to_the_pytorch_detections(fmt, exported_ssd, trained_ssd, tiny_ssd_data):
    """The PyTorch model's 10 best detections per image each have a same-class twin at IoU >= 0.99 among the
    export's 100 best (a barely trained model scores low, hence the low threshold; the margin of 90 places keeps
    near-ties at the cut out of the comparison)."""
    from edgedet.device import Detector
    from edgedet.export.agreement import best_same_class_iou
    from edgedet.models.loading import torch_backend

    images = sorted((tiny_ssd_data / "val" / "images").glob("*.jpg"))
    reference = Detector(torch_backend(trained_ssd / "best.pt", threads=1), conf=0.001, max_det=10)
    exported = Detector(exported_ssd[fmt], conf=0.001, max_det=100, threads=1)
    compared = 0
    for image in images:
        ours, theirs = reference(str(image)), exported(str(image))
        assert best_same_class_iou(ours, theirs).min(initial=1.0) >= 0.99
        compared += len(ours)
    assert compared > 0


@pytest.mark.parametrize("fmt", ["onnx-int8", "tflite-int8"])
def test_run_and_eval_take_the_int8_exports(fmt, exported_ssd, tiny_ssd_data, tmp_path, capsys):
    out = tmp_path / "dets.jsonl"
    code = cli_main(["run", "--model", str(exported_ssd[fmt]), "--source", str(tiny_ssd_data / "val" / "images"),
                     "--json", str(out), "--conf", "0.05"])
    assert code == 0
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(frames) == 4
    report = tmp_path / "eval.json"
    assert cli_main(["eval", "--model", str(exported_ssd[fmt]), "--data", str(tiny_ssd_data), "--json",
                     str(report)]) == 0
    assert 0.0 <= json.loads(report.read_text())["bbox"]["AP50"] <= 1.0
    capsys.readouterr()


def test_bench_measures_an_ssd_export(exported_ssd, tiny_ssd_data, tmp_path, capsys):
    out = tmp_path / "bench"
    code = cli_main(["bench", "--models", str(exported_ssd["onnx"]), "--data", str(tiny_ssd_data), "--out", str(out),
                     "--warmup", "1", "--repeats", "3"])
    assert code == 0
    (record,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert record["model"]["layout"] == "ssd" and "error" not in record
    assert record["latency_ms"]["inference"]["p50"] > 0 and record["accuracy"]["mask_ap"] is None
    capsys.readouterr()


def test_ssd_input_must_be_a_multiple_of_64(capsys, tmp_path):
    assert cli_main(["train", "--model", "ssd-n", "--imgsz", "96", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "multiple of 64" in err and "Traceback" not in err


def test_fine_tuning_an_ssd_reinitialises_only_its_class_convolutions(trained_ssd, tiny_ssd_data, tmp_path, capsys):
    """--weights on an SSD checkpoint with other classes: the conf convolutions start afresh, the rest is loaded."""
    variant = write_tiny_shapes(tmp_path / "variant", 64, train=8, val=2, max_things=3, seed=1,
                                things=("triangle", "star"))
    code = cli_main(["train", "--data", str(variant), "--weights", str(trained_ssd / "best.pt"), "--imgsz", "64",
                     "--epochs", "1", "--batch", "4", "--max-steps", "1", "--workers", "0", "--threads", "1",
                     "--freeze", "backbone", "--out", str(tmp_path / "tuned")])
    assert code == 0
    assert "class scores re-initialised for 2 classes" in capsys.readouterr().err
    tuned = torch.load(tmp_path / "tuned" / "best.pt", weights_only=True)
    source = torch.load(trained_ssd / "best.pt", weights_only=True)
    assert tuned["family"] == "ssd" and tuned["names"] == ["triangle", "star"]
    assert tuned["model"]["conf_heads.0.weight"].shape[0] == 4 * 3
    key = "backbone.stem.0.weight"
    assert torch.equal(tuned["model"][key], source["model"][key])  # frozen and loaded


def test_shipped_ssd_is_a_name_wherever_shipped_is(tiny_ssd_data, tmp_path, capsys):
    from edgedet.models import SHIPPED_CHECKPOINTS
    from edgedet.models.loading import load_for_export, resolve_checkpoint

    assert resolve_checkpoint("shipped:ssd") == SHIPPED_CHECKPOINTS["shipped:ssd"]
    model, spec = load_for_export("shipped:ssd")
    assert spec.layout == "ssd" and type(model).__name__ == "SSD" and spec.input_size_hw == (320, 320)
    report = tmp_path / "eval.json"
    assert cli_main(["eval", "--model", "shipped:ssd", "--data", str(tiny_ssd_data), "--limit", "2",
                     "--json", str(report)]) == 0
    assert "bbox" in json.loads(report.read_text())
    assert cli_main(["export", "shipped:nope", "--format", "onnx", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown shipped model 'shipped:nope'" in err and "Traceback" not in err
