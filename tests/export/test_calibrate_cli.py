"""`edgedet calibrate`: the sensitivity report and the keep-float int8 model."""
from __future__ import annotations

import json

import pytest

from edgedet.cli import main


def _float_convs(path):
    """Names of Conv nodes whose weight does not come from a DequantizeLinear (i.e. kept in float)."""
    import onnx

    graph = onnx.load(str(path)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in graph.node if n.op_type == "Conv" and n.input[1] not in dequantized}


def test_sensitivity_report_and_auto_keep_float(tiny_checkpoint, synth_data, tmp_path, capsys):
    out = tmp_path / "cal"
    code = main(["calibrate", str(tiny_checkpoint), "--calib", str(synth_data), "--calib-size", "4",
                 "--calib-method", "minmax", "--sensitivity", "--sensitivity-images", "2",
                 "--auto-keep-float", "2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "sensitivity.json").read_text())
    layers = report["layers"]
    assert len(layers) > 30 and [row["rank"] for row in layers] == list(range(1, len(layers) + 1))
    scores = [row["sqnr_db"] for row in layers if row["sqnr_db"] is not None]
    assert scores == sorted(scores)
    assert report["keep_float"] == [layers[0]["name"], layers[1]["name"]]
    assert layers[0]["name"] in printed and "SQNR dB" in printed
    model = out / "tiny-int8-keepfloat.onnx"
    assert _float_convs(model) == set(report["keep_float"])


def test_map_budget_keeps_nothing_float_when_int8_is_already_within_it(tiny_checkpoint, synth_data, tmp_path, capsys):
    out = tmp_path / "cal"
    code = main(["calibrate", str(tiny_checkpoint), "--calib", str(synth_data), "--calib-size", "4",
                 "--calib-method", "minmax", "--sensitivity-images", "1", "--map-budget", "50",
                 "--val-limit", "2", "--out", str(out)])
    assert code == 0
    assert "keep   0 float" in capsys.readouterr().out
    assert json.loads((out / "sensitivity.json").read_text())["keep_float"] == []
    assert _float_convs(out / "tiny-int8-keepfloat.onnx") == set()


@pytest.mark.parametrize("extra,message", [
    ([], "nothing to do"),
    (["--map-budget", "1"], "--map-budget needs validation data"),
    (["--map-budget", "-1"], "--map-budget must be a number of mAP points >= 0"),
    (["--sensitivity", "--sensitivity-images", "0"], "--sensitivity-images must be >= 1"),
])
def test_calibrate_bad_requests(extra, message, tiny_checkpoint, tmp_path, capsys):
    import cv2
    import numpy as np

    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((32, 32, 3), np.uint8))
    assert main(["calibrate", str(tiny_checkpoint), "--calib", str(folder), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_map_budget_without_an_evaluator_is_refused_before_any_work(tmp_path):
    from edgedet.export.calibrate import CalibrateConfig, calibrate_model

    config = CalibrateConfig(checkpoint="unused.pt", calib="unused", out=tmp_path / "out", map_budget=1.0)
    with pytest.raises(ValueError, match="--map-budget needs an evaluate callable"):
        calibrate_model(None, None, [], "nothing", config, evaluate=None)
    assert not (tmp_path / "out").exists()


def test_export_keeps_the_named_layers_float_and_refuses_unknown_names(tiny_checkpoint, synth_data, tmp_path, capsys):
    import onnx

    assert main(["export", str(tiny_checkpoint), "--format", "onnx", "--out", str(tmp_path / "fp32")]) == 0
    convs = [n.name for n in onnx.load(str(tmp_path / "fp32" / "tiny.onnx")).graph.node if n.op_type == "Conv"]
    common = ["export", str(tiny_checkpoint), "--format", "onnx-int8", "--calib", str(synth_data), "--calib-size", "2",
              "--calib-method", "minmax"]
    assert main([*common, "--keep-float", f"{convs[0]},{convs[3]}", "--out", str(tmp_path / "kept")]) == 0
    assert _float_convs(tmp_path / "kept" / "tiny-int8.onnx") == {convs[0], convs[3]}
    capsys.readouterr()
    assert main([*common, "--keep-float", f"{convs[0]},nosuchnode", "--out", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err
    assert "--keep-float: no node named nosuchnode in the ONNX graph" in err and "Traceback" not in err
    assert not (tmp_path / "typo" / "tiny-int8.onnx").exists()
    assert main(["export", str(tiny_checkpoint), "--format", "onnx", "--keep-float", convs[0],
                 "--out", str(tmp_path / "x")]) == 2
    assert "--keep-float applies to --format onnx-int8" in capsys.readouterr().err


def test_a_map_budget_no_model_meets_fails_but_writes_its_best(tiny_checkpoint, synth_data, tmp_path, capsys,
                                                              monkeypatch):
    scores = iter([30.0, 10.0, 12.0, 15.0, 20.0, 24.0, 25.0, 26.0])  # fp32, then never within 0.5 points of it

    def evaluate_stub(data, limit=None, threads=None):
        return lambda model: {"map": next(scores, 27.0)}

    monkeypatch.setattr("edgedet.calibrate_cli.evaluator", evaluate_stub)
    out = tmp_path / "cal"
    code = main(["calibrate", str(tiny_checkpoint), "--calib", str(synth_data), "--calib-size", "2",
                 "--calib-method", "minmax", "--sensitivity-images", "1", "--map-budget", "0.5",
                 "--out", str(out)])
    assert code == 1 and "not met even with every layer float" in capsys.readouterr().err
    report = json.loads((out / "sensitivity.json").read_text())
    assert report["map_budget_met"] is False and len(report["keep_float"]) == len(report["layers"])
    assert (out / "tiny-int8-keepfloat.onnx").is_file()
