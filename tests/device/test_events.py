"""Event outputs (device.events) against real local servers: Debian's mosquitto started by each test on 127.0.0.1 at
a free port, watched by a paho subscriber (delivery, retained counts, online/offline status and the last will, a
broker restart in the middle, a full queue, an unreachable broker at start), a stdlib http.server for webhooks
(failures then success, rejection, a bounded queue), snapshot files, and `edgedet run --track --line --mqtt` end to
end. Network traffic only to 127.0.0.1; backoffs are shortened so that every test takes a second or two."""
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from edgedet.cli import main
from edgedet.device.capture import Frame
from edgedet.device.detections import Detections
from edgedet.device.errors import EdgedetError
from edgedet.device.events import (BoundedQueue, DeliveryPolicy, MqttSink, SnapshotSink, WebhookSink, camera_name,
                                   check_event_options, check_webhook_url, counts_key, parse_mqtt_address,
                                   safe_token)
from edgedet.device.sinks import FrameResult
from edgedet.device.draw import annotate, draw_zones
from edgedet.device.zones import Event, Zone
from tests.device.test_app import free_port, read_jsonl, run_cli, wait_for
from tests.device.test_backends import make_onnx_model

MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)
needs_mosquitto = pytest.mark.skipif(MOSQUITTO is None, reason="Debian's mosquitto is not installed "
                                                               "(apt-get install mosquitto; .ci/run installs it)")
FAST = DeliveryPolicy(queue_size=100, retry_initial=0.05, retry_max=0.2, flush_timeout=2.0)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ------------------------------------------------------------------------------------------ servers and clients


class Broker:
    """mosquitto on 127.0.0.1:`port` with its config, log and persistence (retained messages and persistent
    sessions survive a restart, as on a real installation) in `folder`."""

    def __init__(self, folder, port):
        self.port = port
        self.folder = folder
        self.config = folder / "mosquitto.conf"
        self.config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                               f"persistence_location {folder}/\nlog_dest file {folder}/mosquitto.log\n"
                               "user root\n")  # as root, keep root (the default drops to 'mosquitto')
        self.process = None

    def start(self):
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        assert wait_for(self._accepts, seconds=10, interval=0.02), (self.folder / "mosquitto.log").read_text()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: mosquitto saves its database, then exits
            self.process.wait(timeout=10)
        self.process = None

    def _accepts(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip("Debian's mosquitto is not installed (apt-get install mosquitto; .ci/run installs it)")
    folder = tmp_path / "broker"
    folder.mkdir()
    server = Broker(folder, free_port())
    server.start()
    yield server
    server.stop()


class Subscriber:
    """A paho client subscribed (QoS 1) to edgedet/#, recording (topic, payload text, retain flag). `persistent`:
    a session the broker keeps across a restart, so nothing published while it reconnects is lost to it."""

    def __init__(self, port, name="subscriber", persistent=False):
        import paho.mqtt.client as mqtt

        self.messages = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{name}",
                                  clean_session=not persistent)
        self.client.on_connect = lambda client, *_: client.subscribe("edgedet/#", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda client, userdata, m: self.messages.append(
            (m.topic, m.payload.decode(), bool(m.retain)))
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def payloads(self, topic):
        return [payload for t, payload, _ in list(self.messages) if t == topic]

    def events(self, camera="cam"):
        return [json.loads(p) for p in self.payloads(f"edgedet/{camera}/events")]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribers():
    opened = []

    def subscribe(port, **kwargs):
        opened.append(Subscriber(port, **kwargs))
        return opened[-1]

    yield subscribe
    for subscriber in opened:
        subscriber.close()


@pytest.fixture
def event_log():
    """Records of the edgedet.events logger (its parent does not propagate to pytest's handler)."""
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("edgedet.events")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


class WebhookServer:
    """A local http.server: POST bodies recorded in arrival order; `status(k)` decides the answer to the k-th POST
    (0-based); `gate` (an Event) holds every answer until it is set."""

    def __init__(self, status=lambda k: 200):
        self.bodies, self.status, self.gate = [], status, threading.Event()
        self.gate.set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                k = len(owner.bodies)
                owner.bodies.append((json.loads(body), self.headers["Content-Type"]))
                owner.gate.wait(10)
                self.send_response(owner.status(k))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self):
        return [body for body, _ in list(self.bodies)]

    def close(self):
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_server():
    servers = []

    def start(**kwargs):
        servers.append(WebhookServer(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# ------------------------------------------------------------------------------------------ frames with events


def make_event(k, kind="cross_in", zone="door", frame=None):
    return Event(kind=kind, zone=zone, track_id=k, class_id=0, class_name="person", score=0.9,
                 xyxy=(10.0 + k, 20.0, 30.0 + k, 40.0), frame=k if frame is None else frame, timestamp=1000.0 + k)


def frame_result(index, events=(), counts=None, size_hw=(48, 64)):
    image = np.full((*size_hw, 3), 90, np.uint8)
    detections = Detections(np.array([[4, 4, 30, 30]], np.float32), np.array([0.9], np.float32),
                            np.zeros(1, np.int32))
    return FrameResult(Frame(image, index, 1000.0 + index, time.perf_counter(), "cam"), detections,
                       events=tuple(events), counts=counts)


def write_events(sink, ks, per_frame=1):
    """Write events with track ids `ks`, `per_frame` to a frame."""
    ks = list(ks)
    for start in range(0, len(ks), per_frame):
        chunk = ks[start:start + per_frame]
        sink.write(frame_result(chunk[0], [make_event(k) for k in chunk]), None)


def track_ids(events):
    return [event["track_id"] for event in events]


# ------------------------------------------------------------------------------------------ MQTT


@needs_mosquitto
def test_every_event_is_delivered_once_as_json_with_the_camera(broker, subscribers):
    subscriber = subscribers(broker.port)
    sink = MqttSink(f"127.0.0.1:{broker.port}", "cam", FAST)
    assert wait_for(lambda: sink.stats()["connected"], seconds=10)
    write_events(sink, range(10), per_frame=3)
    assert wait_for(lambda: len(subscriber.events()) == 10, seconds=10), subscriber.messages
    assert subscriber.events() == [{"camera": "cam", **make_event(k).to_dict()} for k in range(10)]
    assert wait_for(lambda: sink.stats()["delivered"] == 10, seconds=5)
    sink.close()
    assert sink.stats() == {"delivered": 10, "queued": 0, "dropped": 0, "reconnects": 0, "failed": 0,
                            "connected": False}


@needs_mosquitto
def test_a_message_the_client_refuses_is_counted_failed_and_the_sender_goes_on(broker, subscribers, monkeypatch):
    subscriber = subscribers(broker.port)
    sink = MqttSink(f"127.0.0.1:{broker.port}", "cam", FAST)
    assert wait_for(lambda: sink.stats()["connected"], seconds=10)
    publish = sink._client.publish

    def refuse_track_1(topic, payload, **kwargs):
        if '"track_id": 1,' in payload:
            raise ValueError("payload refused")
        return publish(topic, payload, **kwargs)

    monkeypatch.setattr(sink._client, "publish", refuse_track_1)
    write_events(sink, range(3))
    assert wait_for(lambda: track_ids(subscriber.events()) == [0, 2], seconds=10), subscriber.messages
    assert wait_for(lambda: sink.stats()["delivered"] == 2, seconds=5)
    assert sink.stats()["failed"] == 1 and sink.stats()["queued"] == 0 and sink._sender.is_alive()
    sink.close()


def zone_counts(inside, dwell):
    """Counts as device.zones reports them: one zone, one line."""
    return {"zones": {"hall": {"inside": {"person": inside}, "entered": {"person": inside}, "dwell_s": dwell}},
            "lines": {"door": {"in": {"person": inside}, "out": {}}}}


@needs_mosquitto
def test_counts_are_retained_and_published_only_when_they_change(broker, subscribers):
    live = subscribers(broker.port, name="live")
    sink = MqttSink(f"127.0.0.1:{broker.port}", "cam", FAST)
    counts = zone_counts(1, {"7": 0.5})
    sink.write(frame_result(0, counts=counts), None)
    assert wait_for(lambda: len(live.payloads("edgedet/cam/counts")) == 1, seconds=10), live.messages
    sink.write(frame_result(1, counts=zone_counts(1, {"7": 1.5})), None)  # only a dwell time grew: no message
    counts["zones"]["hall"]["inside"]["person"] = 2  # the same dict updated in place, as a counter may do
    sink.write(frame_result(2, counts=counts), None)
    assert wait_for(lambda: len(live.payloads("edgedet/cam/counts")) == 2, seconds=10), live.messages
    first, second = (json.loads(p) for p in live.payloads("edgedet/cam/counts"))
    assert (first["frame"], first["counts"]) == (0, zone_counts(1, {"7": 0.5}))
    assert (second["frame"], second["camera"]) == (2, "cam")
    assert second["counts"]["zones"]["hall"]["inside"] == {"person": 2}
    sink.close()
    late = subscribers(broker.port, name="late")  # connects afterwards: the broker hands it the retained state
    assert wait_for(lambda: len(late.messages) == 2, seconds=10), late.messages
    retained = {topic: (payload, retain) for topic, payload, retain in late.messages}
    assert json.loads(retained["edgedet/cam/counts"][0])["frame"] == 2 and retained["edgedet/cam/counts"][1]
    assert retained["edgedet/cam/status"] == ("offline", True)
    assert len(live.payloads("edgedet/cam/counts")) == 2


@needs_mosquitto
def test_status_is_online_while_connected_and_offline_after_a_clean_close(broker, subscribers):
    subscriber = subscribers(broker.port)
    sink = MqttSink(f"127.0.0.1:{broker.port}", "door-1", FAST)
    assert wait_for(lambda: subscriber.payloads("edgedet/door-1/status") == ["online"], seconds=10)
    sink.close()
    assert wait_for(lambda: subscriber.payloads("edgedet/door-1/status") == ["online", "offline"], seconds=10)


PUBLISHER = """
import sys, time
from edgedet.device.events import DeliveryPolicy, MqttSink
sink = MqttSink(sys.argv[1], "cam", DeliveryPolicy(retry_initial=0.05, retry_max=0.2))
while not sink.stats()["connected"]:
    time.sleep(0.01)
print("connected", flush=True)
time.sleep(60)
"""


@needs_mosquitto
def test_the_last_will_says_offline_when_the_publisher_dies_without_closing(broker, subscribers):
    subscriber = subscribers(broker.port)
    process = subprocess.Popen([sys.executable, "-c", PUBLISHER, f"127.0.0.1:{broker.port}"], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "connected"
        assert wait_for(lambda: subscriber.payloads("edgedet/cam/status") == ["online"], seconds=10)
        process.send_signal(signal.SIGKILL)  # no clean disconnect: the broker publishes the will
        process.wait(10)
        assert wait_for(lambda: subscriber.payloads("edgedet/cam/status") == ["online", "offline"], seconds=10)
        assert subscriber.messages[-1] == ("edgedet/cam/status", "offline", False)  # live copy of a retained will
    finally:
        process.kill()
        process.wait(10)


@needs_mosquitto
def test_events_written_while_the_broker_restarts_are_all_delivered_after_reconnect(broker, subscribers):
    subscriber = subscribers(broker.port, persistent=True)
    sink = MqttSink(f"127.0.0.1:{broker.port}", "cam", FAST)
    write_events(sink, range(5))
    assert wait_for(lambda: sink.stats()["delivered"] == 5, seconds=10)
    broker.stop()
    assert wait_for(lambda: not sink.stats()["connected"], seconds=10)
    write_events(sink, range(5, 40), per_frame=5)  # the frame loop goes on: queued meanwhile
    assert sink.stats()["queued"] == 35
    broker.start()
    assert wait_for(lambda: sink.stats()["delivered"] == 40, seconds=15), sink.stats()
    assert wait_for(lambda: set(track_ids(subscriber.events())) == set(range(40)), seconds=15), \
        track_ids(subscriber.events())
    assert sink.stats() == {"delivered": 40, "queued": 0, "dropped": 0, "reconnects": 1, "failed": 0,
                            "connected": True}
    sink.close()


@needs_mosquitto
def test_a_full_queue_drops_the_oldest_events_and_counts_them(broker, subscribers):
    subscriber = subscribers(broker.port, persistent=True)
    sink = MqttSink(f"127.0.0.1:{broker.port}", "cam", DeliveryPolicy(queue_size=5, retry_initial=0.05,
                                                                      retry_max=0.2))
    assert wait_for(lambda: sink.stats()["connected"], seconds=10)
    broker.stop()
    assert wait_for(lambda: not sink.stats()["connected"], seconds=10)
    write_events(sink, range(12))
    assert sink.stats()["dropped"] == 7 and sink.stats()["queued"] == 5
    broker.start()
    assert wait_for(lambda: sorted(set(track_ids(subscriber.events()))) == list(range(7, 12)), seconds=15), \
        track_ids(subscriber.events())
    sink.close()
    assert sink.stats()["delivered"] == 5 and sink.stats()["dropped"] == 7


def test_an_unreachable_broker_at_start_is_a_warning_then_retries_until_it_comes(tmp_path, subscribers, event_log):
    if MOSQUITTO is None:
        pytest.skip("Debian's mosquitto is not installed (apt-get install mosquitto; .ci/run installs it)")
    port = free_port()  # nothing listens there yet
    sink = MqttSink(f"127.0.0.1:{port}", "cam", FAST)
    write_events(sink, range(3))
    assert wait_for(lambda: any("unreachable" in r.getMessage() for r in event_log), seconds=5)
    warning = next(r for r in event_log if "unreachable" in r.getMessage())
    assert warning.levelno == logging.WARNING and f"127.0.0.1:{port}" in warning.getMessage()
    time.sleep(0.5)  # several retries at 0.05-0.2 s: still one warning per outage
    assert sum("unreachable" in r.getMessage() for r in event_log) == 1
    assert sink.stats()["queued"] == 3
    folder = tmp_path / "broker"
    folder.mkdir()
    late = Broker(folder, port)
    late.start()
    try:
        subscriber = subscribers(port, persistent=True)
        assert wait_for(lambda: sink.stats()["delivered"] == 3, seconds=10), sink.stats()
        sink.close()
        assert wait_for(lambda: sorted(track_ids(subscriber.events())) == [0, 1, 2], seconds=10)
    finally:
        late.stop()


@pytest.mark.parametrize("text, expected", [
    ("broker", ("broker", 1883)), ("broker.lan:1884", ("broker.lan", 1884)), ("10.0.0.5:1883", ("10.0.0.5", 1883)),
    ("[::1]:1885", ("::1", 1885)), ("[::1]", ("::1", 1883)), ("::1", ("::1", 1883)),
])
def test_mqtt_addresses(text, expected):
    assert parse_mqtt_address(text) == expected


@pytest.mark.parametrize("text", ["", ":1883", "broker:", "broker:port", "broker:0", "broker:70000"])
def test_bad_mqtt_addresses_name_the_flag(text):
    with pytest.raises(EdgedetError, match="--mqtt expects HOST or HOST:PORT"):
        parse_mqtt_address(text)


@pytest.mark.parametrize("name, source, expected", [
    (None, "0", "camera0"), (None, "synthetic:30", "synthetic"), (None, "synthetic", "synthetic"),
    (None, "/videos/front door.mp4", "front_door"), (None, "rtsp://user:secret@cam.lan:554/stream", "cam_lan"),
    (None, "/dev/video2", "video2"), ("Front Door/#1", "0", "Front_Door_1"), ("garage+", "0", "garage"),
])
def test_camera_names_are_one_topic_level_without_credentials(name, source, expected):
    assert camera_name(name, source) == expected
    assert safe_token(expected) == expected


def test_bounded_queue_drops_the_oldest():
    queue = BoundedQueue(3)
    for k in range(5):
        queue.push(k)
    assert (len(queue), queue.dropped, [queue.pop() for _ in range(3)]) == (3, 2, [2, 3, 4])


# ------------------------------------------------------------------------------------------ webhooks


def test_webhook_retries_failures_with_backoff_then_delivers_every_event_in_order(webhook_server, event_log):
    server = webhook_server(status=lambda k: 503 if k < 3 else 200)  # down for the first three POSTs
    sink = WebhookSink(server.url, "cam", FAST)
    write_events(sink, range(4), per_frame=2)
    assert wait_for(lambda: sink.stats()["delivered"] == 4, seconds=10), sink.stats()
    sink.close()
    # the first event was POSTed four times (three 503s), then each of the others once, in order
    assert track_ids(server.events()) == [0, 0, 0, 0, 1, 2, 3]
    assert server.events()[-1] == {"camera": "cam", **make_event(3).to_dict()}
    assert server.bodies[0][1] == "application/json"
    assert sink.stats() == {"delivered": 4, "queued": 0, "dropped": 0, "reconnects": 1, "rejected": 0, "failures": 3}
    warnings = [r.getMessage() for r in event_log if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HTTP 503" in warnings[0]


def test_webhook_unreachable_server_retries_and_close_gives_up_after_the_flush_timeout():
    port = free_port()  # nothing listens
    policy = DeliveryPolicy(queue_size=10, retry_initial=0.05, retry_max=0.1, flush_timeout=0.5)
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", "cam", policy)
    write_events(sink, range(3))
    assert wait_for(lambda: sink.stats()["failures"] >= 3, seconds=10)
    sink.close()
    assert sink.stats()["delivered"] == 0 and sink.stats()["queued"] == 3


def test_webhook_rejected_event_is_not_retried(webhook_server):
    server = webhook_server(status=lambda k: 400 if k == 1 else 204)
    sink = WebhookSink(server.url, "cam", FAST)
    write_events(sink, range(3))
    assert wait_for(lambda: sink.stats()["delivered"] == 2, seconds=10)
    sink.close()
    assert track_ids(server.events()) == [0, 1, 2]
    assert (sink.stats()["rejected"], sink.stats()["failures"]) == (1, 0)


def test_webhook_worker_survives_an_event_that_raises_and_delivers_the_rest(webhook_server, monkeypatch):
    server = webhook_server()
    sink = WebhookSink(server.url, "cam", FAST)
    post = sink._post
    calls = []

    def post_failing_once(payload):
        calls.append(payload)
        if len(calls) == 1:
            raise ValueError("not a network error")
        return post(payload)

    monkeypatch.setattr(sink, "_post", post_failing_once)
    write_events(sink, range(3))
    assert wait_for(lambda: sink.stats()["delivered"] == 2, seconds=10)
    sink.close()
    assert track_ids(server.events()) == [1, 2]
    assert sink.stats()["rejected"] == 1


def test_webhook_queue_is_bounded_while_the_server_hangs_and_the_writer_never_waits(webhook_server):
    server = webhook_server()
    server.gate.clear()  # the server holds its answer: the worker waits inside its first POST
    sink = WebhookSink(server.url, "cam", DeliveryPolicy(queue_size=4, retry_initial=0.05, flush_timeout=5.0))
    write_events(sink, [0])
    assert wait_for(lambda: len(server.bodies) == 1, seconds=10)
    write_events(sink, range(1, 11))  # returns at once, queued: were it waiting on the server, it would have
    # waited out the gate (10 s) and these counters would show deliveries
    assert sink.stats() == {"delivered": 0, "queued": 5, "dropped": 6, "reconnects": 0, "rejected": 0,
                            "failures": 0}
    server.gate.set()
    assert wait_for(lambda: sink.stats()["delivered"] == 5, seconds=10)
    sink.close()
    assert track_ids(server.events()) == [0, 7, 8, 9, 10]  # the oldest waiting events were dropped


@pytest.mark.parametrize("url", ["", "example.com/hook", "ftp://example.com/hook", "http://", "http://host:port/x",
                                 "http://host:99999/x"])
def test_bad_webhook_urls_name_the_flag(url):
    with pytest.raises(EdgedetError, match="--webhook expects an http:// or https:// URL"):
        check_webhook_url(url)


# ------------------------------------------------------------------------------------------ snapshots


def test_a_snapshot_per_event_named_by_frame_kind_zone_and_track(tmp_path):
    sink = SnapshotSink(str(tmp_path / "snaps"), ["person"])
    sink.write(frame_result(0), None)  # no events: no file
    sink.write(frame_result(7, [make_event(3, "enter", "drive way", frame=7), make_event(4, "cross_out", "door",
                                                                                         frame=7)]), None)
    canvas = np.full((48, 64, 3), 250, np.uint8)  # a canvas another sink had drawn: saved as it is
    sink.write(frame_result(8, [make_event(5, "leave", "door", frame=8)]), canvas)
    sink.close()
    files = sorted(p.name for p in (tmp_path / "snaps").iterdir())
    assert files == ["000007_cross_out_door_4.jpg", "000007_enter_drive_way_3.jpg", "000008_leave_door_5.jpg"]
    drawn = cv2.imread(str(tmp_path / "snaps" / "000007_enter_drive_way_3.jpg"))
    assert drawn.shape == (48, 64, 3)
    assert np.abs(drawn.astype(int) - 90).max() > 50  # the detection's box was drawn on the frame
    assert np.abs(cv2.imread(str(tmp_path / "snaps" / "000008_leave_door_5.jpg")).astype(int) - 250).max() < 8
    assert sink.stats() == {"delivered": 3, "queued": 0, "dropped": 0, "failed": 0}


def test_snapshot_backlog_is_bounded_and_drops_the_oldest_frames(tmp_path, monkeypatch):
    sink = SnapshotSink(str(tmp_path / "snaps"), ["person"], backlog=2)
    gate, save = threading.Event(), sink._save
    monkeypatch.setattr(sink, "_save", lambda job: gate.wait(10) and save(job))  # a slow disk
    for index in range(6):
        sink.write(frame_result(index, [make_event(index, frame=index), make_event(index, "enter", frame=index)]),
                   None)
        if index == 0:
            assert wait_for(lambda: sink.stats()["queued"] == 1 and not sink._jobs, seconds=5)  # worker holds it
    assert sink.stats()["dropped"] == 6  # 3 frames of 2 events: counted in events, as the other event sinks count
    gate.set()
    sink.close()
    assert sorted({p.name[:6] for p in (tmp_path / "snaps").iterdir()}) == ["000000", "000004", "000005"]


def test_a_snapshot_that_raises_is_counted_failed_and_the_worker_goes_on(tmp_path, monkeypatch):
    sink = SnapshotSink(str(tmp_path / "snaps"), ["person"])
    save = sink._save

    def fail_frame_1(job):
        if job.names[0].startswith("000001"):
            raise MemoryError("no memory for the JPEG")
        return save(job)

    monkeypatch.setattr(sink, "_save", fail_frame_1)
    for index in range(3):
        sink.write(frame_result(index, [make_event(index, frame=index)]), None)
    sink.close()
    assert sorted(p.name[:6] for p in (tmp_path / "snaps").iterdir()) == ["000000", "000002"]
    assert sink.stats() == {"delivered": 2, "queued": 0, "dropped": 0, "failed": 1}


def test_a_snapshot_drawn_by_the_sink_shows_track_ids_and_zones(tmp_path):
    plain = SnapshotSink(str(tmp_path / "plain"), ["person"])
    drawn = SnapshotSink(str(tmp_path / "drawn"), ["person"], zones=[Zone.parse("left:0,0,0.5,0,0.5,1,0,1")])
    result = frame_result(3, [make_event(7, "enter", "left", frame=3)], size_hw=(120, 160))
    tracked = replace(result, detections=Detections(result.detections.xyxy, result.detections.scores,
                                                    result.detections.class_ids, tracker_ids=[7]))
    for sink in (plain, drawn):
        sink.write(result if sink is plain else tracked, None)
        sink.close()
    plain_image = cv2.imread(str(tmp_path / "plain" / "000003_enter_left_7.jpg")).astype(int)
    drawn_image = cv2.imread(str(tmp_path / "drawn" / "000003_enter_left_7.jpg")).astype(int)
    expected = annotate(result.frame.image, tracked.detections, ["person"], track_ids=np.array([7]))
    draw_zones(expected, [Zone.parse("left:0,0,0.5,0,0.5,1,0,1").resolved((160, 120))])
    to_expected, to_plain = np.abs(drawn_image - expected).mean(), np.abs(drawn_image - plain_image).mean()
    assert to_expected < to_plain / 3  # the id and the zone were drawn (up to JPEG noise), not just the boxes


def test_snapshot_folder_that_cannot_be_created_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgedetError, match="--snapshot: cannot create folder"):
        SnapshotSink(str(tmp_path / "file" / "snaps"), ["person"])


# ------------------------------------------------------------------------------------------ edgedet run


@pytest.mark.parametrize("flags, message", [
    (["--webhook", "ftp://example.com"], "--webhook expects an http:// or https:// URL"),
    (["--mqtt", "broker:port"], "--mqtt expects HOST or HOST:PORT"),
    (["--event-queue", "0"], "--event-queue must be >= 1"),
    (["--camera-name", "///"], "--camera-name needs at least one letter or digit"),
])
def test_bad_event_flags_give_one_line_error_and_exit_2(tmp_path, capsys, flags, message):
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 1, *flags], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_run_with_an_unreachable_broker_warns_and_goes_on(tmp_path, capsys):
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 3, "--json", tmp_path / "out.jsonl", "--mqtt",
                              f"127.0.0.1:{free_port()}"], capsys)
    assert code == 0, err
    assert "broker unreachable; retrying" in err and len(read_jsonl(tmp_path / "out.jsonl")) == 3


@needs_mosquitto
def test_run_with_track_zone_and_lines_sends_every_event_over_mqtt_webhook_and_snapshots(
        broker, subscribers, webhook_server, tmp_path, capsys):
    subscriber, server = subscribers(broker.port), webhook_server()
    # the toy model's big boxes jitter: their bottom centres cross these two lines and sit in the left half
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 40, "--track", "--zone", "left:0,0,0.5,0,0.5,1,0,1",
                              "--line", "upper:0,40,640,40", "--line", "lower:0,70,640,70",
                              "--mqtt", f"127.0.0.1:{broker.port}", "--camera-name", "Front Door",
                              "--webhook", server.url, "--snapshot", tmp_path / "snaps",
                              "--json", tmp_path / "out.jsonl"], capsys)
    assert code == 0, err
    lines = read_jsonl(tmp_path / "out.jsonl")
    generated = [event for line in lines for event in line["events"]]
    assert len(generated) >= 3 and {e["kind"] for e in generated} >= {"enter", "cross_in"}
    expected = [{"camera": "Front_Door", **event} for event in generated]
    assert wait_for(lambda: len(subscriber.events("Front_Door")) == len(expected), seconds=10)
    assert subscriber.events("Front_Door") == expected  # every event, once, in order
    assert server.events() == expected
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == sorted(
        f"{e['frame']:06d}_{e['kind']}_{e['zone']}_{e['track_id']}.jpg" for e in generated)
    counts = [json.loads(p) for p in subscriber.payloads("edgedet/Front_Door/counts")]
    assert counts and counts_key(counts[-1]["counts"]) == counts_key(lines[-1]["counts"])
    assert subscriber.payloads("edgedet/Front_Door/status") == ["online", "offline"]
    assert f"{len(generated)} events delivered, 0 dropped" in err
    assert "'Front Door' is published as 'Front_Door'" in err and "gets none" not in err


def test_event_outputs_without_zones_or_lines_are_warned_about(webhook_server, tmp_path, capsys):
    server = webhook_server()
    code, out, err = run_cli(["--model", make_onnx_model(tmp_path / "toy.onnx"), "--source", "synthetic",
                              "--max-frames", 3, "--webhook", server.url, "--snapshot", tmp_path / "snaps"], capsys)
    assert code == 0, err
    assert "--webhook is written on zone and line events only: without --zone or --line it gets none" in err
    assert "--snapshot is written on zone and line events only" in err


def test_mqtt_with_paho_1_names_the_version_to_install(monkeypatch):
    paho, package, client = (types.ModuleType(name) for name in ("paho", "paho.mqtt", "paho.mqtt.client"))
    client.Client = object  # paho-mqtt 1.6: a client, but no CallbackAPIVersion
    paho.mqtt, package.client = package, client
    for module in (paho, package, client):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    with pytest.raises(EdgedetError, match=r"pip install 'paho-mqtt>=2'\) \(paho-mqtt 1.x found\)"):
        check_event_options("127.0.0.1", None, None, "synthetic")


def test_mqtt_without_paho_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)  # as if paho-mqtt were not installed
    with pytest.raises(EdgedetError, match=r"--mqtt needs paho-mqtt: pip install 'edgedet\[events\]'"):
        check_event_options("127.0.0.1", None, None, "synthetic")


def test_run_help_lists_the_event_flags(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for flag in ("--mqtt", "--webhook", "--snapshot", "--camera-name", "--event-queue"):
        assert flag in text
