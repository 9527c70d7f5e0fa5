"""Event outputs of `edgedet run`: `--mqtt`, `--webhook` and `--snapshot`, fed the zone and line events of each frame.

Each is a `Sink` (device.sinks) whose `write` only queues: network and disk work runs in threads of its own, so a
slow or absent broker, web server or disk never blocks the frame loop. Queues are bounded (`--event-queue` events
for MQTT and webhooks, SNAPSHOT_BACKLOG frames for snapshots); when one is full the OLDEST waiting item is dropped
and counted, since the newest says most about the scene now.

    MqttSink      --mqtt HOST[:PORT]  topics under edgedet/<camera>/ (paho-mqtt, the `events` extra):
                      events   one JSON message per event, QoS 1
                      counts   the zone/line counts, retained, published when they change (dwell times alone
                               growing is no change)
                      status   "online" (retained) on connect; "offline" as the last will and on a clean close
    WebhookSink   --webhook URL       an HTTP POST of each event's JSON (urllib), retried with backoff
    SnapshotSink  --snapshot DIR      a JPEG of the annotated frame per event: <frame>_<kind>_<zone>_<track>.jpg

Event payload (MQTT `events` and webhook body), `Event.to_dict()` plus the camera:
    {"camera": "door", "kind": "cross_in", "zone": "doorway", "track_id": 7, "class_id": 0, "class_name": "person",
     "score": 0.87, "xyxy": [x1, y1, x2, y2], "frame": 1234, "timestamp": 1732412345.12}
Counts payload (MQTT `counts`), "counts" as device.zones reports them:
    {"camera": "door", "frame": 1234, "timestamp": 1732412345.12,
     "counts": {"zones": {"hall": {"inside": {"person": 1}, "entered": {"person": 3}, "dwell_s": {"7": 2.5}}},
                "lines": {"doorway": {"in": {"person": 2}, "out": {"person": 1}}}}}

Each event sink's `stats()` gives its counters (the health endpoint reads them): delivered, queued (waiting or
awaiting acknowledgement), dropped (queue overflow), and for MQTT and webhooks reconnects (times delivery resumed
after the broker or server was lost).
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Deque, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import cv2
import numpy as np

from .detections import Detections
from .draw import annotate, draw_zones
from .errors import EdgedetError
from .output_paths import make_output_folder
from .sinks import FrameResult, Sink
from .zones import Line, Zone

log = logging.getLogger("edgedet.events")
DEFAULT_EVENT_QUEUE = 1000  # --event-queue: events waiting per sink at most
MQTT_PORT = 1883  # the broker port when --mqtt names only a host
MQTT_WINDOW = 20  # events handed to the MQTT client and not yet acknowledged (PUBACK), at most
SNAPSHOT_BACKLOG = 16  # frames waiting for their JPEG at most (each holds its image: about 1 MB at 640x480)
PAHO_HINT = "--mqtt needs paho-mqtt: pip install 'edgedet[events]' (or pip install 'paho-mqtt>=2')"
RETRY_HTTP_CODES = (408, 425, 429)  # client errors worth retrying (timeouts, rate limits); 5xx always are


@dataclass(frozen=True)
class DeliveryPolicy:
    """How an event sink queues and retries."""

    queue_size: int = DEFAULT_EVENT_QUEUE  # events waiting at most; when full the oldest is dropped (counted)
    retry_initial: float = 1.0  # seconds before the first reconnect / retry; doubles after each failure
    retry_max: float = 30.0  # cap of that backoff, seconds
    flush_timeout: float = 2.0  # seconds `close` waits for queued events to go out before giving up on them


class BoundedQueue:
    """FIFO of at most `size` items; pushing onto a full queue drops the oldest item and counts it in `dropped`.
    Not locked: each sink guards its queue with its own condition."""

    def __init__(self, size: int):
        self.size = size  # items at most
        self.dropped = 0  # items dropped because the queue was full
        self._items: Deque = deque()

    def push(self, item):
        """Append `item`; the item dropped to make room, or None."""
        dropped = None
        if len(self._items) >= self.size:
            dropped = self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        return dropped

    def pop(self):
        """The oldest item (the queue must not be empty)."""
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


# ---- names, addresses, payloads


def safe_token(text: str) -> str:
    """`text` as one MQTT topic level or file name part: runs of characters other than letters, digits, '-' and
    '_' become one '_' (so no '/', '+', '#' or '.' is left)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(text)).strip("_")


def camera_name(name: Optional[str], source: str) -> str:
    """The camera's name in topics and payloads: --camera-name sanitised, or one made from the source ("0" ->
    "camera0", "synthetic:30" -> "synthetic", a file -> its stem, a URL -> its host, never its credentials)."""
    if name is not None:
        token = safe_token(name)
        if not token:
            raise EdgedetError(f"--camera-name needs at least one letter or digit, got {name!r}")
        return token
    text = str(source)
    if text.isdigit():
        return f"camera{text}"
    if "://" in text:
        try:
            host = urlsplit(text).hostname or ""
        except ValueError as error:  # "http://[::1": an unclosed IPv6 bracket
            raise EdgedetError(f"--source {text}: not a valid URL ({error})") from None
        return safe_token(host) or "camera"
    return safe_token(text.partition(":")[0] if text.startswith("synthetic") else Path(text).stem) or "camera"


def parse_mqtt_address(text: str) -> Tuple[str, int]:
    """"broker", "broker:1883", "192.168.1.5:1884", "[::1]:1883" -> (host, port); port 1883 when not given."""
    text = str(text).strip()
    host, port = text, str(MQTT_PORT)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (rest or str(MQTT_PORT))
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise EdgedetError(f"--mqtt expects HOST or HOST:PORT (port 1..65535), got {text!r}")
    return host, int(port)


def check_webhook_url(url: str) -> str:
    """`url` if it is an http:// or https:// URL with a host (and a valid port), else an EdgedetError."""
    try:
        parts = urlsplit(str(url))
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        valid = False
    if not valid:
        raise EdgedetError(f"--webhook expects an http:// or https:// URL with a host, e.g. "
                           f"http://192.168.1.5:8123/api/webhook/edgedet, got {url!r}")
    return str(url)


def check_event_options(mqtt: Optional[str], webhook: Optional[str], camera: Optional[str], source: str) -> None:
    """Validate the event flags before the (slow) model load: an EdgedetError names a bad one, or a missing
    paho-mqtt."""
    if mqtt:
        parse_mqtt_address(mqtt)
        import_paho()
    if webhook:
        check_webhook_url(webhook)
    name = camera_name(camera, source)
    if camera is not None and name != camera:  # a subscriber must know the topic it is published under
        log.warning("--camera-name %r is published as %r (letters, digits, '-' and '_' only)", camera, name)


def event_payload(event, camera: str) -> str:
    """One event (device.zones `Event`) as the JSON text of the MQTT `events` topic and the webhook body."""
    return json.dumps({"camera": camera, **event.to_dict()})


def counts_payload(counts: dict, result: FrameResult, camera: str) -> str:
    """The zone/line counts after `result`'s frame as the JSON text of the retained MQTT `counts` topic."""
    frame = result.frame
    return json.dumps({"camera": camera, "frame": int(frame.index), "timestamp": round(frame.timestamp, 6),
                       "counts": counts})


def counts_key(counts: dict) -> str:
    """What makes counts "changed" for the retained MQTT message: everything but the dwell times, which grow every
    frame while anyone is inside a zone. As JSON text, since a counter may update one dict in place."""
    def without_dwell(value):
        if isinstance(value, dict):
            return {key: without_dwell(item) for key, item in value.items() if key != "dwell_s"}
        return value

    return json.dumps(without_dwell(counts), sort_keys=True)


def import_paho():
    """paho.mqtt.client (2.x), or an EdgedetError with the install hint."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise EdgedetError(PAHO_HINT) from None
    if not hasattr(mqtt, "CallbackAPIVersion"):  # 1.x (Raspberry Pi OS ships 1.6): other callback signatures
        raise EdgedetError(PAHO_HINT + " (paho-mqtt 1.x found)")
    return mqtt


# ---- MQTT


@dataclass(frozen=True)
class MqttTopics:
    """The topics of one camera."""

    events: str  # one JSON message per event, QoS 1
    counts: str  # the latest counts, retained
    status: str  # "online" / "offline", retained

    @classmethod
    def of(cls, camera: str) -> MqttTopics:
        base = f"edgedet/{camera}"
        return cls(f"{base}/events", f"{base}/counts", f"{base}/status")


class MqttSink(Sink):
    """--mqtt HOST[:PORT]: events, counts and status over MQTT (module docstring).

    Three threads share the work: the frame loop's `write` only queues JSON text; a sender thread hands queued
    events to the client while it is connected, at most MQTT_WINDOW awaiting acknowledgement; paho's network loop
    (`loop_start`) connects, reconnects with doubling delays (`reconnect_delay_set`) and re-sends unacknowledged
    messages after a reconnect. An event counts as delivered when the broker acknowledges it (PUBACK). A broker
    that cannot be reached, at start or later, is a warning: events queue meanwhile and go out after reconnect."""

    def __init__(self, address: str, camera: str, policy: DeliveryPolicy = DeliveryPolicy(), keepalive: int = 30):
        mqtt = import_paho()
        self.host, self.port = parse_mqtt_address(address)
        self.camera = camera  # sanitised camera name (topic level)
        self.topics = MqttTopics.of(camera)
        self.policy = policy
        self.delivered = 0  # events acknowledged by the broker
        self.reconnects = 0  # connections made after the first one
        self.failed = 0  # messages the client refused to publish (an exception; logged, not retried)
        self._cond = threading.Condition()  # guards everything below that both threads touch
        self._pending = BoundedQueue(policy.queue_size)  # event JSON texts not yet handed to the client
        self._events_in_flight = 0  # handed to the client, not yet acknowledged
        self._acks: List[int] = []  # message ids acknowledged, settled by the sender thread
        self._counts: Optional[str] = None  # newest counts payload
        self._counts_published: Optional[str] = None  # the counts payload the broker holds
        self._counts_busy = False  # a counts message awaits its acknowledgement
        self._connected = self._ever_connected = self._warned = self._closing = self._stop_sending = False
        self._last_counts: Optional[str] = None  # frame-loop side: `counts_key` of the last counts queued
        self._in_flight: Dict[int, Tuple[str, str]] = {}  # sender thread only: mid -> ("event" | "counts", payload)
        self._client = self._make_client(mqtt, keepalive)
        self._sender = threading.Thread(target=self._send_loop, name="edgedet-mqtt-send", daemon=True)
        self._sender.start()
        self._client.connect_async(self.host, self.port, keepalive)
        self._client.loop_start()

    def _make_client(self, mqtt, keepalive: int):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgedet-{self.camera}-{os.getpid()}")
        client.will_set(self.topics.status, "offline", qos=1, retain=True)
        client.reconnect_delay_set(self.policy.retry_initial, self.policy.retry_max)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_connect_fail, client.on_publish = self._on_connect_fail, self._on_publish
        return client

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ---- the frame loop's side

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        events = [event_payload(event, self.camera) for event in result.events]
        counts = None
        if result.counts is not None:
            text = counts_key(result.counts)
            if text != self._last_counts:
                self._last_counts = text
                counts = counts_payload(result.counts, result, self.camera)
        if not events and counts is None:
            return
        with self._cond:
            for payload in events:
                self._pending.push(payload)
            if counts is not None:
                self._counts = counts
            self._cond.notify_all()

    def stats(self) -> dict:
        """Counters for the health endpoint: delivered, queued, dropped, reconnects, failed, connected."""
        with self._cond:
            return {"delivered": self.delivered, "queued": len(self._pending) + self._events_in_flight,
                    "dropped": self._pending.dropped, "reconnects": self.reconnects, "failed": self.failed,
                    "connected": self._connected}

    def close(self) -> None:
        """Wait up to policy.flush_timeout for queued events, publish "offline", disconnect cleanly."""
        with self._cond:
            self._closing = True
            self._cond.wait_for(self._flushed, timeout=self.policy.flush_timeout)
            self._stop_sending = True
            self._cond.notify_all()
            connected = self._connected
        self._sender.join()
        if connected:
            self._publish_and_wait(self.topics.status, "offline")
        self._client.disconnect()
        self._client.loop_stop()
        stats = self.stats()
        if stats["queued"]:
            log.warning("--mqtt %s: %d events not delivered at exit", self.address, stats["queued"])
        log.info("--mqtt %s: %d events delivered, %d dropped (queue full), %d reconnects", self.address,
                 stats["delivered"], stats["dropped"], stats["reconnects"])

    def _flushed(self) -> bool:
        return not self._pending and self._events_in_flight == 0 and not self._counts_waiting()

    def _publish_and_wait(self, topic: str, payload: str, timeout: float = 1.0) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=True)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as error:  # the connection went away meanwhile: the will covers it
            log.debug("--mqtt %s: %s not confirmed: %s", self.address, payload, error)

    # ---- the sender thread

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._has_work, timeout=0.5)
                self._settle_acks()
                if self._stop_sending:
                    return
                events, counts = self._take_batch()
            for payload in events:
                self._send("event", self.topics.events, payload, retain=False)
            if counts is not None:
                self._send("counts", self.topics.counts, counts, retain=True)

    def _has_work(self) -> bool:
        return self._stop_sending or bool(self._acks) or (self._connected and (
            (bool(self._pending) and self._events_in_flight < MQTT_WINDOW) or self._counts_waiting()))

    def _counts_waiting(self) -> bool:
        return not self._counts_busy and self._counts is not None and self._counts != self._counts_published

    def _take_batch(self) -> Tuple[List[str], Optional[str]]:
        """(events to hand to the client now, counts to publish or None), counted as in flight (lock held)."""
        if not self._connected:
            return [], None
        events = [self._pending.pop() for _ in range(min(len(self._pending), MQTT_WINDOW - self._events_in_flight))]
        self._events_in_flight += len(events)
        counts = self._counts if self._counts_waiting() else None
        if counts is not None:
            self._counts_busy = True  # one counts message at a time: a newer one waits for its acknowledgement
        return events, counts

    def _send(self, kind: str, topic: str, payload: str, retain: bool) -> None:
        # Unconnected by now, paho keeps the message and sends it after reconnecting, so it stays in flight
        try:
            info = self._client.publish(topic, payload, qos=1, retain=retain)
        except Exception as error:  # one bad message must not end the sender thread while write() keeps queueing
            log.warning("--mqtt %s: publishing %s failed: %s: %s", self.address, kind, type(error).__name__, error)
            self._settle_failed(kind, payload)
            return
        self._in_flight[info.mid] = (kind, payload)

    def _settle_failed(self, kind: str, payload: str) -> None:
        """A message the client refused: counted as failed, not retried (the same message would fail again)."""
        with self._cond:
            self.failed += 1
            if kind == "event":
                self._events_in_flight -= 1
            else:
                self._counts_busy, self._counts_published = False, payload
            self._cond.notify_all()

    def _settle_acks(self) -> None:
        """Count the acknowledged messages (lock held); only this thread records message ids, and it records each
        right after publishing, before it next settles, so an early acknowledgement is never missed."""
        for mid in self._acks:
            kind, payload = self._in_flight.pop(mid, (None, None))  # None: a status message
            if kind == "event":
                self.delivered += 1
                self._events_in_flight -= 1
            elif kind == "counts":
                self._counts_busy = False
                self._counts_published = payload
        self._acks.clear()
        self._cond.notify_all()  # `close` may be waiting for the queue to empty

    # ---- paho's network thread (callbacks never call into paho while holding the lock, nor the reverse)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("--mqtt %s: the broker refused the connection: %s; retrying", self.address, reason_code)
            return
        client.publish(self.topics.status, "online", qos=1, retain=True)
        with self._cond:
            if self._ever_connected:
                self.reconnects += 1
            recovered = self._warned
            self._ever_connected, self._connected, self._warned = True, True, False
            self._counts_published = None  # a restarted broker may have lost the retained counts
            queued = len(self._pending) + self._events_in_flight
            self._cond.notify_all()
        if recovered:
            log.info("--mqtt %s: connected; sending %d queued events", self.address, queued)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self._connected = False
            if self._closing or self._warned:
                return
            self._warned = True
        log.warning("--mqtt %s: connection lost (%s); reconnecting with backoff, events queue meanwhile (at most "
                    "%d, oldest dropped first)", self.address, reason_code, self.policy.queue_size)

    def _on_connect_fail(self, client, userdata) -> None:
        with self._cond:
            if self._warned:
                return
            self._warned = True
        log.warning("--mqtt %s: broker unreachable; retrying with backoff (up to %g s apart), events queue "
                    "meanwhile (at most %d, oldest dropped first)", self.address, self.policy.retry_max,
                    self.policy.queue_size)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            self._acks.append(mid)
            self._cond.notify_all()


# ---- webhooks


class WebhookSink(Sink):
    """--webhook URL: each event's JSON (the MQTT `events` payload) POSTed from a worker thread, in order.

    A failed POST (no connection, timeout, HTTP 5xx, 408/425/429) is retried with doubling delays while later
    events wait in the bounded queue; any other HTTP error rejects that one event (logged, counted in
    `rejected`), since sending it again would fail the same way."""

    def __init__(self, url: str, camera: str, policy: DeliveryPolicy = DeliveryPolicy(), timeout: float = 5.0):
        self.url = check_webhook_url(url)
        self.camera = camera  # sanitised camera name, in every payload
        self.policy = policy
        self.timeout = timeout  # seconds per POST
        self.delivered = 0  # events the server accepted (2xx)
        self.rejected = 0  # events the server refused for good (4xx)
        self.failures = 0  # failed attempts, each followed by a retry
        self.reconnects = 0  # times delivery resumed after failed attempts
        self._cond = threading.Condition()
        self._pending = BoundedQueue(policy.queue_size)  # event JSON texts waiting
        self._posting = False  # an event is being posted or retried
        self._closing = False
        self._give_up = threading.Event()  # set by `close` after flush_timeout: abandon what is left
        self._worker = threading.Thread(target=self._post_loop, name="edgedet-webhook", daemon=True)
        self._worker.start()

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        if not result.events:
            return
        with self._cond:
            for event in result.events:
                self._pending.push(event_payload(event, self.camera))
            self._cond.notify_all()

    def stats(self) -> dict:
        """Counters for the health endpoint: delivered, queued, dropped, reconnects, rejected, failures."""
        with self._cond:
            return {"delivered": self.delivered, "queued": len(self._pending) + int(self._posting),
                    "dropped": self._pending.dropped, "reconnects": self.reconnects, "rejected": self.rejected,
                    "failures": self.failures}

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._worker.join(self.policy.flush_timeout)
        self._give_up.set()
        self._worker.join()
        stats = self.stats()
        if stats["queued"]:
            log.warning("--webhook %s: %d events not delivered at exit", self.url, stats["queued"])
        log.info("--webhook %s: %d events delivered, %d dropped (queue full), %d rejected", self.url,
                 stats["delivered"], stats["dropped"], stats["rejected"])

    def _post_loop(self) -> None:
        while True:
            payload = self._next_payload()
            if payload is None:
                return
            try:
                delivered = self._deliver(payload)
            except Exception as error:  # not a network error: one bad event must not end the worker
                log.warning("--webhook %s: an event failed: %s: %s; not retried", self.url, type(error).__name__, error)
                with self._cond:
                    self.rejected += 1
                delivered = True
            if not delivered:
                return  # closing: an event given up on stays counted as queued (not delivered)
            with self._cond:
                self._posting = False

    def _next_payload(self) -> Optional[str]:
        """The oldest waiting event (taken off the queue), or None once closing and nothing is left to send."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._closing)
            if not self._pending or self._give_up.is_set():
                return None
            self._posting = True
            return self._pending.pop()

    def _deliver(self, payload: str) -> bool:
        """POST one event until it is accepted or rejected (True), or `close` gives up (False); retries back off."""
        from urllib.error import HTTPError

        delay, failed = self.policy.retry_initial, 0
        while True:
            error = self._post(payload)
            if error is None or isinstance(error, HTTPError) and not _retryable(error.code):
                self._record_outcome(error, failed)
                return True
            failed += 1
            with self._cond:
                self.failures += 1
            if failed == 1:
                log.warning("--webhook %s: POST failed (%s); retrying with backoff, events queue meanwhile (at most "
                            "%d, oldest dropped first)", self.url, _reason(error), self.policy.queue_size)
            if self._give_up.wait(delay):
                return False
            delay = min(delay * 2, self.policy.retry_max)

    def _post(self, payload: str) -> Optional[Exception]:
        """None when the server accepted the POST, else the error."""
        import http.client  # the HTTP client stack (~30 ms) loads only for --webhook
        import urllib.request

        request = urllib.request.Request(self.url, data=payload.encode(), method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "edgedet"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
            return None
        except (OSError, http.client.HTTPException) as error:  # URLError and HTTPError are OSErrors
            return error

    def _record_outcome(self, error: Optional[Exception], failed: int) -> None:
        with self._cond:
            if error is None:
                self.delivered += 1
            else:
                self.rejected += 1
            if failed:
                self.reconnects += 1
        if error is not None:
            log.warning("--webhook %s: the server rejected an event (%s); not retried", self.url, _reason(error))
        elif failed:
            log.info("--webhook %s: delivering again after %d failed attempts", self.url, failed)


def _retryable(code: int) -> bool:
    return code >= 500 or code in RETRY_HTTP_CODES


def _reason(error: Exception) -> str:
    from urllib.error import HTTPError, URLError

    if isinstance(error, HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, URLError):
        return str(error.reason)
    return f"{type(error).__name__}: {error}"


# ---- snapshots


@dataclass(frozen=True)
class SnapshotJob:
    """One frame with events, waiting for its JPEG."""

    image: np.ndarray  # uint8 BGR (H, W, 3): the annotated canvas, or the raw frame when `annotated` is False
    annotated: bool  # False: the worker draws `detections` (with track ids) and the zones on a copy first
    detections: Detections  # the frame's detections (xyxy in frame pixels)
    names: Tuple[str, ...]  # "<frame>_<kind>_<zone>_<track>" file stems, one per event
    counts: Optional[dict] = None  # the zones' and lines' counts after the frame (device.zones), for their labels


class SnapshotSink(Sink):
    """--snapshot DIR: a JPEG of the annotated frame for each event, DIR/<frame>_<kind>_<zone>_<track>.jpg (frame
    index zero-padded to 6 digits). It never asks for a canvas: it uses the canvas when another sink had one
    drawn, else a worker draws the detections (with their track ids) and the run's zones and lines on a copy.
    Encoding and writing run in that worker; at most SNAPSHOT_BACKLOG frames wait (oldest dropped first, its
    events counted in `dropped`). A file that cannot be written is logged and counted in `failed`; the run goes
    on."""

    def __init__(self, folder: str, names: Sequence[str], backlog: int = SNAPSHOT_BACKLOG, quality: int = 90,
                 zones: Sequence[Zone] = (), lines: Sequence[Line] = ()):
        self.folder = make_output_folder(folder, "--snapshot")
        self.names = list(names)  # class names, index = class id
        self.quality = quality  # JPEG quality 1..100
        self.zones, self.lines = list(zones), list(lines)  # drawn on frames it annotates (fractions resolved there)
        self.delivered = 0  # snapshot files written
        self.failed = 0  # snapshot files that could not be written
        self.dropped = 0  # events whose frame was dropped from the full backlog
        self._cond = threading.Condition()
        self._jobs = BoundedQueue(backlog)
        self._busy = False  # the worker holds a job
        self._closing = False
        self._worker = threading.Thread(target=self._work, name="edgedet-snapshot", daemon=True)
        self._worker.start()

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        if not result.events:
            return
        index = int(result.frame.index)
        stems = tuple(f"{index:06d}_{safe_token(e.kind)}_{safe_token(e.zone)}_{e.track_id}" for e in result.events)
        image = canvas if canvas is not None else result.frame.image
        job = SnapshotJob(image, canvas is not None, result.detections, stems, result.counts)
        with self._cond:
            dropped = self._jobs.push(job)
            self.dropped += len(dropped.names) if dropped is not None else 0
            self._cond.notify_all()

    def stats(self) -> dict:
        """Counters: delivered (files written), queued (frames waiting), dropped (events of the frames dropped, as
        the other event sinks count), failed (files)."""
        with self._cond:
            return {"delivered": self.delivered, "queued": len(self._jobs) + int(self._busy),
                    "dropped": self.dropped, "failed": self.failed}

    def close(self) -> None:
        """Write every waiting snapshot, then stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._worker.join()
        if self.delivered:
            log.info("saved %d event snapshots to %s", self.delivered, self.folder)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._closing)
                if not self._jobs:
                    return
                job, self._busy = self._jobs.pop(), True
            try:
                written = self._save(job)
            except Exception as error:  # one bad frame must not end the worker while write() keeps queueing
                log.warning("--snapshot: frame %s failed: %s: %s", job.names[0].split("_")[0], type(error).__name__,
                            error)
                written = 0
            with self._cond:
                self.delivered += written
                self.failed += len(job.names) - written
                self._busy = False

    def _annotate(self, job: SnapshotJob) -> np.ndarray:
        """A copy of the job's frame with its detections, their track ids, and the zones and lines with counts."""
        image = annotate(job.image, job.detections, self.names, track_ids=job.detections.tracker_ids)
        if self.zones or self.lines:
            h, w = image.shape[:2]
            draw_zones(image, [zone.resolved((w, h)) for zone in self.zones],
                       [line.resolved((w, h)) for line in self.lines], job.counts)
        return image

    def _save(self, job: SnapshotJob) -> int:
        """Encode the job's frame once and write it under each of its names; the number of files written."""
        image = job.image if job.annotated else self._annotate(job)
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            log.warning("--snapshot: OpenCV could not encode frame %s", job.names[0].split("_")[0])
            return 0
        written = 0
        for stem in job.names:
            path = self.folder / f"{stem}.jpg"
            try:
                path.write_bytes(buffer.tobytes())
                written += 1
            except OSError as error:
                log.warning("--snapshot: cannot write %s: %s", path, error.strerror or error)
        return written
