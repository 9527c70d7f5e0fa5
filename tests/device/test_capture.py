"""device.capture: files in order, synthetic, live newest-frame, reconnect with backoff, bad-source messages."""
import logging
import threading
import time

import cv2
import numpy as np
import pytest

from edgedet.device.capture import (Frame, ImageSource, LiveSource, OpenStopped, ReconnectPolicy, SyntheticSource,
                                    VideoFileSource, open_source)
from edgedet.device.errors import EdgedetError
from edgedet.device.stream import StreamServer


def write_images(folder, count=3, size_hw=(40, 60)):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        image = np.full((*size_hw, 3), 20 * k, np.uint8)
        path = folder / f"img_{k:02d}.png"
        cv2.imwrite(str(path), image)
        paths.append(str(path))
    return paths


def write_video(path, frames=12, size_wh=(64, 48), fps=10.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size_wh)
    for k in range(frames):
        image = np.zeros((size_wh[1], size_wh[0], 3), np.uint8)
        cv2.putText(image, str(k), (5, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
        image[:, :, 2] = 10 * k  # brightness code in the red channel identifies the frame
        writer.write(image)
    writer.release()
    return path


def drain(source, limit=1000):
    frames = []
    while len(frames) < limit:
        frame = source.read(timeout=2.0)
        if frame is None:
            if source.finished:
                break
            continue
        frames.append(frame)
    return frames


def test_folder_is_read_in_order_and_unreadable_files_are_logged(tmp_path, caplog):
    paths = write_images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "img_01b.jpg").write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING, logger="edgedet.capture"):
        source = open_source(str(tmp_path / "imgs"))
        frames = drain(source)
    assert isinstance(source, ImageSource) and source.finished
    assert [f.source for f in frames] == paths  # sorted, none dropped
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 20, 40]
    assert source.skipped == [str(tmp_path / "imgs" / "img_01b.jpg")]
    assert "img_01b.jpg" in caplog.text


def test_glob_and_single_image(tmp_path):
    paths = write_images(tmp_path, 3)
    frames = drain(open_source(str(tmp_path / "img_0[02].png")))
    assert [f.source for f in frames] == [paths[0], paths[2]]
    single = drain(open_source(paths[1]))
    assert len(single) == 1 and single[0].image.shape == (40, 60, 3)


def test_video_file_frames_come_in_order_without_dropping(tmp_path):
    path = write_video(tmp_path / "clip.avi", frames=12)
    source = open_source(str(path))
    assert isinstance(source, VideoFileSource) and source.fps == pytest.approx(10.0)
    if source.capture.getBackendName() == "FFMPEG":
        assert source.capture.get(cv2.CAP_PROP_N_THREADS) == 1  # decoding stays in the reader thread
    time.sleep(0.2)  # let the decode thread run ahead: the bounded queue must not drop anything
    frames = drain(source)
    source.close()
    assert [f.index for f in frames] == list(range(12))
    red = [int(np.median(f.image[:, :, 2])) for f in frames]
    assert red == sorted(red) and red[-1] > red[0]
    assert all(f.timestamp > 0 and f.monotonic > 0 for f in frames)


def jpeg_starts(data: bytes) -> list:
    """Offsets of the JPEG start markers in an MJPEG file: one per frame."""
    return [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]


def test_an_undecodable_frame_is_skipped_and_the_video_goes_on(tmp_path, caplog):
    data = bytearray(write_video(tmp_path / "clip.avi", frames=24).read_bytes())
    starts = jpeg_starts(data)
    data[starts[10]:starts[11]] = bytes(starts[11] - starts[10])  # frame 10's JPEG zeroed
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="edgedet.capture"):
        source = open_source(str(damaged))
        frames = drain(source)
        source.close()
    indices = [f.index for f in frames]
    assert 10 not in indices and indices[:10] == list(range(10)) and indices[10:15] == [11, 12, 13, 14, 15]
    assert len(frames) >= 21 and source.unreadable == 24 - len(frames)  # each frame counted once
    assert "frame 10 of" in caplog.text and "could not be decoded; skipped" in caplog.text


def test_a_video_cut_short_ends_with_a_warning(tmp_path, caplog):
    long_clip = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(long_clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for k in range(60):
        writer.write(np.full((48, 64, 3), 4 * k, np.uint8))
    writer.release()
    data = long_clip.read_bytes()
    starts = jpeg_starts(data)
    for end, expected in ((starts[16], "ended at frame 16 of the 60 its container announces"),  # most of it gone
                          (starts[50], "frames 50-59 of")):  # the last few announced frames undecodable: skipped
        cut = tmp_path / "cut.avi"
        cut.write_bytes(data[:end])  # the container still announces 60 frames
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edgedet.capture"):
            source = open_source(str(cut))
            frames = drain(source)
            source.close()
        assert [f.index for f in frames] == list(range(len(frames))) and expected in caplog.text
        assert source.unreadable == (0 if len(frames) == 16 else 10)


def test_synthetic_source_moves_and_is_deterministic():
    a, b = SyntheticSource((96, 64)), SyntheticSource((96, 64))
    frames_a = [a.read().image for _ in range(3)]
    frames_b = [b.read().image for _ in range(3)]
    assert frames_a[0].shape == (64, 96, 3)
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b))
    assert not np.array_equal(frames_a[0], frames_a[2])
    assert open_source("synthetic").name == "synthetic"


def test_synthetic_camera_is_a_live_source_of_the_same_animation():
    from edgedet.device.capture import SyntheticCamera

    source = open_source("synthetic:200", size_wh=(96, 64))
    try:
        assert source.live and source.name == "synthetic camera 200 fps"
        frames = [_wait_frame(source) for _ in range(3)]
        assert all(f is not None and f.image.shape == (64, 96, 3) for f in frames)
        indices = [f.index for f in frames]
        assert indices == sorted(set(indices))  # newest frames, in order, none twice
    finally:
        source.close()
    camera, animation = SyntheticCamera(1000.0, (96, 64)), SyntheticSource((96, 64))
    assert all(np.array_equal(camera.read()[1], animation.read().image) for _ in range(3))


class FastReader:
    """A fake device delivering numbered frames as fast as it is read."""

    def __init__(self, fail_after=None):
        self.count = 0
        self.fail_after = fail_after

    def read(self):
        time.sleep(0.002)
        self.count += 1
        if self.fail_after is not None and self.count > self.fail_after:
            return False, None
        return True, np.full((4, 4, 3), self.count % 256, np.uint8)

    def release(self):
        pass


def _wait_until(condition, deadline_s: float = 20.0) -> None:
    """Poll `condition` until it holds; a generous deadline only guards against a hang on a loaded machine."""
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, "condition not reached before the deadline"
        time.sleep(0.01)


def test_live_source_keeps_only_the_newest_frame():
    source = LiveSource("fake", lambda: FastReader(), ReconnectPolicy(0.05, 0.2))
    try:
        first = source.read(timeout=2.0)
        _wait_until(lambda: source.delivered > first.index + 10)  # many frames arrive meanwhile
        second = source.read(timeout=2.0)
        assert second.index > first.index + 5  # no backlog: the stale frames were dropped
        assert source.dropped > 0
        _wait_until(lambda: source.delivered > second.index + 1)
        assert source.read(timeout=2.0).index > second.index
    finally:
        source.close()


def test_live_source_reconnects_with_capped_backoff_and_logs(caplog):
    opened = []

    def opener():
        opened.append(time.perf_counter())
        if len(opened) in (2, 3):  # the device is gone for two attempts
            return None
        return FastReader(fail_after=20)

    with caplog.at_level(logging.WARNING, logger="edgedet.capture"):
        source = LiveSource("flaky", opener, ReconnectPolicy(initial_delay=0.05, max_delay=0.1))
        try:
            deadline = time.perf_counter() + 10
            while source.reconnects < 1 and time.perf_counter() < deadline:
                source.read(timeout=0.2)
            assert source.reconnects >= 1
            assert source.read(timeout=2.0) is not None  # frames flow again after the reconnect
        finally:
            source.close()
    gaps = np.diff(opened[:4])
    assert gaps[1] >= 0.05 and gaps[2] >= 0.1 - 0.01  # delays grow (0.05 -> 0.1 capped)
    assert "stopped delivering frames" in caplog.text and "reconnected" in caplog.text


def test_mjpeg_url_source_reconnects_when_the_server_restarts(caplog):
    synthetic = SyntheticSource((64, 48))
    stop = threading.Event()

    def feed(server):
        while not stop.is_set():
            server.publish(synthetic.read().image)
            time.sleep(0.02)

    server = StreamServer("127.0.0.1", 0, lambda: {})
    port = server.port
    threading.Thread(target=feed, args=(server,), daemon=True).start()
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    with caplog.at_level(logging.WARNING, logger="edgedet.capture"):
        source = open_source(url, open_timeout=3.0, policy=ReconnectPolicy(initial_delay=0.2, max_delay=0.5))
        try:
            assert source.live and _wait_frame(source) is not None
            stop.set()
            server.close()  # the camera goes away
            time.sleep(1.0)
            stop.clear()
            server = StreamServer("127.0.0.1", port, lambda: {})  # ... and comes back on the same address
            threading.Thread(target=feed, args=(server,), daemon=True).start()
            deadline = time.perf_counter() + 20
            while source.reconnects < 1 and time.perf_counter() < deadline:
                source.read(timeout=0.2)
            assert source.reconnects >= 1
            assert _wait_frame(source) is not None
        finally:
            stop.set()
            source.close()
            server.close()
    assert "reconnected" in caplog.text


def _wait_frame(source, seconds=10.0):
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        frame = source.read(timeout=0.5)
        if frame is not None:
            return frame
    return None


@pytest.mark.parametrize("make_source, message", [
    (lambda tmp: str(tmp / "missing.mp4"), "source not found"),
    (lambda tmp: str(tmp), "has no images"),
    (lambda tmp: str(tmp / "*.png"), "no image files match"),
    (lambda tmp: "", "empty source"),
    (lambda tmp: "synthetic:fast", "expected synthetic:FPS"),
    (lambda tmp: "synthetic:0", "expected synthetic:FPS"),
])
def test_bad_sources_name_the_problem(tmp_path, make_source, message):
    with pytest.raises(EdgedetError, match=message):
        open_source(make_source(tmp_path))


def test_undecodable_video_is_named(tmp_path):
    (tmp_path / "clip.mp4").write_text("not a video")
    with pytest.raises(EdgedetError, match="cannot open video .*clip.mp4"):
        open_source(str(tmp_path / "clip.mp4"))


def test_missing_camera_fails_listing_video_devices():
    with pytest.raises(EdgedetError, match=r"cannot open camera 57 .*video devices present: ") as info:
        open_source("57", open_timeout=3.0)
    assert "\n" not in str(info.value)


def test_missing_camera_device_path_is_treated_as_a_camera():
    with pytest.raises(EdgedetError, match=r"cannot open camera /dev/video57; video devices present: "):
        open_source("/dev/video57", open_timeout=3.0)


def test_a_source_that_hangs_while_opening_is_given_up_after_the_open_timeout():
    release = threading.Event()

    def hanging_opener():
        release.wait(30)  # a driver that never answers
        return None

    try:
        with pytest.raises(EdgedetError, match="cannot open source stuck-camera: no answer within 0.3 s"):
            LiveSource("stuck-camera", hanging_opener, open_timeout=0.3)
    finally:
        release.set()


def test_a_stop_while_a_source_is_opening_ends_the_wait_at_once():
    release, stop = threading.Event(), threading.Event()

    def hanging_opener():
        release.wait(30)  # a stream that accepts the connection and never answers
        return None

    threading.Timer(0.2, stop.set).start()  # Ctrl-C during the open
    started = time.monotonic()
    try:
        with pytest.raises(OpenStopped, match="stopped while opening stuck-stream"):
            LiveSource("stuck-stream", hanging_opener, open_timeout=20, stop=stop)
        assert time.monotonic() - started < 2  # not the open timeout, nor its grace
    finally:
        release.set()


def test_a_reader_that_opens_after_the_timeout_is_released():
    answer = threading.Event()

    class LateReader:
        released = threading.Event()

        def read(self):
            return False, None

        def release(self):
            self.released.set()

    def late_opener():
        answer.wait(30)  # the driver answers only after the caller gave up
        return LateReader()

    with pytest.raises(EdgedetError, match="no answer within 0.2 s"):
        LiveSource("slow-camera", late_opener, open_timeout=0.2)
    answer.set()
    assert LateReader.released.wait(20), "the late reader was never released: the camera stays busy"


def test_unreachable_url_fails_naming_it():
    with pytest.raises(EdgedetError, match="cannot open source http://127.0.0.1:9/none.mjpg"):
        open_source("http://127.0.0.1:9/none.mjpg", open_timeout=2.0)


def test_picam_without_picamera2_says_how_to_get_it():
    pytest.importorskip("cv2")
    try:
        import picamera2  # noqa: F401
        pytest.skip("picamera2 is installed here")
    except ImportError:
        pass
    with pytest.raises(EdgedetError, match="picamera2"):
        open_source("picam")


def test_frame_is_a_value():
    frame = Frame(np.zeros((2, 2, 3), np.uint8), 0, 1.0, 2.0, "x")
    with pytest.raises(Exception):
        frame.index = 3
