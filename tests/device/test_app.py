"""`edgedet run` end to end: video / image folder / synthetic with ONNX and TFLite exports of the tiny checkpoint,
JSON lines and saved video checked, MJPEG + status over HTTP, a live MJPEG source that disconnects and comes back,
SIGINT/SIGTERM with complete outputs, and every bad-input message. Network traffic only to 127.0.0.1."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedet.device.capture import SyntheticSource
from edgedet.device.sinks import Sink, VideoSink
from edgedet.device.stream import StreamServer, StreamSink
from edgedet.cli import main
from tests.device.test_backends import make_onnx_model
from tests.device.test_capture import write_images, write_video

EDGEDET = [sys.executable, "-m", "edgedet"]
ROOT = Path(__file__).resolve().parents[2]


def run_cli(args, capsys):
    code = main(["run", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def count_video_frames(path):
    capture = cv2.VideoCapture(str(path))
    count, shape = 0, None
    while True:
        ok, image = capture.read()
        if not ok:
            break
        count, shape = count + 1, image.shape
    capture.release()
    return count, shape


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, seconds=60.0, interval=0.1):
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def jsonl_lines(path):
    try:
        return len(Path(path).read_text().splitlines())
    except FileNotFoundError:
        return 0


def start_cli(args, tmp_path):
    """`edgedet run ...` as a subprocess (stdout/stderr to files so pipes never fill)."""
    stdout, stderr = open(tmp_path / "stdout.txt", "w"), open(tmp_path / "stderr.txt", "w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([*EDGEDET, "run", *map(str, args)], stdout=stdout, stderr=stderr, cwd=ROOT, env=env)


def finish(process, tmp_path, timeout=60):
    code = process.wait(timeout=timeout)
    return code, (tmp_path / "stdout.txt").read_text(), (tmp_path / "stderr.txt").read_text()


# ------------------------------------------------------------------------------------------ end to end


def test_video_with_onnx_writes_every_frame_to_json_video_and_latency_log(exported_models, tmp_path, capsys):
    video = write_video(tmp_path / "clip.avi", frames=8, size_wh=(96, 72))
    code, out, err = run_cli(["--model", exported_models["onnx"], "--source", video, "--conf", "0.002", "--max-det", 10,
                              "--json", tmp_path / "dets.jsonl", "--save", tmp_path / "out.mp4",
                              "--latency-log", tmp_path / "lat.jsonl", "--threads", 1], capsys)
    assert code == 0, err
    lines = read_jsonl(tmp_path / "dets.jsonl")
    assert [line["frame"] for line in lines] == list(range(8))
    assert all(line["width"] == 96 and line["height"] == 72 and line["source"] == str(video) for line in lines)
    assert {"capture", "preprocess", "inference", "decode", "nms", "end_to_end", "frame_age"} <= set(lines[0]["latency_ms"])
    detections = [d for line in lines for d in line["detections"]]
    assert detections, "the untrained tiny model scores about 0.0025 everywhere"
    for d in detections:
        assert set(d) == {"xyxy", "score", "class_id", "class_name", "segmentation"}
        assert d["segmentation"]["size"] == [72, 96] and d["score"] >= 0.002
    assert count_video_frames(tmp_path / "out.mp4") == (8, (72, 96, 3))
    latency = read_jsonl(tmp_path / "lat.jsonl")
    assert len(latency) == 8 and "output" in latency[0]["ms"] and "inference" in latency[0]["ms"]
    assert "8 frames in" in out and "0 failed" in out and "inference" in out and "p99" in out  # the summary table


def test_image_folder_with_tflite_int8_keeps_order_and_file_names(exported_models, tmp_path, capsys):
    paths = write_images(tmp_path / "imgs", count=4, size_hw=(60, 80))
    code, out, err = run_cli(["--model", exported_models["tflite-int8"], "--source", tmp_path / "imgs",
                              "--json", tmp_path / "dets.jsonl", "--save", tmp_path / "out.avi"], capsys)
    assert code == 0, err
    lines = read_jsonl(tmp_path / "dets.jsonl")
    assert [line["source"] for line in lines] == paths
    assert count_video_frames(tmp_path / "out.avi")[0] == 4
    assert "tflite" in err or "ai_edge_litert" in err


@pytest.mark.parametrize("variant", ["tflite", "onnx-int8"])
def test_synthetic_source_with_max_frames(exported_models, tmp_path, capsys, variant):
    code, out, err = run_cli(["--model", exported_models[variant], "--source", "synthetic", "--max-frames", 5,
                              "--json", tmp_path / "dets.jsonl", "--classes", "circle,square"], capsys)
    assert code == 0, err
    lines = read_jsonl(tmp_path / "dets.jsonl")
    assert len(lines) == 5 and lines[0]["width"] == 640 and lines[0]["source"] == "synthetic"
    assert all(d["class_name"] in ("circle", "square") for line in lines for d in line["detections"])


def test_foreign_model_with_flags_and_show_fallback(tmp_path, capsys, monkeypatch):
    from edgedet.device import app

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(app, "opencv_has_gui", lambda: True)  # a GUI OpenCV without a display: the fallback
    model = make_onnx_model(tmp_path / "bare.onnx", metadata=False)
    code, out, err = run_cli(["--model", model, "--source", "synthetic", "--max-frames", 2], capsys)
    assert code == 2 and "--names" in err and "--layout" in err and err.count("\n") == 1
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 2, "--show"], capsys)
    assert code == 0 and "--show: no display" in err and "--stream" in err


def test_a_frame_that_fails_is_logged_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
    from edgedet.device.pipeline import Detector

    real_infer = Detector.infer
    calls = {"n": 0}

    def flaky_infer(self, prepared):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated backend hiccup")
        return real_infer(self, prepared)

    monkeypatch.setattr(Detector, "infer", flaky_infer)
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 4, "--json", tmp_path / "d.jsonl"], capsys)
    assert code == 0
    assert "simulated backend hiccup" in err and "1 failed" in out
    assert [line["frame"] for line in read_jsonl(tmp_path / "d.jsonl")] == [0, 2, 3]


# ------------------------------------------------------------------------- streaming, signals, reconnect


def test_stream_serves_mjpeg_and_status_and_sigint_completes_outputs(exported_models, tmp_path):
    port = free_port()
    process = start_cli(["--model", exported_models["onnx"], "--source", "synthetic", "--stream", port,
                         "--json", tmp_path / "dets.jsonl", "--save", tmp_path / "out.mp4",
                         "--latency-log", tmp_path / "lat.jsonl", "--threads", 1], tmp_path)
    try:
        base = f"http://127.0.0.1:{port}/"
        status = wait_for(lambda: _get_json(base + "status.json"), 90)
        assert status is not None, (tmp_path / "stderr.txt").read_text()
        status = wait_for(lambda: (lambda s: s if s and s["frames"] >= 3 else None)(_get_json(base + "status.json")), 60)
        assert status["model"] == "tiny.onnx" and status["backend"] == "onnxruntime" and status["threads"] == 1
        assert "inference" in status["stages"] and set(status["stages"]["inference"]) == {"p50", "p90", "p99"}
        assert "/stream.mjpg" in urllib.request.urlopen(base, timeout=10).read().decode()
        with urllib.request.urlopen(base + "stream.mjpg", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            jpeg = _read_one_part(response)
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
    finally:
        process.send_signal(signal.SIGINT)
    code, out, err = finish(process, tmp_path)
    assert code == 0, err
    assert "SIGINT received" in err and "0 failed" in out and "end_to_end" in out
    lines = read_jsonl(tmp_path / "dets.jsonl")  # every line complete JSON
    assert len(lines) >= 3 and [l["frame"] for l in lines] == list(range(len(lines)))
    assert count_video_frames(tmp_path / "out.mp4")[0] == len(lines)  # the video was finalised
    assert len(read_jsonl(tmp_path / "lat.jsonl")) == len(lines)


def test_live_mjpeg_source_reconnects_after_the_camera_restarts(tmp_path):
    synthetic = SyntheticSource((160, 120))
    feeding = threading.Event()

    def feed(server):
        while feeding.is_set():
            server.publish(synthetic.read().image)
            time.sleep(0.03)

    camera = StreamServer("127.0.0.1", 0, dict)
    port = camera.port
    feeding.set()
    threading.Thread(target=feed, args=(camera,), daemon=True).start()
    model = make_onnx_model(tmp_path / "toy.onnx")
    json_path = tmp_path / "dets.jsonl"
    process = start_cli(["--model", model, "--source", f"http://127.0.0.1:{port}/stream.mjpg",
                         "--json", json_path, "--log-every", 1], tmp_path)
    try:
        assert wait_for(lambda: jsonl_lines(json_path) >= 5, 60), (tmp_path / "stderr.txt").read_text()
        feeding.clear()
        camera.close()  # the camera disappears ...
        time.sleep(1.5)
        before = jsonl_lines(json_path)
        camera = StreamServer("127.0.0.1", port, dict)  # ... and comes back
        feeding.set()
        threading.Thread(target=feed, args=(camera,), daemon=True).start()
        assert wait_for(lambda: jsonl_lines(json_path) >= before + 5, 60), (tmp_path / "stderr.txt").read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        feeding.clear()
    code, out, err = finish(process, tmp_path)
    camera.close()
    assert code == 0, err
    assert "stopped delivering frames" in err and "reconnected" in err and "SIGTERM received" in err
    assert "FPS" in err  # the rolling latency line
    assert "reconnected 1 times" in out or "reconnected" in out
    lines = read_jsonl(json_path)
    assert all(line["source"].startswith("http://127.0.0.1") for line in lines)


def _get_json(url):
    try:
        return json.loads(urllib.request.urlopen(url, timeout=2).read())
    except OSError:
        return None


def _read_one_part(response):
    while True:
        line = response.readline()
        if line.startswith(b"Content-Length:"):
            length = int(line.split(b":")[1])
            response.readline()
            return response.read(length)


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, message", [
    (["--model", "{tmp}/missing.onnx", "--source", "synthetic"], "model file not found"),
    (["--model", "{toy}", "--source", "{tmp}/nothing.mp4"], "source not found"),
    (["--model", "{toy}", "--camera", "57", "--open-timeout", "2"], "cannot open camera 57 .*video devices present"),
    (["--model", "{toy}", "--camera", "picam"], "picamera2"),
    (["--model", "{toy}", "--camera", "front"], "--camera expects an index"),
    (["--model", "{toy}", "--source", "synthetic", "--stream", "nowhere:port"], "--stream expects HOST:PORT"),
    (["--model", "{toy}", "--source", "synthetic", "--conf", "2"], "--conf must be in"),
    (["--model", "{toy}", "--source", "synthetic", "--save", "{tmp}/out.gif"], "unsupported video suffix"),
    (["--model", "{toy}", "--source", "synthetic", "--threads", "0"], "--threads must be >= 1"),
    (["--model", "{toy}", "--source", "synthetic", "--max-frames", "0"], "--max-frames must be >= 1"),
    (["--model", "{toy}", "--source", "synthetic", "--classes", "zebra"], "unknown class 'zebra'"),
    (["--model", "{toy}", "--source", "synthetic", "--backend", "tflite"], "cannot load"),
    (["--model", "{toy}", "--source", "synthetic", "--json", "{file}/x.jsonl"], "--json: cannot write"),
    (["--model", "{bare}", "--source", "synthetic", "--names", "a,b"], "--layout"),
    (["--model", "{toy}", "--source", "{video}", "--save", "{video}"], "--save .*clip.mp4 is the source file"),
    (["--model", "{toy}", "--source", "{video}", "--json", "{tmp}/../{tmp.name}/clip.mp4"], "--json .* is the source"),
    (["--model", "{toy}", "--source", "synthetic", "--json", "{tmp}/a.jsonl", "--latency-log", "{tmp}/a.jsonl"],
     "--json and --latency-log name the same file"),
    (["--model", "{toy}", "--source", "{video}", "--save", "{hardlink}"], "--save .*hard.mp4 is the source file"),
    (["--model", "{toy}", "--source", "synthetic", "--json", "{toy}"], "--json .*toy.onnx is the model"),
    (["--model", "{toy}", "--source", "{images}", "--json", "{images}/img_00.png"], "is an image of the source folder"),
    (["--model", "{toy}", "--source", "synthetic", "--open-timeout", "nan"], "--open-timeout must be"),
    (["--model", "{toy}", "--source", "synthetic", "--open-timeout", "inf"], "--open-timeout must be"),
    (["--model", "{toy}", "--source", "synthetic", "--classes", " , "], "--classes: no class given"),
    (["--model", "{toy}", "--source", "synthetic", "--save", "/proc/edgedet.mp4"], "--save: cannot write in folder /proc"),
    (["--model", "{toy}", "--source", "synthetic", "--save="], "--save: empty value"),
    (["--model", "{toy}", "--source", "synthetic", "--mqtt", ""], "--mqtt: empty value"),
])
def test_bad_input_gives_one_line_error_and_exit_2(tmp_path, capsys, args, message):
    if "picam" in args:
        try:
            import picamera2  # noqa: F401
            pytest.skip("picamera2 is installed here")
        except ImportError:
            pass
    (tmp_path / "file").write_text("x")
    (tmp_path / "clip.mp4").write_text("a video being read")
    os.link(tmp_path / "clip.mp4", tmp_path / "hard.mp4")
    write_images(tmp_path / "images", count=2)
    values = {"tmp": tmp_path, "toy": make_onnx_model(tmp_path / "toy.onnx"), "file": tmp_path / "file",
              "bare": make_onnx_model(tmp_path / "bare.onnx", metadata=False), "video": tmp_path / "clip.mp4",
              "hardlink": tmp_path / "hard.mp4", "images": tmp_path / "images"}
    code, out, err = run_cli([a.format(**values) for a in args], capsys)
    assert code == 2
    error_lines = [line for line in err.splitlines() if line.startswith("edgedet run: error:")]
    assert len(error_lines) == 1 and "Traceback" not in err, err
    import re

    assert re.search(message, error_lines[0]), error_lines[0]
    assert (tmp_path / "clip.mp4").read_text() == "a video being read"


def test_source_and_camera_are_mutually_exclusive(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--model", "m.onnx", "--source", "synthetic", "--camera", "0"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_run_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--camera", "--source", "--conf", "--iou", "--max-det", "--classes", "--imgsz",
                 "--backend", "--threads", "--show", "--save", "--json", "--stream", "--latency-log",
                 "--max-frames", "--names", "--layout"):
        assert flag in text


def stream_server(runner):
    """The StreamServer of a run's --stream sink once the sinks are open, else None."""
    return next((sink.server for sink in runner.sinks if isinstance(sink, StreamSink)), None)


def test_status_page_lists_the_last_detections_and_stop_event_ends_the_run(tmp_path):
    from edgedet.device.runner import RunOptions, Runner

    options = RunOptions(model=str(make_onnx_model(tmp_path / "toy.onnx")), source="synthetic", conf=0.3,
                         stream="127.0.0.1:0", json=str(tmp_path / "d.jsonl"))
    runner = Runner(options)
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=runner.run()), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: stream_server(runner) is not None and runner.frames_done >= 3, 60)
        status = _get_json(stream_server(runner).url + "status.json")
        assert status["frames"] >= 3 and status["model"] == "toy.onnx" and status["source"] == "synthetic"
        assert status["detections"], "the random toy head fires at conf 0.3"
        first = status["detections"][0]
        assert first["class_name"] in ("circle", "square") and len(first["xyxy"]) == 4 and "segmentation" not in first
    finally:
        options.stop_event.set()
        thread.join(30)
    assert result["code"] == 0 and stream_server(runner).hub.closed
    assert len(read_jsonl(tmp_path / "d.jsonl")) == runner.frames_done


def test_a_source_that_breaks_ends_the_run_with_its_message_and_keeps_the_output(tmp_path, capsys, monkeypatch):
    real_read = SyntheticSource.read

    def breaking_read(self, timeout=1.0):
        if self._index == 3:
            raise OSError("camera cable pulled")
        return real_read(self, timeout)

    monkeypatch.setattr(SyntheticSource, "read", breaking_read)
    code = main(["run", "--model", str(make_onnx_model(tmp_path / "toy.onnx")), "--source", "synthetic",
                 "--json", str(tmp_path / "d.jsonl")])
    assert code == 2  # the CLI ends with the source's error as its one-line message
    assert [line["frame"] for line in read_jsonl(tmp_path / "d.jsonl")] == [0, 1, 2]
    err = capsys.readouterr().err
    assert "capture thread stopped: OSError: camera cable pulled" in err
    assert "edgedet run: error: camera cable pulled" in err


@pytest.mark.parametrize("frames", [1, 40])  # the error found at close, or by a later frame's write
def test_a_video_that_cannot_be_encoded_ends_the_run_with_a_one_line_error(tmp_path, capsys, monkeypatch, frames):
    def failing_encode(self, image):
        raise OSError("disk full")

    monkeypatch.setattr(VideoSink, "_encode", failing_encode)
    code = main(["run", "--model", str(make_onnx_model(tmp_path / "toy.onnx")), "--source", "synthetic",
                 "--max-frames", str(frames), "--save", str(tmp_path / "out.avi")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("edgedet run: error:")]
    assert errors == [f"edgedet run: error: --save {tmp_path / 'out.avi'}: writing failed: OSError: disk full"], err


def test_the_loop_runs_with_a_short_gil_switch_interval_and_single_threaded_opencv_then_restores(
        tmp_path, capsys, monkeypatch):
    from edgedet.device.runner import LOOP_SWITCH_INTERVAL
    from edgedet.device.pipeline import Detector

    real_infer = Detector.infer
    seen = []

    def recording_infer(self, prepared):
        seen.append((sys.getswitchinterval(), cv2.getNumThreads()))
        return real_infer(self, prepared)

    monkeypatch.setattr(Detector, "infer", recording_infer)
    before = sys.getswitchinterval()
    cv2.setNumThreads(2)
    try:
        code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                                  "--max-frames", 3], capsys)
        assert code == 0 and len(seen) == 3
        assert all(interval <= LOOP_SWITCH_INTERVAL + 1e-9 and threads == 1 for interval, threads in seen)
        assert before > LOOP_SWITCH_INTERVAL
        assert sys.getswitchinterval() == before and cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(-1)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs sched_setaffinity and at least 2 cores")
def test_one_inference_thread_keeps_a_core_of_its_own_during_the_loop_then_restores(tmp_path, capsys, monkeypatch):
    from edgedet.device.pipeline import Detector

    real_infer = Detector.infer
    seen = []

    def recording_infer(self, prepared):
        workers = [t for t in threading.enumerate() if t.name in ("edgedet-prepare", "edgedet-output")]
        seen.append((os.sched_getaffinity(0), [os.sched_getaffinity(t.native_id) for t in workers]))
        return real_infer(self, prepared)

    monkeypatch.setattr(Detector, "infer", recording_infer)
    original = os.sched_getaffinity(0)
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--threads", 1, "--max-frames", 3], capsys)
    assert code == 0 and len(seen) == 3
    for mine, workers in seen:
        assert len(mine) == 1 and workers and all(cores == set(original) - mine for cores in workers)
    assert "inference on core(s)" in err
    assert os.sched_getaffinity(0) == original

    seen.clear()
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--threads", 1, "--max-frames", 2, "--no-pin"], capsys)
    assert code == 0 and len(seen) == 2 and "inference on core(s)" not in err
    assert all(mine == original and all(cores == original for cores in workers) for mine, workers in seen)


def test_a_live_source_is_pulled_just_in_time_so_frames_never_queue_behind_a_slow_output(tmp_path, capsys,
                                                                                          monkeypatch):
    # a fast synthetic camera and a slow output stage: a live frame is read only when inference can start on it,
    # and inference starts only once the output thread has taken the previous result, so while the output
    # thread writes its k-th frame at most k + 1 frames have been read (a read-ahead queue would hold several)
    from edgedet.device.pipeline import Detector
    from edgedet.device.runner import Runner

    counts = {"prepared": 0}
    in_flight = []
    real_prepare, real_output = Detector.prepare, Runner._output

    def counting_prepare(self, image):
        counts["prepared"] += 1
        return real_prepare(self, image)

    def slow_output(self, job):
        in_flight.append(counts["prepared"] - self.frames_done)
        time.sleep(0.03)
        real_output(self, job)

    monkeypatch.setattr(Detector, "prepare", counting_prepare)
    monkeypatch.setattr(Runner, "_output", slow_output)
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic:500",
                              "--max-frames", 8, "--json", tmp_path / "d.jsonl"], capsys)
    assert code == 0 and len(in_flight) == 8 and len(read_jsonl(tmp_path / "d.jsonl")) == 8
    assert max(in_flight) <= 2, in_flight
    dropped = int(re.search(r"live source dropped (\d+) stale frames", out).group(1))
    assert dropped > 0  # the camera ran ahead: its frames were dropped, not queued


def test_without_threads_inference_leaves_one_core_to_capture_and_outputs(tmp_path, capsys, monkeypatch):
    from edgedet.device import runner

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert runner.default_threads() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5})
    assert runner.default_threads() == 1
    monkeypatch.undo()
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 2, "--no-pin"], capsys)
    assert code == 0 and int(re.search(r"on onnxruntime [^,]+, (\d+) threads?\b", err).group(1)) == runner.default_threads()


# ------------------------------------------------------------------------------------------ the sink protocol


class RecordingSink(Sink):
    """Keeps what the runner hands it; `stop_after`: pump_events asks to stop once this many frames were written."""

    def __init__(self, needs_canvas=False, records_output_time=False, stop_after=None):
        self.needs_canvas, self.records_output_time, self.stop_after = needs_canvas, records_output_time, stop_after
        self.written, self.closed = [], False

    def write(self, result, canvas):
        self.written.append((result, canvas))

    def pump_events(self):
        return self.stop_after is not None and len(self.written) >= self.stop_after

    def close(self):
        self.closed = True


def run_with_sinks(tmp_path, monkeypatch, sinks, **options):
    """Runner on the toy model and the synthetic source, with `sinks` instead of those the options ask for."""
    from edgedet.device import runner as run_module

    monkeypatch.setattr(run_module, "build_sinks", lambda *args: list(sinks))
    runner = run_module.Runner(run_module.RunOptions(model=str(make_onnx_model(tmp_path / "toy.onnx")),
                                                     source="synthetic", **options))
    return runner, runner.run()


def count_drawing(monkeypatch):
    from edgedet.device import runner as run_module

    drawn, real = [], run_module.annotate
    monkeypatch.setattr(run_module, "annotate", lambda *args, **kwargs: drawn.append(1) or real(*args, **kwargs))
    return drawn


def test_nothing_is_drawn_when_no_sink_needs_a_canvas(tmp_path, capsys, monkeypatch):
    drawn = count_drawing(monkeypatch)
    # JSON lines, the latency log and an unwatched stream need no canvas
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 3, "--json", tmp_path / "d.jsonl", "--latency-log", tmp_path / "l.jsonl",
                              "--stream", "127.0.0.1:0"], capsys)
    assert code == 0 and len(read_jsonl(tmp_path / "d.jsonl")) == 3 and drawn == []
    assert all("draw" not in line["ms"] for line in read_jsonl(tmp_path / "l.jsonl"))
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 3, "--save", tmp_path / "out.avi"], capsys)
    assert code == 0 and len(drawn) == 3


def test_every_sink_gets_every_frame_and_one_shared_canvas_only_if_some_sink_needs_it(tmp_path, monkeypatch):
    drawn = count_drawing(monkeypatch)
    plain = RecordingSink()
    runner, code = run_with_sinks(tmp_path, monkeypatch, [plain], max_frames=3)
    assert code == 0 and drawn == [] and plain.closed
    assert [r.frame.index for r, canvas in plain.written] == [0, 1, 2]
    assert all(canvas is None and r.semantic is None for r, canvas in plain.written)

    plain, drawing, logger = RecordingSink(), RecordingSink(needs_canvas=True), RecordingSink(records_output_time=True)
    runner, code = run_with_sinks(tmp_path, monkeypatch, [logger, plain, drawing], max_frames=3)
    assert code == 0 and len(drawn) == 3 and plain.closed and drawing.closed and logger.closed
    for (result, canvas), (other, shared), (logged, _) in zip(plain.written, drawing.written, logger.written):
        assert canvas is shared and canvas.shape == result.frame.image.shape and canvas.dtype == np.uint8
        assert result is other and not np.array_equal(canvas, result.frame.image)  # annotated, on a copy
        # the latency-recording sink is written last, with the output stage the others took
        assert "output" in logged.latency_ms and "output" not in result.latency_ms
        assert {"inference", "draw", "end_to_end"} <= set(result.latency_ms) and logged.frame is result.frame


def test_a_sink_can_stop_the_run_from_the_main_thread(tmp_path, monkeypatch):
    window = RecordingSink(needs_canvas=True, stop_after=2)  # like --show's q key
    runner, code = run_with_sinks(tmp_path, monkeypatch, [window])  # synthetic without --max-frames: endless
    assert code == 0 and runner.options.stop_event.is_set() and window.closed
    assert 2 <= len(window.written) == runner.frames_done < 10


# ------------------------------------------------------------------------------------------ sources that never answer


class SilentServer(threading.Thread):
    """Accepts TCP connections on 127.0.0.1 and never answers: a hung camera or RTSP server."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port, self.connections = self.sock.getsockname()[1], []

    def run(self):
        while True:
            try:
                self.connections.append(self.sock.accept()[0])
            except OSError:
                return


def test_a_stream_that_never_answers_fails_in_one_line_and_the_process_exits_cleanly(tmp_path):
    server = SilentServer()
    server.start()
    model = make_onnx_model(tmp_path / "toy.onnx")
    code, out, err = finish(start_cli(["--model", model, "--source", f"rtsp://127.0.0.1:{server.port}/cam",
                                       "--open-timeout", 1, "--max-frames", 3], tmp_path), tmp_path)
    assert code == 2, err  # not 134 (abort) or 139: the opener left in FFmpeg does not outlive the process badly
    assert f"error: cannot open source rtsp://127.0.0.1:{server.port}/cam: no answer within 1 s" in err
    assert "terminate called" not in err and "WARN" not in err


def test_ctrl_c_while_a_stream_is_opening_stops_at_once(tmp_path):
    server = SilentServer()
    server.start()
    model = make_onnx_model(tmp_path / "toy.onnx")
    process = start_cli(["--model", model, "--source", f"rtsp://127.0.0.1:{server.port}/cam", "--open-timeout", 60],
                        tmp_path)
    assert wait_for(lambda: server.connections, 30), (tmp_path / "stderr.txt").read_text()  # it is opening
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    code, out, err = finish(process, tmp_path, timeout=30)
    assert code == 0 and time.monotonic() - started < 10, err  # not the 60 s open timeout
    assert "SIGINT received while opening the source: stopped" in err and "terminate called" not in err


def test_a_run_that_could_read_no_frame_fails(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    for k in range(2):
        (folder / f"img_{k}.jpg").write_bytes(b"not a jpeg")
    model = make_onnx_model(tmp_path / "toy.onnx")
    code, out, err = run_cli(["--model", model, "--source", folder, "--json", tmp_path / "d.jsonl"], capsys)
    assert code == 2 and f"error: no frame of {folder} could be read (2 unreadable, skipped)" in err
    assert "0 frames in" in out and "2 unreadable (skipped)" in out
