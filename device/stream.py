"""`--stream HOST:PORT`: annotated frames as MJPEG plus a status page, from the standard library's HTTP server.

    /             status page for a browser (live image, FPS, per-stage p50/p90/p99, last detections, model)
    /stream.mjpg  multipart/x-mixed-replace MJPEG of the annotated frames
    /frame.jpg    the latest annotated frame as one JPEG
    /status.json  the status as JSON

`StreamSink` is the run's output: it publishes the annotated frame and keeps the frame's best boxes for the
status page, and asks the runner for a canvas only while a viewer is connected (nobody watching: no drawing and
no encoding). The output thread only hands over its newest frame (`publish`, a reference swap). One encoder thread
JPEG-encodes the newest frame once, and only while someone is watching; every viewer thread sends the
latest encoded frame and skips what it missed, so any number of viewers (fast or slow) never slows the loop.
Binds 127.0.0.1 unless the user names another address.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .detections import Detections
from .errors import EdgedetError
from .sinks import FrameResult, Sink, detections_to_dicts

log = logging.getLogger("edgedet.stream")
BOUNDARY = "edgedetframe"


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
    """The newest annotated frame and its JPEG, encoded once per frame by one thread while viewers exist."""

    def __init__(self, quality: int = 80):
        self.quality = quality  # JPEG quality 1..100
        self.viewers = 0  # connected MJPEG/JPEG clients
        self.encoded = 0  # frames encoded so far
        self._cond = threading.Condition()
        self._raw: Optional[np.ndarray] = None
        self._raw_seq = 0
        self._jpeg: Optional[bytes] = None
        self._jpeg_seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._encode_loop, name="edgedet-jpeg", daemon=True)
        self._thread.start()

    def publish(self, image_bgr: np.ndarray) -> None:
        """Hand over the newest frame (no copy, no encoding here: the caller must not modify it afterwards)."""
        with self._cond:
            self._raw = image_bgr
            self._raw_seq += 1
            self._cond.notify_all()

    def _encode_loop(self) -> None:
        done = 0
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._stop.is_set() or (self._raw_seq > done and self.viewers > 0), 0.5)
                if self._stop.is_set() or self._raw_seq <= done or self.viewers == 0:
                    continue
                image, seq = self._raw, self._raw_seq
            ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            done = seq
            if ok:
                with self._cond:
                    self._jpeg, self._jpeg_seq = buffer.tobytes(), seq
                    self.encoded += 1
                    self._cond.notify_all()

    def wait_jpeg(self, after_seq: int, timeout: float) -> Tuple[Optional[bytes], int]:
        """The newest JPEG newer than `after_seq` (waits up to `timeout`); (None, after_seq) if none came."""
        with self._cond:
            self._cond.wait_for(lambda: self._stop.is_set() or self._jpeg_seq > after_seq, timeout)
            if self._jpeg_seq > after_seq:
                return self._jpeg, self._jpeg_seq
            return None, after_seq

    def add_viewer(self, delta: int) -> None:
        with self._cond:
            self.viewers += delta
            self._cond.notify_all()

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)

    @property
    def closed(self) -> bool:
        return self._stop.is_set()


class StreamServer:
    """The HTTP server in a daemon thread. `status` returns a JSON-able dict for the status page."""

    def __init__(self, host: str, port: int, status: Callable[[], dict], quality: int = 80):
        self.hub = FrameHub(quality)
        self.status = status
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

    status: returns the run's JSON-able status (FPS, stages, model, ...); names: class names, index = class id.
    """

    STATUS_DETECTIONS = 20  # boxes (no masks) of the best this many detections go to the status page

    def __init__(self, host: str, port: int, status: Callable[[], dict], names: Sequence[str]):
        self.names = list(names)
        self.last_detections: List[dict] = []  # the latest frame's best boxes, replaced whole (no lock needed)
        self._run_status = status
        self.server = StreamServer(host, port, self.status)
        log.info("streaming on %s (MJPEG at %sstream.mjpg)", self.server.url, self.server.url)

    @property
    def needs_canvas(self) -> bool:
        return self.server.hub.viewers > 0

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
    class Handler(BaseHTTPRequestHandler):
        server_version = "edgedet"
        protocol_version = "HTTP/1.0"

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
            hub.add_viewer(1)
            try:
                jpeg, _ = hub.wait_jpeg(0, 5.0)
            finally:
                hub.add_viewer(-1)
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
            hub.add_viewer(1)
            seq = 0
            try:
                while not hub.closed:
                    jpeg, seq = hub.wait_jpeg(seq, 1.0)
                    if jpeg is None:
                        continue
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                    self.wfile.flush()
            finally:
                hub.add_viewer(-1)

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
