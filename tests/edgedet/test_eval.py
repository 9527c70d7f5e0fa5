"""`edgedet eval`: --gt/--pred against pycocotools, bad input as one-line errors, --model over a data set."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest

from edgedet.device.spec import HEAD_PARTS
from edgedet.cli import main
from edgedet.metrics import STAT_KEYS
from tests.device.test_decode import split_level

GT = {
    "images": [{"id": 4, "height": 100, "width": 120}, {"id": 9, "height": 100, "width": 120}],
    "categories": [{"id": 2, "name": "cat"}, {"id": 6, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 4, "category_id": 2, "bbox": [10, 10, 30, 40], "area": 1200, "iscrowd": 0},
        {"id": 2, "image_id": 4, "category_id": 6, "bbox": [50, 20, 60, 70], "area": 4200, "iscrowd": 0},
        {"id": 3, "image_id": 9, "category_id": 2, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 4, "image_id": 9, "category_id": 6, "bbox": [40, 40, 70, 50], "area": 3500, "iscrowd": 1},
    ],
}
PRED = [
    {"image_id": 4, "category_id": 2, "bbox": [12, 11, 30, 38], "score": 0.9},
    {"image_id": 4, "category_id": 6, "bbox": [52, 25, 55, 60], "score": 0.8},
    {"image_id": 4, "category_id": 6, "bbox": [0, 0, 20, 20], "score": 0.85},
    {"image_id": 9, "category_id": 2, "bbox": [6, 4, 19, 22], "score": 0.7},
    {"image_id": 9, "category_id": 6, "bbox": [45, 45, 30, 30], "score": 0.6},
]


def _write(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


class _Terminal(io.StringIO):
    """A captured stderr that says it is a terminal: the progress bar is drawn only on one."""

    def isatty(self):
        return True


def _run(argv, tty=False):
    out, err = io.StringIO(), (_Terminal() if tty else io.StringIO())
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _pycocotools_stats(gt, results, iou_type="bbox"):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_gt_pred_prints_the_summary_and_writes_the_12_keys(tmp_path):
    pytest.importorskip("pycocotools")
    out_json = tmp_path / "out.json"
    code, out, err = _run(["eval", "--gt", _write(tmp_path / "gt.json", GT), "--pred", _write(tmp_path / "p.json", PRED),
                           "--json", str(out_json)])
    assert code == 0, err
    lines = out.splitlines()
    assert sum(line.startswith(" Average Precision  (AP) @[ IoU=") for line in lines) == 6
    assert sum(line.startswith(" Average Recall     (AR) @[ IoU=") for line in lines) == 6
    assert any(line.startswith("VOC mAP@0.5: ") for line in lines)
    stats = json.loads(out_json.read_text())
    assert list(stats) == list(STAT_KEYS)
    np.testing.assert_allclose([stats[k] for k in STAT_KEYS], _pycocotools_stats(GT, PRED), atol=1e-12)


def test_gt_pred_segm(tmp_path):
    pytest.importorskip("pycocotools")
    from edgedet.device.rle import rle_encode

    gt = copy.deepcopy(GT)
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h * 0.7]]
    pred = []
    for r in PRED:
        m = np.zeros((100, 120), bool)
        x, y, w, h = (int(v) for v in r["bbox"])
        m[y:y + h, x:x + w] = True
        pred.append({"image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"],
                     "segmentation": rle_encode(m)})
    out_json = tmp_path / "segm.json"
    code, _, err = _run(["eval", "--gt", _write(tmp_path / "gt.json", gt), "--pred", _write(tmp_path / "p.json", pred),
                         "--iou-type", "segm", "--json", str(out_json)])
    assert code == 0, err
    stats = json.loads(out_json.read_text())
    np.testing.assert_allclose([stats[k] for k in STAT_KEYS], _pycocotools_stats(gt, pred, "segm"), atol=1e-12)


@pytest.mark.parametrize("gt, pred, extra, message", [
    (GT, [dict(PRED[0], image_id=77)], [], "image id(s) not in the ground truth"),
    (GT, "[{not json", [], "not valid JSON"),
    ("{\"images\": [", PRED, [], "not valid JSON"),
    (GT, PRED, ["--iou-type", "keypoints"], "unknown iou type 'keypoints'"),
    (GT, {"image_id": 4}, [], "must be a JSON list"),
    ({"images": [], "categories": []}, PRED, [], "no images"),
    (GT, PRED, ["--json", "{tmp}"], "--json {tmp} is a folder: give a file name"),  # before the evaluation
    (GT, PRED, ["--json", "{tmp}/file/m.json"], "--json: cannot create folder {tmp}/file"),
    (GT, PRED, ["--json", "/proc/edgedet.json"], "--json: cannot write in folder /proc"),
    (GT, PRED, ["--json", "{tmp}/gt.json"], "--json {tmp}/gt.json is the ground truth"),  # never an input replaced
    (GT, PRED, ["--json", "{tmp}/p.json"], "--json {tmp}/p.json is the results file"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, gt, pred, extra, message):
    (tmp_path / "file").write_text("a file, not a folder")
    gt_path = _write(tmp_path / "gt.json", gt)
    gt_text = Path(gt_path).read_text()
    code, out, err = _run(["eval", "--gt", gt_path, "--pred", _write(tmp_path / "p.json", pred),
                           *[a.format(tmp=tmp_path) for a in extra]])
    assert code == 2
    assert err.startswith("edgedet eval: error: ") and message.format(tmp=tmp_path) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*.tmp")) and Path(gt_path).read_text() == gt_text


def test_missing_files_and_missing_flags(tmp_path):
    code, _, err = _run(["eval", "--gt", str(tmp_path / "nope.json"), "--pred", str(tmp_path / "p.json")])
    assert code == 2 and "does not exist" in err
    code, _, err = _run(["eval"])
    assert code == 2 and "--gt GT.json --pred PRED.json" in err
    code, _, err = _run(["eval", "--model", "m.onnx"])
    assert code == 2 and "--model and --data go together" in err


def test_eval_model_checkpoint_over_synth_data(tmp_path, tiny_checkpoint, synth_data):
    """The real path: .pt -> TorchBackend -> Detector -> COCO/semantic/panoptic metrics + latency + provenance."""
    pytest.importorskip("pycocotools")
    out_json, pred_json = tmp_path / "report.json", tmp_path / "pred.json"
    code, out, err = _run(["eval", "--model", str(tiny_checkpoint), "--data", str(synth_data), "--limit", "2",
                           "--json", str(out_json), "--save-pred", str(pred_json)], tty=True)
    assert code == 0, err
    assert "eval      2/2" in err  # progress bar on stderr
    report = json.loads(out_json.read_text())
    assert set(STAT_KEYS) <= set(report["bbox"]) and set(STAT_KEYS) <= set(report["segm"])
    assert 0 <= report["semantic"]["mIoU"] <= 1 and 0 <= report["semantic"]["pixel_accuracy"] <= 1
    assert {"PQ", "SQ", "RQ", "things", "stuff"} <= set(report["panoptic"])
    for stage in ("preprocess", "inference", "decode", "nms", "end_to_end"):
        assert report["latency_ms"][stage]["p50"] <= report["latency_ms"][stage]["p99"]
    prov = report["provenance"]
    assert prov["format"] == "torch" and prov["precision"] == "fp32" and prov["input_size_hw"] == [160, 160]
    assert report["images"] == 2
    # the saved predictions, scored by pycocotools against the same ground truth, give the same box stats
    from edgedet.data import Dataset, coco_gt_dict, load_dataset

    data = load_dataset(synth_data)
    gt = coco_gt_dict(Dataset(data.names, data.semantic_names, data.samples[:2], data.root, data.category_ids))
    preds = json.loads(pred_json.read_text())
    assert preds and all("segmentation" in p for p in preds)
    np.testing.assert_allclose([report["bbox"][k] for k in STAT_KEYS], _pycocotools_stats(gt, preds), atol=1e-12)
    np.testing.assert_allclose([report["segm"][k] for k in STAT_KEYS], _pycocotools_stats(gt, preds, "segm"), atol=1e-12)
    assert "COCO bbox:" in out and "latency ms" in out


def test_evaluate_model_takes_a_backend_object_and_an_image_limit(tiny_checkpoint, synth_data):
    from edgedet.evaluate import evaluate_model
    from edgedet.models.loading import torch_backend

    backend = torch_backend(tiny_checkpoint, threads=1)
    report = evaluate_model(backend, synth_data, limit=1, progress=False)
    assert report["images"] == 1 and report["provenance"]["format"] == "torch"
    assert report["latency_ms"]["end_to_end"]["count"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "onnx-int8", "tflite", "tflite-int8"])
def test_eval_model_every_exported_format(tmp_path, exported_models, synth_data, fmt):
    out_json = tmp_path / "r.json"
    code, _, err = _run(["eval", "--model", str(exported_models[fmt]), "--data", str(synth_data), "--limit", "2",
                         "--no-progress", "--json", str(out_json)])
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert set(STAT_KEYS) <= set(report["bbox"]) and "segm" in report and "semantic" in report
    assert report["provenance"]["precision"] == ("int8" if fmt.endswith("int8") else "fp32")


class OracleBackend:
    """Raw edgedet-head outputs that decode to the ground truth of each synthetic image (keyed by its input tensor).

    Exercises the whole device path (preprocess, decode, NMS, masks, semantic upsampling, un-letterbox) with
    predictions good enough for the metrics to be far from 0.
    """

    name = "oracle"

    def __init__(self, spec, samples):
        from edgedet.device.preprocessing import preprocess

        self.spec = spec
        self.outputs = {}
        for sample in samples:
            x, _ = preprocess(sample.load_image(), spec)
            self.outputs[x.tobytes()] = self._raw_outputs(sample)

    def run(self, x):
        return self.outputs[np.ascontiguousarray(x).tobytes()]

    def _raw_outputs(self, sample):
        spec = self.spec
        h, w = spec.input_size_hw
        k, c, m = spec.num_anchors, spec.num_classes, spec.num_mask_coefs
        levels = [np.full((k, 5 + c + m, h // s, w // s), -20.0, np.float32) for s in spec.strides]
        protos = np.full((m, h // 4, w // 4), -1.0, np.float32)
        protos[m - 1] = 1.0  # last prototype: the whole box
        masks = sample.instance_masks()
        for n, (box, cls) in enumerate(zip(sample.xyxy, sample.class_ids)):
            coefs = np.zeros(m, np.float32)
            if n < m - 1:
                protos[n][masks[n][::4, ::4]] = 1.0
                coefs[n] = 1.0
            else:
                coefs[m - 1] = 1.0
            self._place(levels, box, int(cls), coefs)
        out = {}
        for level_name, lv in zip(spec.level_outputs, levels):  # (K, obj+box+cls+mask, h, w) -> the head's parts
            parts = split_level(lv.reshape(-1, *lv.shape[2:]), k, c, m)
            out.update({f"{level_name}_{part}": array[None] for part, array in zip(HEAD_PARTS, parts)
                        if array is not None})
        semantic = sample.semantic_map()[4::8, 4::8]
        logits = np.zeros((1, len(spec.semantic_names), h // 8, w // 8), np.float32)
        for label in range(len(spec.semantic_names)):
            logits[0, label][semantic == label] = 10.0
        out[spec.seg_output] = logits
        out[spec.proto_output] = protos[None]
        return out

    def _place(self, levels, box, cls, coefs):
        """Set one anchor's logits so the edgedet decode gives exactly `box` (x1, y1, x2, y2) and class `cls`."""
        logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
        cx, cy, bw, bh = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]
        for level, (stride, anchors) in enumerate(zip(self.spec.strides, self.spec.anchors)):
            for a, (aw, ah) in enumerate(anchors):
                sw, sh = np.sqrt(bw / aw) / 2, np.sqrt(bh / ah) / 2
                if not (0.05 < sw < 0.95 and 0.05 < sh < 0.95):
                    continue
                j, i = int(cx // stride), int(cy // stride)
                values = levels[level][a, :, i, j]
                values[0] = 10.0
                values[1] = logit(((cx / stride - j) + 0.5) / 2)
                values[2] = logit(((cy / stride - i) + 0.5) / 2)
                values[3], values[4] = logit(sw), logit(sh)
                values[5 + cls] = 10.0
                values[5 + len(self.spec.names):] = coefs
                return


def test_eval_model_with_an_oracle_backend_scores_high_and_agrees_with_pycocotools(tiny_checkpoint, synth_data,
                                                                                   tmp_path):
    pytest.importorskip("pycocotools")
    from edgedet.data import coco_gt_dict, load_dataset
    from edgedet.evaluate import evaluate_model
    from edgedet.models.loading import torch_backend

    data = load_dataset(synth_data)
    spec = torch_backend(tiny_checkpoint, threads=1).spec
    predictions = tmp_path / "pred.json"
    report = evaluate_model(OracleBackend(spec, data.samples), data, progress=False, save_pred=predictions)
    assert report["bbox"]["AP50"] > 0.9 and report["segm"]["AP50"] > 0.5
    gt = coco_gt_dict(data)
    results = json.loads(predictions.read_text())
    for iou_type in ("bbox", "segm"):
        np.testing.assert_allclose([report[iou_type][k] for k in STAT_KEYS], _pycocotools_stats(gt, results, iou_type),
                                   atol=1e-12, err_msg=iou_type)
    assert report["semantic"]["mIoU"] > 0.5 and report["semantic"]["pixel_accuracy"] > 0.8
    assert report["panoptic"]["PQ"] > 0.3
    assert report["provenance"]["format"] == "oracle"


class _FailingOracle(OracleBackend):
    """Fails on the `fail_at`-th call with `error` (to test per-image errors and Ctrl-C)."""

    def __init__(self, spec, samples, fail_at, error):
        super().__init__(spec, samples)
        self.calls, self.fail_at, self.error = 0, fail_at, error

    def run(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error
        return super().run(x)


def test_a_failing_image_is_logged_and_skipped(tiny_checkpoint, synth_data, capsys):
    from edgedet.device.errors import EdgedetError
    from edgedet.data import load_dataset
    from edgedet.evaluate import evaluate_model
    from edgedet.models.loading import torch_backend

    data = load_dataset(synth_data)
    spec = torch_backend(tiny_checkpoint, threads=1).spec
    backend = _FailingOracle(spec, data.samples, fail_at=2, error=EdgedetError("corrupt frame"))
    report = evaluate_model(backend, data, progress=False)
    assert len(report["errors"]) == 1 and "corrupt frame" in report["errors"][0]
    assert "skipped: corrupt frame" in capsys.readouterr().err
    assert 0 < report["bbox"]["AR100"] < 1  # the missing image's objects are missed, the others found


def test_ctrl_c_keeps_the_predictions_so_far(tmp_path, tiny_checkpoint, synth_data):
    from edgedet.data import load_dataset
    from edgedet.evaluate import evaluate_model
    from edgedet.models.loading import torch_backend

    data = load_dataset(synth_data)
    spec = torch_backend(tiny_checkpoint, threads=1).spec
    backend = _FailingOracle(spec, data.samples, fail_at=3, error=KeyboardInterrupt())
    pred = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(backend, data, progress=False, save_pred=pred)
    saved = json.loads(pred.read_text())
    assert {r["image_id"] for r in saved} == {s.image_id for s in data.samples[:2]}


def test_a_model_failing_on_every_image_is_an_edgedet_error(tiny_checkpoint, synth_data):
    from edgedet.device.errors import EdgedetError
    from edgedet.evaluate import evaluate_model

    class Broken:
        name = "broken"

        def __init__(self, spec):
            self.spec = spec

        def run(self, x):
            raise RuntimeError("bad graph")

    from edgedet.models.loading import torch_backend

    with pytest.raises(EdgedetError, match="RuntimeError: bad graph"):
        evaluate_model(Broken(torch_backend(tiny_checkpoint, threads=1).spec), synth_data, progress=False)


def test_boxes_only_results_of_detections_with_spanned_masks():
    # a model whose masks the plan does not score (its spec's layout has none): boxes only, the spans going with
    # the masks they describe
    from edgedet.device.detections import Detections
    from edgedet.evaluate import _EvalPlan, _coco_results

    masks = np.zeros((1, 8, 8), bool)
    masks[0, 2:4, 2:4] = True
    detections = Detections(np.array([[2, 2, 4, 4]], np.float32), [0.9], [0], masks, mask_spans=[[2, 4, 2, 4]])
    plan = _EvalPlan(category_of_class=[7], with_masks=False, semantic_lut=None, thing_label_of_class=None,
                     stuff_labels=[], semantic_names=[])
    (result,) = _coco_results(detections, 3, plan)
    assert result["category_id"] == 7 and result["bbox"] == [2.0, 2.0, 2.0, 2.0] and "segmentation" not in result
    assert "segmentation" in _coco_results(detections, 3, dataclasses.replace(plan, with_masks=True))[0]


def test_predictions_never_replace_the_data_set_or_the_model(tmp_path, synth_data, tiny_checkpoint, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    annotations = sorted(data.rglob("*.json"))[0]
    before = annotations.read_bytes()
    for extra, message in ((["--save-pred", str(annotations)], "is a file of the data set"),
                           (["--json", str(tiny_checkpoint)], "is the model"),
                           (["--json", str(tmp_path / "p.json"), "--save-pred", str(tmp_path / "p.json")],
                            "--json and --save-pred name the same file")):
        code, _, err = _run(["eval", "--model", str(tiny_checkpoint), "--data", str(data), "--limit", "1", *extra])
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert annotations.read_bytes() == before
