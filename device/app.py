"""`edgedet run`: the command line (flags, their validation into `RunOptions`), logging and signal set-up.

The frame loop, its threads and its outputs live in `device.runner` and `device.sinks`.
"""
from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from typing import List, Optional

import cv2

from . import layouts
from .errors import EdgedetError
from .events import DEFAULT_EVENT_QUEUE
from .runner import RunOptions, Runner
from .run_config import apply_config, defer_to_config
from .spec_sources import read_names
from .zones import Line, Zone, check_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `edgedet run` flags (kept import-light: nothing heavy is imported to build the parser)."""
    parser.add_argument("--config", metavar="RUN.yaml", help="read flags from a YAML file, one `flag: value` per "
                        "line (keys as `max_det` or `max-det`); flags on the command line win")
    parser.add_argument("--model", required=True, help="model file: .onnx or .tflite (edgedet or Ultralytics export); "
                        "required, here or in --config")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", help="camera index (0 = /dev/video0), a /dev/video* device, or 'picam' "
                                      "(Raspberry Pi camera via picamera2)")
    src.add_argument("--source", help="video file, image, folder, glob ('imgs/*.jpg'), RTSP/HTTP URL, 'synthetic' "
                                      "(in order) or 'synthetic:FPS' (a live camera at FPS frames per second)")
    parser.add_argument("--conf", type=float, default=0.25, help="minimum detection score (default 0.25)")
    parser.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    parser.add_argument("--max-det", type=int, default=300, help="at most this many detections per frame")
    parser.add_argument("--classes", nargs="+", help="keep only these classes (ids or names, space/comma separated)")
    parser.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    parser.add_argument("--imgsz", help="network input size H[,W] (only for models with a dynamic input size)")
    parser.add_argument("--names", help="class names, comma separated or a text file with one per line "
                                        "(only for models without metadata)")
    parser.add_argument("--layout", help="output layout (default: the model's metadata, else recognised from the output "
                        f"shapes): {', '.join(layouts.NAMES)}; without metadata: {', '.join(layouts.FROM_SHAPES)}")
    parser.add_argument("--backend", choices=["onnxruntime", "tflite"], help="override the runtime chosen from the suffix")
    parser.add_argument("--threads", type=int, help="inference threads (default: all cores but one, at least 1, so "
                                                    "that capture and outputs keep a core)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="leave thread placement to the OS (default: inference on cores of its own, Linux)")
    parser.add_argument("--show", action="store_true", help="show an OpenCV window (needs a display)")
    parser.add_argument("--save", metavar="OUT.mp4|DIR/", help="write the annotated video (.mp4, .webm, .avi, .mkv; "
                        ".webm plays in browsers), or with a folder (ending in / or existing) each annotated image "
                        "under its own name at its own size")
    parser.add_argument("--save-txt", metavar="DIR", help="write YOLO label files (class cx cy w h, or mask "
                                                          "polygons; normalised) to DIR, one per image")
    parser.add_argument("--save-crop", metavar="DIR", help="write every detected object as DIR/<class name>/"
                                                           "<image>_<k>.jpg")
    parser.add_argument("--json", metavar="OUT.jsonl", help="write one JSON object per frame (flushed per frame)")
    parser.add_argument("--stream", metavar="HOST:PORT", help="serve MJPEG and a status page over HTTP "
                                                              "(a bare PORT binds 127.0.0.1)")
    parser.add_argument("--latency-log", metavar="LAT.jsonl", help="write per-frame stage latencies as JSON lines")
    parser.add_argument("--no-semantic", dest="semantic", action="store_false",
                        help="do not draw the semantic overlay (nor compute it) on drawn outputs")
    parser.add_argument("--hide-labels", action="store_true", help="draw boxes without class labels")
    parser.add_argument("--hide-conf", action="store_true", help="draw labels without the score")
    parser.add_argument("--line-width", type=int, default=2, metavar="N", help="box outline in pixels (default 2)")
    parser.add_argument("--mqtt", metavar="HOST[:PORT]", help="publish zone/line events, counts and online/offline "
                        "status under edgedet/<camera name>/ to this MQTT broker (port 1883 by default)")
    parser.add_argument("--webhook", metavar="URL", help="POST each zone/line event as JSON to this http(s) URL")
    parser.add_argument("--snapshot", metavar="DIR", help="save the annotated frame of each event as "
                                                          "DIR/<frame>_<kind>_<zone>_<track>.jpg")
    parser.add_argument("--camera-name", help="camera name in MQTT topics and event payloads (default: from the "
                                              "source)")
    parser.add_argument("--event-queue", type=int, default=DEFAULT_EVENT_QUEUE, help="events each event output "
                        f"holds while its broker or server is away; then the oldest are dropped (default "
                        f"{DEFAULT_EVENT_QUEUE})")
    parser.add_argument("--track", action="store_true", help="give each object a stable track id (ByteTrack-style "
                        "tracker): in the JSON lines, the labels (#7 person 0.87) and the events")
    parser.add_argument("--zone", action="append", metavar="NAME:x1,y1,x2,y2,x3,y3,...", help="count objects inside "
                        "this polygon, per class, with enter/leave events and dwell times; pixels, or fractions of "
                        "the frame when every value is in 0..1; repeatable; turns --track on")
    parser.add_argument("--line", action="append", metavar="NAME:x1,y1,x2,y2", help="count objects crossing this "
                        "line once each, per class: 'in' from its left to its right looking from x1,y1 to x2,y2 "
                        "(moving down across a line drawn left to right), 'out' back; repeatable; turns --track on")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--log-every", type=float, default=5.0, help="seconds between rolling latency lines (default 5)")
    parser.add_argument("--open-timeout", type=float, default=5.0, help="seconds to wait for a live source to open")
    parser.add_argument("--stall-timeout", type=float, default=20.0, metavar="SECONDS", help="reopen a live "
                        "source that has delivered no frame for this many seconds (default 20)")
    parser.add_argument("--inference-timeout", type=float, default=10.0, metavar="SECONDS", help="an inference "
                        "call stuck this many seconds is abandoned and the model reloaded (default 10)")
    defer_to_config(parser)  # keep last: it covers the flags added above


def main(args: argparse.Namespace) -> int:
    _configure_logging()
    runner = Runner(options_from_args(apply_config(args, run_parser())))
    previous = _install_signal_handlers(runner.options.stop_event, runner.signals)
    try:
        return runner.run()
    finally:
        _restore_signal_handlers(previous)


def run_parser() -> argparse.ArgumentParser:
    """A parser of the `edgedet run` flags alone: what a --config file's keys are checked against."""
    parser = argparse.ArgumentParser(prog="edgedet run")
    add_arguments(parser)
    return parser


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The parsed `edgedet run` flags as validated `RunOptions` (an EdgedetError names a bad flag)."""
    source = args.camera if args.camera is not None else args.source
    camera = args.camera
    if camera is not None and not (camera.isdigit() or camera == "picam" or camera.startswith("/dev/video")):
        raise EdgedetError(f"--camera expects an index (0, 1, ...), a /dev/video* device or 'picam', "
                           f"got {camera!r}; use --source for files and URLs")
    for flag in ("model", "save", "save_txt", "save_crop", "json", "stream", "latency_log", "mqtt", "webhook",
                 "snapshot", "camera_name"):
        value = getattr(args, flag)
        if value is not None and not str(value).strip():  # `--save=` or `--mqtt ''`: not silently no output
            raise EdgedetError(f"--{flag.replace('_', '-')}: empty value")
    if args.max_frames is not None and args.max_frames < 1:
        raise EdgedetError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.event_queue < 1:
        raise EdgedetError(f"--event-queue must be >= 1, got {args.event_queue}")
    if not args.log_every > 0:  # nan too
        raise EdgedetError(f"--log-every must be > 0 seconds, got {args.log_every}")
    for flag, seconds in (("--stall-timeout", args.stall_timeout), ("--inference-timeout", args.inference_timeout)):
        if not seconds > 0:
            raise EdgedetError(f"{flag} must be > 0 seconds, got {seconds}")
    if not 0 < args.open_timeout < math.inf:
        raise EdgedetError(f"--open-timeout must be a number of seconds > 0, got {args.open_timeout}")
    if args.line_width < 1:
        raise EdgedetError(f"--line-width must be >= 1 pixel, got {args.line_width}")
    if args.show and not opencv_has_gui():
        raise EdgedetError("--show needs OpenCV with a GUI, but the installed one is headless "
                           "(opencv-python-headless); install opencv-python instead: pip uninstall -y "
                           "opencv-python-headless && pip install opencv-python (or use --stream HOST:PORT)")
    classes = _split_list(args.classes)
    if args.classes and not classes:
        raise EdgedetError(f"--classes: no class given in {' '.join(map(str, args.classes))!r} (ids or names, "
                           f"comma-separated)")
    zones, lines = [Zone.parse(spec) for spec in args.zone or ()], [Line.parse(spec) for spec in args.line or ()]
    check_names(zones, lines)
    return RunOptions(model=args.model, source=str(source), conf=args.conf, iou=args.iou, max_det=args.max_det,
                      classes=classes, agnostic=args.agnostic_nms, imgsz=args.imgsz,
                      names=read_names(args.names), layout=args.layout, backend=args.backend, threads=args.threads,
                      pin=args.pin, show=args.show, save=args.save,
                      save_txt=args.save_txt, save_crop=args.save_crop, json=args.json, stream=args.stream,
                      latency_log=args.latency_log, max_frames=args.max_frames, log_every=args.log_every,
                      open_timeout=args.open_timeout, mqtt=args.mqtt, webhook=args.webhook, snapshot=args.snapshot,
                      camera_name=args.camera_name, event_queue=args.event_queue, semantic=args.semantic,
                      hide_labels=args.hide_labels, hide_conf=args.hide_conf, line_width=args.line_width,
                      stall_timeout=args.stall_timeout, inference_timeout=args.inference_timeout,
                      track=args.track, zones=zones, lines=lines)


def opencv_has_gui() -> bool:
    """False when OpenCV was built without a GUI backend ("GUI: NONE" in its build information, as in the
    opencv-python-headless wheels); True otherwise, including builds that do not say."""
    for line in cv2.getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        if key == "GUI":
            return value.strip().upper() != "NONE"
    return True


def _split_list(values) -> Optional[List[str]]:
    if not values:
        return None
    return [item.strip() for value in values for item in str(value).split(",") if item.strip()]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (it may be replaced after set-up)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def _configure_logging() -> None:
    root = logging.getLogger("edgedet")
    if not root.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("edgedet run: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


def _install_signal_handlers(stop_event: threading.Event, received: list):
    """SIGINT/SIGTERM set `stop_event` and append their name to `received` (main thread only).

    Returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}

    def handler(signum, _frame):
        if stop_event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting
        received.append(signal.Signals(signum).name)  # logged by the loop, not inside the handler
        stop_event.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signal_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
