"""`--stream HOST:PORT`: annotated frames as MJPEG plus a status page, from the standard library's HTTP server.

    /             status page for a browser (live image, FPS, per-stage p50/p90/p99, last detections, model)
    /stream.mjpg  multipart/x-mixed-replace MJPEG of the annotated frames
    /frame.jpg    the latest annotated frame as one JPEG
    /status.json  the status as JSON
    /healthz      health as JSON: 200, or 503 once no frame came out for --stall-timeout (device.health)

`StreamSink` is the run's output: it publishes the annotated frame and keeps the frame's best boxes for the
status page, and asks the runner for a canvas only while a viewer is connected and the encoder will take it
(nobody watching: no drawing and no encoding). The output thread only hands over its newest frame (`publish`, a
reference swap), so `write` never waits for encoding. One encoder thread JPEG-encodes the newest frame once, only
while someone is watching, at most at the rate of the slowest viewer (`FrameHub`) and in the CPU time the loop
leaves over (a background thread: idle priority, every core, device.affinity); every viewer thread sends
the latest encoded frame and skips what it missed, so any number of viewers (fast or slow) never slows the loop.
Each encode is timed as stage "encode" of the run's timer (in the encoder thread: it has its own count and is not
part of a frame's end_to_end). Binds 127.0.0.1 unless the user names another address.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .affinity import leave_background, run_in_background
from .detections import Detections
from .errors import EdgedetError
from .health import health_response
from .latency import StageTimer
from .sinks import FrameResult, Sink, detections_to_dicts

log = logging.getLogger("edgedet.stream")
BOUNDARY = "edgedetframe"
STALL_SECONDS = 1.0  # a viewer still sending its previous JPEG after this long is not waited for
STALL_POLL_SECONDS = 0.2  # how often the encoder re-checks that deadline
# kernel send buffer of an MJPEG connection: about one 640x480 JPEG, so a slow viewer holds up its own sending
# (and, through `FrameHub`, the encoding) instead of the kernel queueing frames that are stale when they arrive
STREAM_SEND_BUFFER = 64 * 1024
VIEWER_TIMEOUT_SECONDS = 30.0  # a viewer whose socket takes nothing for this long is dropped


def parse_host_port(text: str, default_host: str = "127.0.0.1") -> Tuple[str, int]:
    """"8080", ":8080", "0.0.0.0:8080", "[::1]:8080" -> (host, port); a bare port binds `default_host`."""
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise EdgedetError(f"--stream expects HOST:PORT or PORT (0..65535), got {text!r}")
    return host, int(port)


class FrameHub:
    """The newest annotated frame and its JPEG, for any number of viewers.

    `publish` only swaps a reference. One encoder thread JPEG-encodes the newest frame, and only while a viewer is
    connected and every viewer has finished sending the previous JPEG: encoding runs at most at the rate of the
    slowest viewer, and each viewer gets the newest frame, none queued. A viewer that has not finished sending
    within `stall_s` is not waited for (the others go on at about one frame per `stall_s`).
    `wants_frame` says whether a frame published now would be encoded, so the runner draws only such frames.
    """

    def __init__(self, quality: int = 80, encode: Optional[Callable[[np.ndarray], Optional[bytes]]] = None,
                 timer: Optional[StageTimer] = None, stall_s: float = STALL_SECONDS):
        self.quality = quality  # JPEG quality 1..100
        self.encoded = 0  # frames encoded so far
        self.timer = timer  # each encode is timed as stage "encode" in it (None: not timed)
        self.stall_s = stall_s  # seconds a viewer still sending the previous JPEG holds up the next one
        self._encode = encode or self.encode_jpeg  # uint8 BGR (H, W, 3) -> JPEG bytes (None: failed)
        self._cond = threading.Condition()
        self._raw: Optional[np.ndarray] = None
        self._raw_seq = 0  # sequence number of the newest published frame
        self._taken_seq = 0  # of the newest frame the encoder took
        self._encoding = False  # the encoder is encoding that frame now
        self._jpeg: Optional[bytes] = None
        self._jpeg_seq = 0  # of the frame the current JPEG shows
        self._jpeg_time = 0.0  # time.monotonic() when it was encoded
        self._sent: Dict[int, int] = {}  # viewer id -> sequence number of the last JPEG it finished sending
        self._sending: Dict[int, int] = {}  # viewer id -> sequence number of the JPEG it is sending
        self._next_viewer = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._encode_loop, name="edgedet-jpeg", daemon=True)
        self._thread.start()

    @property
    def viewers(self) -> int:
        """Connected MJPEG / JPEG clients."""
        return len(self._sent)

    @property
    def wants_frame(self) -> bool:
        """True when a frame published now would be encoded: a viewer is connected, the encoder is idle with
        nothing pending, and the viewers are ready for a new JPEG."""
        with self._cond:
            return not self._encoding and self._raw_seq == self._taken_seq and self._viewers_ready()

    def publish(self, image_bgr: np.ndarray) -> None:
        """Hand over the newest frame (no copy, no encoding here: the caller must not modify it afterwards)."""
        with self._cond:
            self._raw = image_bgr
            self._raw_seq += 1
            self._cond.notify_all()

    def encode_jpeg(self, image_bgr: np.ndarray) -> Optional[bytes]:
        """uint8 BGR (H, W, 3) -> JPEG bytes at `quality`; None if OpenCV fails."""
        ok, buffer = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        return buffer.tobytes() if ok else None

    def connect(self) -> int:
        """Register a viewer; returns its id. It is sent only JPEGs of frames published after it connected."""
        with self._cond:
            viewer, self._next_viewer = self._next_viewer, self._next_viewer + 1
            self._sent[viewer] = self._sending[viewer] = self._jpeg_seq
            self._cond.notify_all()
            return viewer

    def disconnect(self, viewer: int) -> None:
        with self._cond:
            self._sent.pop(viewer, None)
            self._sending.pop(viewer, None)
            self._cond.notify_all()

    def next_jpeg(self, viewer: int, timeout: float) -> Optional[bytes]:
        """The newest JPEG this viewer has not had yet, waiting up to `timeout` s; None if none came. Calling it
        says the viewer has finished sending the JPEG it got before."""
        with self._cond:
            last = self._sent[viewer] = self._sending[viewer]
            self._cond.notify_all()  # the encoder may be waiting for this viewer
            self._cond.wait_for(lambda: self._stop.is_set() or self._jpeg_seq > last, timeout)
            if self._jpeg_seq <= last:
                return None
            self._sending[viewer] = self._jpeg_seq
            return self._jpeg

    def _viewers_ready(self) -> bool:
        """Some viewer is connected and every one has sent the current JPEG (or it is `stall_s` old and one has)."""
        done = [seq >= self._jpeg_seq for seq in self._sent.values()]
        if all(done):
            return bool(done)
        return any(done) and time.monotonic() - self._jpeg_time > self.stall_s

    def _should_encode(self) -> bool:
        return self._raw_seq > self._taken_seq and self._viewers_ready()

    def _encode_loop(self) -> None:
        run_in_background()  # encodes in the CPU time the loop leaves over (device.affinity)
        try:
            self._encode_frames()
        finally:
            leave_background()

    def _encode_frames(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                # the timeout re-checks a stalled viewer's deadline, which no notification marks
                self._cond.wait_for(lambda: self._stop.is_set() or self._should_encode(), STALL_POLL_SECONDS)
                if self._stop.is_set() or not self._should_encode():
                    continue
                image, seq = self._raw, self._raw_seq
                self._taken_seq, self._encoding = seq, True
            jpeg = self._timed_encode(image)
            with self._cond:
                if jpeg is not None:
                    self._jpeg, self._jpeg_seq, self._jpeg_time = jpeg, seq, time.monotonic()
                    self.encoded += 1
                self._encoding = False
                self._cond.notify_all()

    def _timed_encode(self, image: np.ndarray) -> Optional[bytes]:
        """The JPEG of `image` (stage "encode" when timed); None when encoding failed (logged: the stream goes on)."""
        try:
            if self.timer is None:
                return self._encode(image)
            with self.timer.stage("encode"):
                return self._encode(image)
        except Exception as error:
            log.warning("--stream: encoding a frame failed: %s: %s", type(error).__name__, error)
            return None

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)

    @property
    def closed(self) -> bool:
        return self._stop.is_set()


class StreamServer:
    """The HTTP server in a daemon thread. `status` returns a JSON-able dict for the status page; `timer` (if
    given) gets each JPEG encode as stage "encode"."""

    def __init__(self, host: str, port: int, status: Callable[[], dict], quality: int = 80,
                 timer: Optional[StageTimer] = None):
        self.hub = FrameHub(quality, timer=timer)
        self.status = status
        from http.server import ThreadingHTTPServer  # the HTTP stack (~20 ms) loads only for --stream

        handler = _make_handler(self.hub, status)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise EdgedetError(f"--stream cannot listen on {host}:{port}: {error.strerror or error}") from None
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgedet-http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}/"

    def publish(self, image_bgr: np.ndarray) -> None:
        self.hub.publish(image_bgr)

    def close(self) -> None:
        self.hub.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=2.0)


class StreamSink(Sink):
    """--stream: annotated frames to a `StreamServer`; its status page gets `status()` plus the frame's best boxes.

    status: returns the run's JSON-able status (FPS, stages, model, ...); names: class names, index = class id;
    timer: the run's `StageTimer`, which gets each JPEG encode (in the encoder thread) as stage "encode".
    """

    STATUS_DETECTIONS = 20  # boxes (no masks) of the best this many detections go to the status page

    def __init__(self, host: str, port: int, status: Callable[[], dict], names: Sequence[str],
                 timer: Optional[StageTimer] = None):
        self.names = list(names)
        self.last_detections: List[dict] = []  # the latest frame's best boxes, replaced whole (no lock needed)
        self._run_status = status
        self.server = StreamServer(host, port, self.status, timer=timer)
        log.info("streaming on %s (MJPEG at %sstream.mjpg)", self.server.url, self.server.url)

    @property
    def needs_canvas(self) -> bool:
        """Only while a viewer is connected, and only frames the encoder will take (`FrameHub.wants_frame`)."""
        return self.server.hub.wants_frame

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        top = result.detections[:self.STATUS_DETECTIONS]
        self.last_detections = detections_to_dicts(Detections(top.xyxy, top.scores, top.class_ids), self.names)
        if canvas is not None:
            self.server.publish(canvas)

    def status(self) -> dict:
        """The status page's data: the run's status and the last frame's detections."""
        return {**self._run_status(), "detections": self.last_detections}

    def close(self) -> None:
        self.server.close()


def _make_handler(hub: FrameHub, status: Callable[[], dict]):
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        server_version = "edgedet"
        protocol_version = "HTTP/1.0"
        timeout = VIEWER_TIMEOUT_SECONDS  # on the connection's socket: a stalled viewer's thread ends

        def do_GET(self):  # noqa: N802 (the stdlib's name)
            path = self.path.split("?")[0]
            try:
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", STATUS_PAGE.encode())
                elif path == "/status.json":
                    self._send(200, "application/json", json.dumps(status(), default=_json_default).encode())
                elif path == "/stream.mjpg":
                    self._stream()
                elif path == "/frame.jpg":
                    self._single()
                elif path == "/healthz":  # 200, or 503 once frames stopped (device.health)
                    self._send(*health_response(status()))
                else:
                    self._send(404, "text/plain", b"not found\n")
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the viewer went away

        def _send(self, code: int, content_type: str, body: bytes):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _single(self):
            viewer = hub.connect()
            try:
                jpeg = hub.next_jpeg(viewer, 5.0)
            finally:
                hub.disconnect(viewer)
            if jpeg is None:
                self._send(503, "text/plain", b"no frame yet\n")
            else:
                self._send(200, "image/jpeg", jpeg)

        def _stream(self):
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SEND_BUFFER)
            viewer = hub.connect()
            try:
                while not hub.closed:
                    jpeg = hub.next_jpeg(viewer, 1.0)
                    if jpeg is None:
                        continue
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                    self.wfile.flush()
            finally:
                hub.disconnect(viewer)

        def log_message(self, format, *args):  # noqa: A002 (the stdlib's signature)
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


STATUS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>edgedet run</title>
<style>
body{font-family:system-ui,sans-serif;margin:1em;background:#111;color:#eee}
img{max-width:100%;border:1px solid #444}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #333}
th:first-child,td:first-child{text-align:left}#meta{color:#aaa}
</style></head>
<body>
<h2>edgedet run <span id="fps"></span></h2>
<div id="meta"></div>
<img src="/stream.mjpg" alt="annotated stream">
<h3>latency (ms, rolling)</h3>
<table id="stages"><tr><th>stage</th><th>p50</th><th>p90</th><th>p99</th></tr></table>
<h3>last detections</h3>
<table id="dets"><tr><th>class</th><th>score</th><th>box (x1, y1, x2, y2)</th></tr></table>
<script>
function cell(row, text){const c=row.insertCell();c.textContent=text;}
function fmt(v){return (v===null||v===undefined||isNaN(v))?"-":Number(v).toFixed(1);}
async function refresh(){
  try{
    const s=await (await fetch('/status.json',{cache:'no-store'})).json();
    document.getElementById('fps').textContent='— '+fmt(s.fps)+' FPS';
    document.getElementById('meta').textContent=
      `model ${s.model} | backend ${s.backend} | threads ${s.threads} | source ${s.source} | frames ${s.frames}`;
    const st=document.getElementById('stages');
    while(st.rows.length>1) st.deleteRow(1);
    for(const [name,v] of Object.entries(s.stages||{})){
      const r=st.insertRow();cell(r,name);cell(r,fmt(v.p50));cell(r,fmt(v.p90));cell(r,fmt(v.p99));}
    const dt=document.getElementById('dets');
    while(dt.rows.length>1) dt.deleteRow(1);
    for(const d of (s.detections||[])){
      const r=dt.insertRow();cell(r,d.class_name);cell(r,Number(d.score).toFixed(2));
      cell(r,d.xyxy.map(v=>Math.round(v)).join(', '));}
  }catch(e){}
}
refresh();setInterval(refresh,1000);
</script>
</body></html>
"""
