"""Issue 15: every bad input gets one line naming the problem (exit 2, no traceback), run as the user runs edgedet."""
import subprocess
import sys
from pathlib import Path

import pytest

from edgedet.device import app
from edgedet.device.backends import thread_count

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ultralytics"


def edgedet(*args, timeout=300):
    """(exit code, stderr lines that are not blank) of `python -m edgedet ARGS`."""
    result = subprocess.run([sys.executable, "-m", "edgedet", *map(str, args)], capture_output=True, text=True,
                            timeout=timeout)
    return result.returncode, [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_line(code, lines, verb):
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"edgedet {verb}: error: ") and "Traceback" not in lines[0]
    return lines[0]


def strip_metadata(source: Path, out: Path) -> Path:
    """`source` ONNX without its metadata_props (a foreign model the runtime knows only by its shapes)."""
    import onnx

    model = onnx.load(str(source))
    del model.metadata_props[:]
    onnx.save(model, str(out))
    return out


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04 truncated zip", None])
def test_corrupt_checkpoint_is_named_without_weights_only_advice(tmp_path, tiny_checkpoint, content):
    path = tmp_path / "broken.pt"
    data = tiny_checkpoint.read_bytes()
    if content is None:  # a real checkpoint with flipped bytes inside its pickle
        data = bytearray(data)
        for i in range(100, 400):
            data[i] ^= 0x5A
        content = bytes(data)
    path.write_bytes(content)
    line = assert_one_line(*edgedet("export", path, "--format", "onnx", "--out", tmp_path / "out"), "export")
    assert "broken.pt is corrupt or not an edgedet checkpoint" in line
    assert "weights_only" not in line and "trusted source" not in line


def test_imgsz_differing_from_a_fixed_input_is_refused(exported_models, tmp_path):
    line = assert_one_line(*edgedet("run", "--model", exported_models["onnx-int8"], "--source", "synthetic",
                                    "--max-frames", 1, "--imgsz", 640), "run")
    assert "--imgsz 640x640 differs from the fixed input size 160x160 of tiny-int8.onnx" in line


def test_imgsz_equal_to_the_fixed_input_is_accepted(exported_models, tmp_path):
    code, lines = edgedet("run", "--model", exported_models["onnx-int8"], "--source", "synthetic", "--max-frames", 1,
                          "--imgsz", 160, "--json", tmp_path / "d.jsonl")
    assert code == 0, lines


@pytest.mark.parametrize("layout_flag", [[], ["--layout", "yolov8"]])
def test_names_count_of_a_model_without_metadata_fails_first_naming_both_counts(tmp_path, layout_flag):
    model = strip_metadata(FIXTURES / "yolov8-det.onnx", tmp_path / "bare.onnx")
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\n")
    line = assert_one_line(*edgedet("run", "--model", model, "--source", "synthetic", "--max-frames", 1,
                                    "--names", names, *layout_flag), "run")
    assert "--names gives 3 classes" in line and "yolov8 with 5 classes" in line


def test_names_count_of_a_model_with_metadata_names_both_counts(tmp_path):
    line = assert_one_line(*edgedet("run", "--model", FIXTURES / "yolov8-det.onnx", "--source", "synthetic",
                                    "--max-frames", 1, "--names", "a,b,c"), "run")
    assert "--names gives 3 classes but the model has 5" in line


@pytest.mark.skipif(app.opencv_has_gui(), reason="this OpenCV has a GUI backend; the headless case cannot occur")
def test_show_with_headless_opencv_names_the_package_to_install(exported_models):
    line = assert_one_line(*edgedet("run", "--model", exported_models["onnx-int8"], "--source", "synthetic",
                                    "--max-frames", 1, "--show"), "run")
    assert "install opencv-python" in line and "opencv-python-headless" in line


@pytest.mark.parametrize("gui, expected", [("NONE", False), ("GTK3", True), ("QT5", True), (None, True)])
def test_opencv_gui_probe_reads_the_build_information(monkeypatch, gui, expected):
    info = "General configuration for OpenCV 5.1.0\n  Version control: 5.1.0\n\n"
    if gui is not None:
        info += f"  GUI:                           {gui}\n    VTK support:                 NO\n"
    monkeypatch.setattr(app.cv2, "getBuildInformation", lambda: info)
    assert app.opencv_has_gui() is expected


@pytest.mark.parametrize("threads, text", [(1, "1 thread"), (2, "2 threads"), (4, "4 threads")])
def test_thread_count_is_plural_only_above_one(threads, text):
    assert thread_count(threads) == text
