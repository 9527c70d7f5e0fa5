"""`/healthz` on the stream server: over real HTTP during `edgedet run` on a fake live camera that stalls, is
unplugged and comes back (200 -> 503 -> 200, every field, the stall counted in its hour), the same keys in
/status.json for the status page, and the document and the event sinks' counters on their own."""
import json
import threading
import time
import urllib.error
import urllib.request

from edgedet.cli import main
from edgedet.device.health import HEALTH_KEYS, dropped_events, event_stats, health, health_response
from edgedet.device.sinks import Sink
from tests.device.test_app import free_port
from tests.device.test_backends import make_onnx_model
from tests.device.test_watchdog import fake_camera, wait_for  # noqa: F401 (the fixture)


def get_json(url):
    """(HTTP status, JSON body) of a GET, 5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except (urllib.error.URLError, ConnectionError):
        return None, None


def poll(url, predicate, seconds=30):
    """The first (status, document) of GET `url` that satisfies `predicate`, polling for up to `seconds`."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        code, doc = get_json(url)
        if code is not None and predicate(code, doc):
            return code, doc
        time.sleep(0.02)
    raise AssertionError(f"{url}: no answer as expected within {seconds} s; last {code} {doc}")


def test_healthz_over_http_reports_a_stalled_camera_with_503_and_recovers(fake_camera, tmp_path, capsys):
    fake_camera.wedge_after = {0: 10}  # the camera wedges after 10 frames ...
    port, hook = free_port(), free_port()  # ... and the webhook's server is not there (it only queues)
    args = ["run", "--model", str(make_onnx_model(tmp_path / "toy.onnx")), "--camera", "0", "--max-frames", "40",
            "--stream", f"127.0.0.1:{port}", "--stall-timeout", "0.4", "--webhook", f"http://127.0.0.1:{hook}/e"]
    result = {}
    run = threading.Thread(target=lambda: result.update(code=main(args)), daemon=True)
    run.start()
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        code, doc = poll(url, lambda code, doc: code == 200 and doc["frames"] >= 3 and doc["fps"] > 0, 60)
        assert doc["healthy"] is True and set(doc) == {"healthy", *HEALTH_KEYS}
        assert doc["model"] == "toy.onnx" and doc["source"] == "camera 0" and doc["stall_timeout_s"] == 0.4
        assert doc["uptime_s"] >= 0 and 0 <= doc["last_frame_age_s"] < 0.4  # uptime in 0.1 s: 3 toy frames can be quicker
        assert doc["stalls"] == doc["reconnects"] == doc["inference_hangs"] == doc["failed_frames"] == 0
        assert doc["dropped_events"] == 0 and doc["events"]["webhook"]["delivered"] == 0
        assert doc["hourly"][-1]["hour"] == time.strftime("%Y-%m-%dT%H:00Z", time.gmtime())

        assert wait_for(fake_camera.wedged.is_set, 30)
        fake_camera.plugged = False  # its reopening fails until it is plugged back
        code, doc = poll(url, lambda code, doc: code == 503 and doc["stalls"] == 1)
        assert doc["healthy"] is False and doc["last_frame_age_s"] > 0.4
        assert doc["frames"] >= 3 and doc["hourly"][-1]["stalls"] == 1

        fake_camera.plugged = True
        poll(url, lambda code, doc: code == 200 and doc["reconnects"] == 1)
        status = get_json(f"http://127.0.0.1:{port}/status.json")[1]  # the status page's data has them too
        assert {"uptime_s", "last_frame_age_s", "stalls", "inference_hangs", "hourly", "events"} <= set(status)
    finally:
        fake_camera.plugged = True
        run.join(60)
    assert result["code"] == 0, capsys.readouterr().err


class CountingSink(Sink):
    def __init__(self, stats):
        self._stats = stats

    def write(self, result, canvas):
        pass

    def stats(self):
        return self._stats


class MqttSink(CountingSink):
    pass


class WebhookSink(CountingSink):
    pass


class PlainSink(Sink):
    def write(self, result, canvas):
        pass


def test_event_stats_take_every_sink_with_counters_and_sum_the_drops():
    sinks = [PlainSink(), MqttSink({"delivered": 5, "queued": 1, "dropped": 2, "reconnects": 1}),
             WebhookSink({"delivered": 0, "queued": 0, "dropped": 3, "reconnects": 0}), CountingSink({})]
    stats = event_stats(sinks)
    assert set(stats) == {"mqtt", "webhook"} and stats["mqtt"]["delivered"] == 5
    assert dropped_events(stats) == 5 and dropped_events({}) == 0


def test_health_is_503_once_the_last_frame_is_older_than_the_stall_timeout():
    status = {"last_frame_age_s": 0.5, "stall_timeout_s": 20.0, "fps": 30.0, "frames": 10, "model": "m.tflite",
              "stages": {"inference": {}}, "detections": []}
    code, doc = health(status)
    assert code == 200 and doc == {"healthy": True, "last_frame_age_s": 0.5, "stall_timeout_s": 20.0, "fps": 30.0,
                                   "frames": 10, "model": "m.tflite"}  # the status' other keys stay out
    assert health({**status, "last_frame_age_s": 20.0})[0] == 200
    code, content_type, body = health_response({**status, "last_frame_age_s": 20.5})
    assert code == 503 and content_type == "application/json" and json.loads(body)["healthy"] is False
