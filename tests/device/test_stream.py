"""device.stream: MJPEG and status over HTTP on 127.0.0.1, encoding once per frame for any number of viewers, only
while someone watches and at the slowest viewer's rate, never holding up the writer; the --stream sink asks for a
canvas only for frames the encoder will take."""
import json
import socket
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from edgedet.device.capture import Frame
from edgedet.device.detections import Detections
from edgedet.device.errors import EdgedetError
from edgedet.device.latency import StageTimer
from edgedet.device.sinks import FrameResult
from edgedet.device.stream import BOUNDARY, FrameHub, StreamServer, StreamSink, parse_host_port


@pytest.fixture
def server():
    srv = StreamServer("127.0.0.1", 0, lambda: {"fps": 12.5, "stages": {"inference": {"p50": 1, "p90": 2, "p99": 3}},
                                                "detections": [], "model": "toy.onnx", "backend": "onnxruntime",
                                                "threads": 2})
    yield srv
    srv.close()


def frame(k):
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :, 1] = 10 * k
    return image


def feed_until(srv, event, start=0):
    k = start
    while not event.is_set():
        srv.publish(frame(k % 20))
        k += 1
        time.sleep(0.01)


def read_mjpeg_parts(url, count, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        images = []
        while len(images) < count:
            line = response.readline()
            if line.startswith(b"Content-Length:"):
                length = int(line.split(b":")[1])
                response.readline()
                jpeg = response.read(length)
                images.append(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
        return images


@pytest.mark.parametrize("text, expected", [("8080", ("127.0.0.1", 8080)), (":8080", ("127.0.0.1", 8080)),
                                            ("0.0.0.0:9000", ("0.0.0.0", 9000)), ("[::1]:81", ("::1", 81))])
def test_parse_host_port_defaults_to_loopback(text, expected):
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["host:", "abc", "1.2.3.4:99999"])
def test_parse_host_port_rejects_garbage(text):
    with pytest.raises(EdgedetError, match="--stream"):
        parse_host_port(text)


def test_server_binds_loopback_and_serves_status_and_page(server):
    assert server.host == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
    status = json.loads(urllib.request.urlopen(server.url + "status.json", timeout=5).read())
    assert status["fps"] == 12.5 and status["stages"]["inference"]["p99"] == 3
    page = urllib.request.urlopen(server.url, timeout=5).read().decode()
    assert "/stream.mjpg" in page and "/status.json" in page and "p99" in page
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(server.url + "nothing", timeout=5)


def test_mjpeg_stream_and_single_frame(server):
    stop = threading.Event()
    threading.Thread(target=feed_until, args=(server, stop), daemon=True).start()
    try:
        images = read_mjpeg_parts(server.url + "stream.mjpg", 3)
        assert all(img.shape == (48, 64, 3) for img in images)
        jpeg = urllib.request.urlopen(server.url + "frame.jpg", timeout=5).read()
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    finally:
        stop.set()


def test_no_encoding_without_viewers_and_once_per_frame_with_many(server):
    for k in range(5):
        server.publish(frame(k))
    time.sleep(0.3)
    assert server.hub.encoded == 0  # nobody watching: no JPEG work at all
    stop = threading.Event()
    threading.Thread(target=feed_until, args=(server, stop), daemon=True).start()
    results = []
    viewers = [threading.Thread(target=lambda: results.append(read_mjpeg_parts(server.url + "stream.mjpg", 4)))
               for _ in range(6)]
    try:
        for v in viewers:
            v.start()
        for v in viewers:
            v.join(timeout=20)
    finally:
        stop.set()
    assert len(results) == 6
    published = server.hub._raw_seq
    assert server.hub.encoded <= published  # one encode per frame at most, whatever the number of viewers


def test_a_stalled_viewer_does_not_block_publishing(server):
    # a client that connects and never reads: publish must keep returning at once
    import socket

    sock = socket.create_connection((server.host, server.port), timeout=5)
    sock.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
    done = threading.Event()

    def publish_many():
        for k in range(300):
            server.publish(np.full((240, 320, 3), k % 255, np.uint8))
            time.sleep(0.002)
        done.set()

    threading.Thread(target=publish_many, daemon=True).start()
    assert done.wait(30)
    sock.close()


def test_port_in_use_is_reported(server):
    with pytest.raises(EdgedetError, match="cannot listen on 127.0.0.1"):
        StreamServer("127.0.0.1", server.port, dict)


def test_stream_sink_asks_for_a_canvas_only_while_a_viewer_is_connected():
    sink = StreamSink("127.0.0.1", 0, lambda: {"fps": 3.5}, ["circle", "square"])
    masks = np.ones((2, 48, 64), bool)
    detections = Detections(np.array([[1, 2, 30, 40], [5, 5, 9, 9]], np.float32), np.array([0.9, 0.4], np.float32),
                            np.array([1, 0], np.int32), masks)
    result = FrameResult(Frame(frame(0), 0, 0.0, 0.0, "synthetic"), detections)
    try:
        assert not sink.needs_canvas  # nobody watching: the runner draws nothing
        sink.write(result, None)
        assert sink.server.hub._raw_seq == 0  # and nothing was published
        status = json.loads(urllib.request.urlopen(sink.server.url + "status.json", timeout=5).read())
        assert status["fps"] == 3.5 and [d["class_name"] for d in status["detections"]] == ["square", "circle"]
        assert "segmentation" not in status["detections"][0]  # boxes only on the status page
        images = []
        viewer = threading.Thread(target=lambda: images.extend(read_mjpeg_parts(sink.server.url + "stream.mjpg", 1)))
        viewer.start()
        deadline = time.perf_counter() + 10
        while not sink.needs_canvas and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert sink.needs_canvas
        while viewer.is_alive() and time.perf_counter() < deadline:
            sink.write(result, frame(5))
            time.sleep(0.02)
        viewer.join(5)
        assert len(images) == 1 and images[0].shape == (48, 64, 3)
    finally:
        sink.close()
    assert sink.server.hub.closed


# ---- encoding only for viewers, at the slowest viewer's rate, never in the writer's way


class CountingEncoder:
    """A stand-in for FrameHub.encode_jpeg: counts calls, returns `size` bytes of the frame's first green value,
    and with `gate` waits for it."""

    def __init__(self, size=1000, gate=None):
        self.calls, self.size, self.gate = 0, size, gate

    def __call__(self, image):
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        return bytes([image.flat[1]]) * self.size


def wait_until(predicate, seconds=10.0):
    deadline = time.perf_counter() + seconds
    while not predicate() and time.perf_counter() < deadline:
        time.sleep(0.01)
    return predicate()


def test_without_a_viewer_nothing_is_encoded_nor_asked_for(monkeypatch):
    encoder = CountingEncoder()
    monkeypatch.setattr(FrameHub, "encode_jpeg", encoder)
    hub = FrameHub()
    try:
        for k in range(10):
            hub.publish(frame(k))
        time.sleep(0.3)  # room for the encoder thread to run, were it to encode without viewers
        assert encoder.calls == 0 and hub.encoded == 0 and not hub.wants_frame
        viewer = hub.connect()
        assert hub.wants_frame is False  # a frame is pending: the encoder takes it first
        assert hub.next_jpeg(viewer, 5.0) == bytes([frame(9).flat[1]]) * 1000  # the newest frame only
        assert encoder.calls == 1
        hub.disconnect(viewer)
        hub.publish(frame(3))
        time.sleep(0.3)
        assert encoder.calls == 1 and not hub.wants_frame
    finally:
        hub.close()


def test_a_viewer_gets_the_newest_frame_and_is_asked_for_one_frame_at_a_time(monkeypatch):
    encoder = CountingEncoder()
    monkeypatch.setattr(FrameHub, "encode_jpeg", encoder)
    hub = FrameHub()
    try:
        viewer = hub.connect()
        assert hub.wants_frame  # idle, a viewer ready: the runner should draw the next frame
        hub.publish(frame(1))
        assert hub.next_jpeg(viewer, 5.0)[:1] == bytes([frame(1).flat[1]])
        assert not hub.wants_frame  # the viewer is still sending that JPEG
        for k in range(2, 6):
            hub.publish(frame(k))
        time.sleep(0.2)
        assert encoder.calls == 1  # nothing encoded while the only viewer is busy
        assert hub.next_jpeg(viewer, 5.0)[:1] == bytes([frame(5).flat[1]])  # then the newest, none queued
        assert encoder.calls == 2
    finally:
        hub.close()


def read_parts_slowly(url, parts, pause):
    """Read `parts` MJPEG parts through a small receive buffer, pausing between them (a slow viewer)."""
    host, port = url.split("//")[1].strip("/").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect((host, int(port)))
    sock.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
    reader = sock.makefile("rb")
    try:
        got = 0
        while got < parts:
            line = reader.readline()
            if line.startswith(b"Content-Length:"):
                length = int(line.split(b":")[1])
                reader.readline()
                assert len(reader.read(length)) == length
                got += 1
                time.sleep(pause)
        return got
    finally:
        reader.close()
        sock.close()


def test_a_slow_viewer_sets_the_encoding_rate(monkeypatch):
    encoder = CountingEncoder(size=400_000)  # parts far larger than the socket buffers
    monkeypatch.setattr(FrameHub, "encode_jpeg", encoder)
    srv = StreamServer("127.0.0.1", 0, dict)
    stop = threading.Event()
    feeder = threading.Thread(target=feed_until, args=(srv, stop), daemon=True)
    try:
        feeder.start()
        read = read_parts_slowly(srv.url, parts=6, pause=0.15)
        encoded, published = srv.hub.encoded, srv.hub._raw_seq
    finally:
        stop.set()
        srv.close()
    assert read == 6
    assert encoded <= read + 3  # the viewer's rate (plus what the socket buffers hold), not the publisher's
    assert published >= 3 * encoded


def test_write_never_waits_for_a_slow_encoder(monkeypatch):
    gate = threading.Event()
    encoder = CountingEncoder(gate=gate)
    monkeypatch.setattr(FrameHub, "encode_jpeg", encoder)
    sink = StreamSink("127.0.0.1", 0, dict, ["circle"])
    result = FrameResult(Frame(frame(0), 0, 0.0, 0.0, "synthetic"), Detections.empty())
    viewer = sink.server.hub.connect()
    try:
        sink.write(result, frame(1))
        assert wait_until(lambda: encoder.calls == 1)  # the encoder is stuck in its first frame
        writer = threading.Thread(target=lambda: [sink.write(result, frame(k % 20)) for k in range(200)])
        writer.start()
        writer.join(10)
        assert not writer.is_alive() and encoder.calls == 1  # 200 writes went by while the encoder hung
        assert not sink.needs_canvas  # and the runner is told not to draw for it meanwhile
    finally:
        gate.set()
        sink.server.hub.disconnect(viewer)
        sink.close()


def test_each_encode_is_timed_as_the_encode_stage():
    timer = StageTimer()
    srv = StreamServer("127.0.0.1", 0, dict, timer=timer)
    stop = threading.Event()
    threading.Thread(target=feed_until, args=(srv, stop), daemon=True).start()
    try:
        read_mjpeg_parts(srv.url + "stream.mjpg", 3)
    finally:
        stop.set()
        srv.close()
    assert timer.summary()["encode"]["count"] == srv.hub.encoded >= 3
