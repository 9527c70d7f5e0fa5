"""The watchdog of `edgedet run`: a live camera whose read stops returning is reopened and the stall counted; an
inference call that hangs is reported, abandoned, the backend recreated and the run finishes; a backend that keeps
hanging ends the run; the per-hour counters roll over and keep 24 hours. Runs go through the CLI (device.app.main)
with the toy ONNX model, timeouts of a fraction of a second."""
import re
import threading
import time

import numpy as np
import pytest

from edgedet.device import capture
from edgedet.device.backends import OnnxBackend
from edgedet.device.errors import EdgedetError
from edgedet.device.runner import RunOptions, Runner
from edgedet.device.watchdog import HOURLY_COUNTERS, HourlyCounters, InferenceWatch, Watchdog
from tests.device.test_app import read_jsonl, run_cli
from tests.device.test_backends import make_onnx_model


class FakeCamera:
    """A camera device for LiveSource: `opener()` returns a reader (cv2.VideoCapture's read() -> (ok, image) and
    release()), or None while `plugged` is False. The k-th reader opened (0 = at start) delivers `fps` frames per
    second; after `wedge_after[k]` frames its read blocks, as a wedged driver's does, until `unwedge()`."""

    def __init__(self, wedge_after=None, fps=100.0, size_wh=(96, 64)):
        self.wedge_after = dict(wedge_after or {})  # reader index -> frames before its read blocks
        self.period = 1.0 / fps
        self.size_wh = size_wh
        self.plugged = True  # False: opening fails, as with the camera unplugged
        self.opened = 0  # readers handed out
        self.released = []  # indices of the readers released
        self.wedged = threading.Event()  # set while a read is blocked
        self._unwedge = threading.Event()

    def opener(self):
        if not self.plugged:
            return None
        reader = _FakeReader(self, self.opened, self.wedge_after.get(self.opened))
        self.opened += 1
        return reader

    def unwedge(self):
        """Let every blocked read return (a failed read), so no thread outlives the test."""
        self._unwedge.set()


class _FakeReader:
    def __init__(self, camera: FakeCamera, index: int, wedge_after):
        self.camera, self.index, self.wedge_after, self.frames = camera, index, wedge_after, 0

    def read(self):
        if self.wedge_after is not None and self.frames >= self.wedge_after:
            self.camera.wedged.set()
            self.camera._unwedge.wait(60)
            return False, None
        time.sleep(self.camera.period)
        self.frames += 1
        w, h = self.camera.size_wh
        image = np.full((h, w, 3), 40, np.uint8)
        image[10:40, (5 * self.frames) % (w - 30):][:, :30] = 200  # a moving square
        return True, image

    def release(self):
        self.camera.released.append(self.index)


@pytest.fixture
def fake_camera(monkeypatch):
    """`--camera 0` opens a FakeCamera (set its wedge_after / plugged before the run)."""
    camera = FakeCamera()
    monkeypatch.setattr(capture, "_camera_opener", lambda index: camera.opener)
    yield camera
    camera.unwedge()




# ------------------------------------------------------------------------------------------------ stalls


def test_a_camera_whose_read_never_returns_is_reopened_and_the_stall_counted(fake_camera, tmp_path, capsys):
    fake_camera.wedge_after = {0: 4}  # the first reader wedges after 4 frames; the reopened one works
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--camera", 0, "--max-frames", 12,
                              "--stall-timeout", 0.3, "--json", tmp_path / "d.jsonl", "--threads", 1], capsys)
    assert code == 0, err
    assert fake_camera.wedged.is_set() and fake_camera.opened == 2
    assert re.search(r"source camera 0: no frame for 0\.\d s \(--stall-timeout 0\.3 s\): reopening it", err), err
    assert "reconnected (reconnect #1)" in err
    assert len(read_jsonl(tmp_path / "d.jsonl")) == 12  # the run went on with the reopened camera
    assert fake_camera.released == [1]  # the wedged reader is never released under its blocked read
    fake_camera.unwedge()
    assert wait_for(lambda: 0 in fake_camera.released, 5), "released by its own thread once the read returned"


def test_a_live_source_stall_is_counted_once_and_not_while_it_waits_to_reopen(tmp_path):
    camera = FakeCamera(wedge_after={0: 2})
    source = capture.LiveSource("fake", camera.opener, capture.ReconnectPolicy(initial_delay=0.05), open_timeout=2)
    try:
        assert wait_for(camera.wedged.is_set, 5)
        assert wait_for(lambda: source.stalled_for() > 0.2, 5)
        source.recover_stall()
        assert source.stalls == 1 and source.stalled_for() == 0.0  # backing off before the reopen: not a stall
        assert wait_for(lambda: source.reconnects == 1 and source.read(0.5) is not None, 5)
        assert source.stalled_for() < 0.5
    finally:
        camera.unwedge()
        source.close()


def test_a_wedged_camera_whose_reopens_never_answer_ends_the_run_with_a_one_line_error(fake_camera, tmp_path,
                                                                                         capsys):
    fake_camera.wedge_after = {0: 3}  # the first reader wedges, holding the device: every reopen blocks
    real_opener, opened = fake_camera.opener, []

    def opener():
        opened.append(1)
        if len(opened) > 1:
            fake_camera._unwedge.wait(60)
            return None
        return real_opener()

    fake_camera.opener = opener
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--camera", 0,
                              "--stall-timeout", 0.2, "--threads", 1], capsys)
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("edgedet run: error:")]
    assert errors == ["edgedet run: error: source camera 0: no frame since a stall (--stall-timeout 0.2 s) through "
                      "3 stall(s) and 0 failed reopen(s); giving up"], err
    assert "Traceback" not in err and len(opened) == 3  # the first open, then one per stall but the last


def test_failed_reopens_after_a_stall_give_up_on_the_source(tmp_path):
    camera = FakeCamera(wedge_after={0: 2})
    source = capture.LiveSource("fake", camera.opener, capture.ReconnectPolicy(initial_delay=0.01, max_delay=0.02),
                                open_timeout=2)
    watchdog = Watchdog(0.1, 10.0, source, lambda: {})
    try:
        assert wait_for(camera.wedged.is_set, 5)
        camera.plugged = False  # as if the stuck read held the device: every reopen fails at once
        with pytest.raises(EdgedetError, match=r"through 1 stall\(s\) and 10 failed reopen\(s\)"):
            for _ in range(500):
                watchdog.check()
                time.sleep(0.02)
    finally:
        camera.unwedge()
        source.close()


def test_an_opener_that_never_answers_after_a_stall_gives_up_after_a_few_threads(tmp_path):
    camera, hung = FakeCamera(wedge_after={0: 2}), threading.Event()
    first = camera.opener()

    def opener():  # after the first reader, opening blocks (a wedged driver)
        if camera.opened == 1 and first is not None:
            camera.opened += 1
            return first
        hung.wait(60)
        return None

    source = capture.LiveSource("fake", opener, capture.ReconnectPolicy(initial_delay=0.01), open_timeout=2)
    watchdog = Watchdog(0.1, 10.0, source, lambda: {})
    try:
        with pytest.raises(EdgedetError, match=r"through 3 stall\(s\) and 0 failed reopen\(s\)"):
            for _ in range(500):
                watchdog.check()
                time.sleep(0.02)
        assert source.stalls == 3  # one capture thread per stall, not one per check
    finally:
        camera.unwedge()
        hung.set()
        source.close()


def test_a_frame_after_a_stall_clears_the_count_of_unrecovered_stalls(tmp_path):
    camera = FakeCamera(wedge_after={0: 2})
    source = capture.LiveSource("fake", camera.opener, capture.ReconnectPolicy(initial_delay=0.01), open_timeout=2)
    try:
        assert wait_for(camera.wedged.is_set, 5)
        source.read(0.01)  # the frames from before the stall
        source.recover_stall()
        assert source.unrecovered_stalls == 1
        assert wait_for(lambda: source.read(0.5) is not None, 5) and source.unrecovered_stalls == 0
    finally:
        camera.unwedge()
        source.close()


def wait_for(predicate, seconds):
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


# ------------------------------------------------------------------------------------------------- hangs


@pytest.fixture
def hanging_backend(monkeypatch):
    """OnnxBackend.run hangs, until the test ends, on the calls numbered in `state["calls"]` (1-based, across every
    backend object), or on every call with `state["all"]`; records the backend object of each call."""
    state = {"calls": set(), "all": False, "n": 0, "backends": [], "release": threading.Event()}
    real_run = OnnxBackend.run

    def run(self, x):
        state["n"] += 1
        state["backends"].append(self)
        if state["all"] or state["n"] in state["calls"]:
            state["release"].wait(60)
        return real_run(self, x)

    monkeypatch.setattr(OnnxBackend, "run", run)
    yield state
    state["release"].set()


@pytest.mark.parametrize("source", ["synthetic", "synthetic:200"])  # in order, and live (pulled just in time)
def test_a_hung_inference_call_is_reported_the_backend_recreated_and_the_run_finishes(hanging_backend, tmp_path,
                                                                                      capsys, source):
    hanging_backend["calls"] = {3}
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", source,
                              "--max-frames", 6, "--inference-timeout", 0.3, "--json", tmp_path / "d.jsonl"], capsys)
    assert code == 0, err
    assert re.search(r"inference stuck for 0\.\d s on frame \d+ of synthetic.* \(--inference-timeout 0\.3 s\): "
                     r"abandoning the call and recreating the backend \(hang #1\)", err), err
    assert "backend recreated in" in err and "1 failed" in out
    frames = [line["frame"] for line in read_jsonl(tmp_path / "d.jsonl")]
    assert len(frames) == 5 and (source != "synthetic" or frames == [0, 1, 3, 4, 5])
    backends = hanging_backend["backends"]
    first, after = backends[0], backends[3:]
    assert all(b is first for b in backends[:3]) and len(after) == 3 and all(b is after[0] is not first for b in after)


def test_a_backend_that_keeps_hanging_ends_the_run_with_a_one_line_error(hanging_backend, tmp_path, capsys):
    hanging_backend["all"] = True
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--inference-timeout", 0.2, "--json", tmp_path / "d.jsonl"], capsys)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("edgedet run: error:")]
    assert errors == ["edgedet run: error: inference hung 3 times in a row (each longer than --inference-timeout "
                      "0.2 s); giving up"], err
    assert err.count("abandoning the call") == 3 and "Traceback" not in err
    assert len(set(map(id, hanging_backend["backends"]))) == 3  # the first backend and two recreated ones


def test_hung_calls_that_never_return_end_the_run_once_more_than_three_are_alive(hanging_backend, tmp_path,
                                                                                  capsys):
    hanging_backend["calls"] = {2, 4, 6, 8, 10}  # a good call between hangs: never 3 in a row, but each leaks
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 20, "--inference-timeout", 0.2], capsys)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("edgedet run: error:")]
    assert errors == ["edgedet run: error: 4 hung inference calls are still running (each longer than "
                      "--inference-timeout 0.2 s); giving up"], err
    assert err.count("abandoning the call") == 4


def test_a_stop_during_a_hung_call_ends_the_run_without_waiting_or_reloading(hanging_backend, tmp_path):
    hanging_backend["all"] = True
    options = RunOptions(make_onnx_model(tmp_path / "toy.onnx"), "synthetic", inference_timeout=30.0)
    runner = Runner(options)
    stopper = threading.Thread(target=lambda: wait_for(lambda: hanging_backend["n"] >= 1, 10) and
                               options.stop_event.set())
    stopper.start()
    assert runner.run() == 0
    stopper.join()
    assert runner.watchdog.hangs == 0 and runner.detector.backend is hanging_backend["backends"][0]


def test_hourly_counters_sampled_out_of_order_from_two_threads_count_once():
    counters = HourlyCounters(["stalls"], clock=Clock(0.0))
    counters.update({"stalls": 6})  # the status page's newer sample lands first
    counters.update({"stalls": 5})  # then the watchdog's older one
    counters.update({"stalls": 6})
    assert counters.table()[0]["stalls"] == 6


def test_inference_watch_tells_an_abandoned_thread_to_stop():
    watch = InferenceWatch()
    watch.started(frame=None)
    assert watch.abandon_if_hung(timeout=10.0, now=time.perf_counter()) is None  # not yet
    hang = watch.abandon_if_hung(timeout=0.5, now=time.perf_counter() + 1.0)
    assert hang is not None and hang.seconds > 0.5 and hang.consecutive == 1 and watch.generation == 1
    assert watch.abandon_if_hung(timeout=0.5, now=time.perf_counter() + 9) is None  # reported once
    assert watch.finished(0) is False  # the old call returned late: drop it
    watch.started(frame=None)
    assert watch.finished(1) is True and watch.consecutive_hangs == 0  # a good call resets the streak


# --------------------------------------------------------------------------------------- hourly counters


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def test_hourly_counters_count_what_the_totals_grew_by_in_each_clock_hour():
    clock = Clock(1_700_000_000.0)  # 2023-11-14T22:13:20Z
    counters = HourlyCounters(HOURLY_COUNTERS, clock=clock)
    counters.update({"stalls": 0, "reconnects": 0})
    counters.update({"stalls": 2, "reconnects": 1})
    clock.t += 3600
    counters.update({"stalls": 3, "reconnects": 1, "failed_frames": 4})
    clock.t += 3 * 3600  # two quiet hours in between
    counters.update({"stalls": 3, "reconnects": 2, "failed_frames": 4})
    table = counters.table()
    assert [row["hour"] for row in table] == ["2023-11-14T22:00Z", "2023-11-14T23:00Z", "2023-11-15T00:00Z",
                                              "2023-11-15T01:00Z", "2023-11-15T02:00Z"]
    assert [row["stalls"] for row in table] == [2, 1, 0, 0, 0]
    assert [row["reconnects"] for row in table] == [1, 0, 0, 0, 1]
    assert [row["failed_frames"] for row in table] == [0, 4, 0, 0, 0]
    assert all(row["inference_hangs"] == 0 and row["dropped_events"] == 0 for row in table)


def test_hourly_counters_keep_the_last_24_hours():
    clock = Clock(0.0)
    counters = HourlyCounters(["stalls"], clock=clock)
    for hour in range(30):
        clock.t = hour * 3600 + 10
        counters.update({"stalls": hour})
    table = counters.table()
    assert len(table) == 24 and table[0]["hour"] == "1970-01-01T06:00Z" and table[-1]["hour"] == "1970-01-02T05:00Z"
    assert all(row["stalls"] == 1 for row in table)
    clock.t += 100 * 3600  # a jump past the whole window: 24 empty hours, not 100
    counters.update({"stalls": 29})
    assert len(counters.table()) == 24 and all(row["stalls"] == 0 for row in counters.table())
