"""Issue 15: `edgedet export` shows edgedet's own lines and none of the libraries' chatter unless --verbose;
an export that fails its gate says what usually helps."""
import re
import subprocess
import sys
import warnings

import pytest

from edgedet.device import library_logs

# Lines the libraries print during an onnx-int8 / TFLite export or a run (seen before issue 15).
CHATTER = [
    r"^WARNING:root:",  # onnxruntime: "Please consider to run pre-processing before quantization"
    r"^WARNING:torchao",  # torchao: "Failed to load ... _C_mxfp8", "Detected no triton"
    r"Collecting tensor data and making histogram",  # onnxruntime calibrator prints
    r"^Finding optimal threshold|^Number of tensors|^Number of histogram bins|^Percentile :",
    r"\[START\]|\[ DONE\]",  # LiteRT-Torch progress tree
    r"FutureWarning|UserWarning|DeprecationWarning",
    r"^WARNING: All log messages before absl::InitializeLog",
    r"^[IW]\d{4} ",  # absl / torch glog-style lines ("I0000 ... port.cc:153] oneDNN ...")
    r"^INFO: Created TensorFlow Lite XNNPACK delegate",
    r"^\[ WARN:",  # OpenCV
    r"^Model name:|^Quantization Ratio|Applying Transformations",  # ai_edge_quantizer summary and tqdm bar
]


def chatter_lines(text: str):
    return [line for line in text.splitlines() if any(re.search(p, line) for p in CHATTER)]


def export(tiny_checkpoint, synth_data, out, *extra):
    return subprocess.run([sys.executable, "-m", "edgedet", "export", str(tiny_checkpoint), "--format", "onnx-int8",
                           "--calib", str(synth_data), "--calib-size", "4", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_export_prints_its_own_lines_and_no_library_chatter(tiny_checkpoint, synth_data, tmp_path):
    result = export(tiny_checkpoint, synth_data, tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    assert chatter_lines(result.stdout + "\n" + result.stderr) == []
    assert "Traceback" not in result.stderr and result.stderr.strip() == ""
    assert re.search(r"^calibration: 4 of 8 images from data set", result.stdout, re.M)
    assert re.search(r"^onnx-int8: ", result.stdout, re.M)
    assert re.search(r"^wrote onnx-int8 +.*tiny-int8\.onnx", result.stdout, re.M)
    assert re.search(r"^artifact +size MB", result.stdout, re.M)  # the accuracy table


@pytest.mark.slow
def test_verbose_shows_the_chatter_and_a_failed_gate_says_what_helps(tiny_checkpoint, synth_data, tmp_path):
    # --max-map-drop -100: every artifact "loses" more than it may, so the gate fails by construction
    result = export(tiny_checkpoint, synth_data, tmp_path / "out", "--verbose", "--max-map-drop", "-100")
    assert result.returncode == 1
    assert chatter_lines(result.stdout + "\n" + result.stderr) != []  # the patterns above do match the chatter
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgedet export: ")]
    assert errors[0].startswith("edgedet export: error: onnx-int8 (") and "--max-map-drop -100" in errors[0]
    hint = next(line for line in errors if line.startswith("edgedet export: hint: "))
    assert "--calib-size, now 4" in hint and "--calib-method (minmax or entropy; percentile now)" in hint
    assert f"edgedet calibrate {tiny_checkpoint}" in hint and "--keep-float" in hint


def test_quiet_libraries_restores_the_process_afterwards(monkeypatch):
    import logging
    import os

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv("OPENCV_LOG_LEVEL", "DEBUG")  # a user's own setting wins and survives
    root_level = logging.getLogger().level
    with library_logs.quiet_libraries(verbose=False):
        assert library_logs.libraries_quiet()
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2" and os.environ["OPENCV_LOG_LEVEL"] == "DEBUG"
        assert logging.getLogger().level == logging.ERROR
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("library chatter", FutureWarning)
        assert caught == []
    assert not library_logs.libraries_quiet()
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ and os.environ["OPENCV_LOG_LEVEL"] == "DEBUG"
    assert logging.getLogger().level == root_level


def test_quiet_prints_and_native_info_drop_only_chatter(capfd):
    with library_logs.quiet_libraries(verbose=False):
        with library_logs.quiet_prints():
            print("Collecting tensor data and making histogram ...")
        with library_logs.quiet_native_info():
            os_write_stderr(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
                            b"I0000 00:00:1796290386.623097   28616 port.cc:153] oneDNN custom operations are on.\n"
                            b"E0000 something really failed\n")
    print("edgedet's own line")
    out, err = capfd.readouterr()
    assert out == "edgedet's own line\n"
    assert err == "E0000 something really failed\n"


def test_verbose_leaves_everything_through(capfd):
    with library_logs.quiet_libraries(verbose=True):
        with library_logs.quiet_prints():
            print("Collecting tensor data and making histogram ...")
        with library_logs.quiet_native_info():
            os_write_stderr(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    out, err = capfd.readouterr()
    assert "Collecting tensor data" in out and "INFO: Created TensorFlow Lite" in err


def os_write_stderr(data: bytes) -> None:
    """Write to file descriptor 2 directly, as a C library does."""
    import os

    os.write(2, data)
