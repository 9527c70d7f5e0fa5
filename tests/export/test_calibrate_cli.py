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
