"""`edgedet export` end to end: the accuracy table, the gate, and bad input leaving nothing behind."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from edgedet.cli import main
from edgedet.export_inputs import metrics_from_report
from edgedet.export.accuracy import ArtifactAccuracy, format_table, gate_failures
from edgedet.export.exporter import sized_stem
from tests.conftest import TINY_IMGSZ


def _row(name, map_value):
    return ArtifactAccuracy(name, f"{name}.file", 1.0, {"map": map_value, "map50": 50.0, "mask_ap": float("nan"), "miou": 40.0})


@pytest.mark.parametrize("artifact_map,limit,message", [
    (39.5, 1.0, None),  # lost 0.5
    (38.0, 1.0, "lost 2.00 mAP@.5:.95 points, more than --max-map-drop 1.0 allows"),
    (41.0, 0.0, None),  # better than torch
    (40.5, -1.0, "gained only 0.50 mAP@.5:.95 points, less than the 1 that --max-map-drop -1.0 asks for"),  # a gain of 1 asked
    (float("nan"), 1.0, "has no mAP@.5:.95 to hold to --max-map-drop 1.0"),  # no figure: refuse
])
def test_gate_compares_map_drop_with_the_limit(artifact_map, limit, message):
    failures = gate_failures([_row("onnx-int8", artifact_map)], _row("torch", 40.0), limit)
    assert bool(failures) == (message is not None)
    if message:
        assert failures[0] == f"onnx-int8 (onnx-int8.file) {message}"


def test_metrics_read_from_an_evaluate_report_in_points():
    report = {"bbox": {"AP": 0.5, "AP50": 0.75}, "semantic": {"mIoU": -1.0}}
    metrics = metrics_from_report(report)
    assert metrics["map"] == 50.0 and metrics["map50"] == 75.0
    assert math.isnan(metrics["mask_ap"]) and math.isnan(metrics["miou"])


def test_table_lists_reference_and_artifacts_with_delta():
    table = format_table([_row("tflite-int8", 39.25)], _row("torch", 40.0))
    lines = table.splitlines()
    assert lines[0].split()[:7] == ["artifact", "size", "MB", "mAP", "mAP50", "maskAP", "mIoU"]
    assert lines[1].startswith("torch") and lines[2].startswith("tflite-int8")
    assert "-0.75" in lines[2] and "n/a" in lines[2]


def test_export_writes_formats_prints_table_and_gate_rejects(tiny_checkpoint, synth_data, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["export", str(tiny_checkpoint), "--format", "onnx,onnx-int8", "--calib", str(synth_data),
                 "--calib-size", "4", "--calib-method", "minmax", "--out", str(out), "--max-map-drop", "-5"])
    captured = capsys.readouterr()
    assert code == 1  # a -5 limit demands a 5-point gain: every artifact fails
    assert "artifact" in captured.out and "onnx-int8" in captured.out and "torch" in captured.out
    assert "onnx-int8:" in captured.out and ("S8S8" in captured.out or "U8S8" in captured.out)
    assert "error: onnx-int8" in captured.err and "error: onnx " in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["tiny-int8.onnx.rejected", "tiny.onnx.rejected"]


@pytest.mark.parametrize("stem, size_hw, own_hw, expected", [
    ("edgedet-n-320", (640, 640), (320, 320), "edgedet-n-640"),
    ("edgedet-n-320", (480, 640), (320, 320), "edgedet-n-480x640"),
    ("m-256x320", (320, 320), (256, 320), "m-320"), ("best", (640, 640), (320, 320), "best-640"),
    ("edgedet-n-320", None, (320, 320), "edgedet-n-320"), ("edgedet-n-320", (320, 320), (320, 320), "edgedet-n-320"),
    # a trailing number that is not the checkpoint's size stays: two checkpoints never get one name
    ("run-3", (640, 640), (320, 320), "run-3-640"), ("run-4", (640, 640), (320, 320), "run-4-640"),
    ("epoch-64", (640, 640), (320, 320), "epoch-64-640"), ("m-320", (640, 640), (256, 320), "m-320-640")])
def test_exports_at_another_size_are_named_by_it(stem, size_hw, own_hw, expected):
    assert sized_stem(stem, size_hw, own_hw) == expected


def test_export_with_imgsz_names_the_files_by_that_size(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", str(tiny_checkpoint), "--format", "onnx", "--imgsz", "96", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    assert main(["export", str(tiny_checkpoint), "--format", "onnx", "--imgsz", str(TINY_IMGSZ), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tiny-96.onnx", "tiny.onnx"]  # its own size: its own name


def test_export_passes_the_gate_when_within_budget(tiny_checkpoint, synth_data, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["export", str(tiny_checkpoint), "--format", "onnx", "--data", str(synth_data), "--out", str(out),
                 "--max-map-drop", "1.0", "--val-limit", "2"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["tiny.onnx"]


def _run_cli(*args):
    result = subprocess.run([sys.executable, "-m", "edgedet", "export", *map(str, args)],
                            capture_output=True, text=True, timeout=600)
    return result.returncode, [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("case", ["missing", "corrupt", "format", "imgsz", "empty_calib", "no_calib", "nan_drop",
                                  "val_limit", "threads", "not_data", "tflite"])
def test_bad_input_is_a_one_line_error_and_writes_nothing(case, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a checkpoint")
    (tmp_path / "m.tflite").write_bytes(b"TFL3")
    args = {
        "missing": [tmp_path / "nope.pt", "--format", "onnx"],
        "corrupt": [corrupt, "--format", "onnx"],
        "format": [tiny_checkpoint, "--format", "onnx,coreml"],
        "imgsz": [tiny_checkpoint, "--format", "onnx", "--imgsz", "100"],
        "empty_calib": [tiny_checkpoint, "--format", "onnx,onnx-int8", "--calib", empty],
        "no_calib": [tiny_checkpoint, "--format", "tflite-int8"],
        "nan_drop": [tiny_checkpoint, "--format", "onnx", "--max-map-drop", "nan"],  # a gate that never fails
        "val_limit": [tiny_checkpoint, "--format", "onnx", "--val-limit", "0"],
        "threads": [tiny_checkpoint, "--format", "onnx", "--threads", "0"],
        "not_data": [tiny_checkpoint, "--format", "onnx", "--data", empty],
        "tflite": [tmp_path / "m.tflite", "--format", "onnx"],
    }[case]
    code, lines = _run_cli(*args, "--out", out)
    expected = {"missing": "nope.pt", "corrupt": "corrupt.pt", "format": "coreml", "imgsz": "100",
                "empty_calib": "no images", "no_calib": "--calib", "nan_drop": "--max-map-drop must be a number",
                "val_limit": "--val-limit must be >= 1", "threads": "--threads must be >= 1",
                "not_data": "--data", "tflite": "is a TFLite file, already exported"}[case]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("edgedet export: error:") and expected in lines[0], lines
    assert not out.exists() or list(out.iterdir()) == []
