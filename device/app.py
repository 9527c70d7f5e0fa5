"""`edgedet run`: a model on a camera, video, images, a URL or the synthetic source, with outputs and latency.

The loop is pipelined so that inference overlaps the rest (for a live source, a frame is pulled just in time
instead: see `Runner._loop`):

    capture thread      decode / grab frames (files: in order, bounded queue; live: newest frame only)
    prepare thread      read frame -> preprocess -> bounded queue
    main thread                                     backend.run ----------------------> next prepared frame
    output thread                                               decode, NMS, masks -> draw -> JSON / video /
                                                                stream / latency log
When inference runs fewer threads than the process has cores, it keeps cores of its own and every other thread
runs on the rest, so Python work never preempts inference; when it uses every core, the other threads share only
the last one (`device.affinity`).

Every stage is timed (capture wait, preprocess, inference, decode, nms, masks, semantic, draw, output,
end_to_end, frame_age); a rolling p50/p90/p99 line is logged every few seconds and a summary table is
printed at exit. SIGINT / SIGTERM stop the loop cleanly: outputs flushed and closed, exit code 0.
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

from .errors import EdgedetError

log = logging.getLogger("edgedet.run")
MAX_CONSECUTIVE_FAILURES = 50  # the loop gives up only when this many frames in a row fail
# GIL switch interval during the loop (s). When inference returns, the main thread needs the GIL back; with
# Python's default 5 ms a busy capture/output thread keeps it for up to 5 ms each time (measured: p90 gap between
# two backend.run calls 6.7-8.9 ms at 0.005 s vs 0.15 ms at 0.0005 s, int8 TFLite, 2 threads).
LOOP_SWITCH_INTERVAL = 0.0005


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `edgedet run` flags (kept import-light: nothing heavy is imported to build the parser)."""
    parser.add_argument("--model", required=True, help="model file: .onnx or .tflite (edgedet or Ultralytics export)")
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
    parser.add_argument("--imgsz", help="network input size H[,W] (only for models without metadata)")
    parser.add_argument("--names", help="class names, comma separated or a text file with one per line "
                                        "(only for models without metadata)")
    parser.add_argument("--layout", help="output layout of a model without metadata: yolov5, yolov8, yolov8-seg")
    parser.add_argument("--backend", choices=["onnxruntime", "tflite"], help="override the runtime chosen from the suffix")
    parser.add_argument("--threads", type=int, help="inference threads (default: all cores but one, at least 1, so "
                                                    "that capture and outputs keep a core)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="leave thread placement to the OS (default: inference on cores of its own, Linux)")
    parser.add_argument("--show", action="store_true", help="show an OpenCV window (needs a display)")
    parser.add_argument("--save", metavar="OUT.mp4", help="write the annotated video (.mp4, .avi, .mkv)")
    parser.add_argument("--json", metavar="OUT.jsonl", help="write one JSON object per frame (flushed per frame)")
    parser.add_argument("--stream", metavar="HOST:PORT", help="serve MJPEG and a status page over HTTP "
                                                              "(a bare PORT binds 127.0.0.1)")
    parser.add_argument("--latency-log", metavar="LAT.jsonl", help="write per-frame stage latencies as JSON lines")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--log-every", type=float, default=5.0, help="seconds between rolling latency lines (default 5)")
    parser.add_argument("--open-timeout", type=float, default=5.0, help="seconds to wait for a live source to open")


def main(args: argparse.Namespace) -> int:
    _configure_logging()
    options = RunOptions.from_args(args)
    runner = Runner(options)
    return runner.run()


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


def default_threads() -> int:
    """Inference threads of `edgedet run` without --threads: the cores this process may use but one (at least 1),
    so that capture, preprocessing and outputs keep a core and overlap with inference (on the 2-core development
    machine `edgedet run` is faster with 1 inference thread than with 2: README, "Measured figures")."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


@dataclass
class RunOptions:
    """Everything `edgedet run` was asked to do, validated."""

    model: str  # model file
    source: str  # camera index, "picam", "synthetic", path, glob or URL
    conf: float = 0.25  # minimum score
    iou: float = 0.45  # NMS IoU threshold
    max_det: int = 300  # detections per frame at most
    classes: Optional[List[str]] = None  # class ids or names to keep
    agnostic: bool = False  # class-agnostic NMS
    imgsz: Optional[str] = None  # input size for foreign models
    names: Optional[List[str]] = None  # class names for foreign models
    layout: Optional[str] = None  # output layout for foreign models
    backend: Optional[str] = None  # "onnxruntime" / "tflite", None = by suffix
    threads: Optional[int] = None  # inference threads; None = default_threads()
    pin: bool = True  # inference threads on cores of their own, the other threads on the rest (device.affinity)
    show: bool = False  # OpenCV window
    save: Optional[str] = None  # annotated video path
    json: Optional[str] = None  # JSON lines path
    stream: Optional[str] = None  # HOST:PORT of the HTTP server
    latency_log: Optional[str] = None  # per-frame latency JSON lines path
    max_frames: Optional[int] = None  # stop after this many frames
    log_every: float = 5.0  # seconds between rolling latency lines
    open_timeout: float = 5.0  # seconds for a live source to open
    stop_event: threading.Event = field(default_factory=threading.Event)  # set to stop the loop from outside

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RunOptions":
        source = args.camera if args.camera is not None else args.source
        camera = args.camera
        if camera is not None and not (camera.isdigit() or camera == "picam" or camera.startswith("/dev/video")):
            raise EdgedetError(f"--camera expects an index (0, 1, ...), a /dev/video* device or 'picam', "
                               f"got {camera!r}; use --source for files and URLs")
        if args.max_frames is not None and args.max_frames < 1:
            raise EdgedetError(f"--max-frames must be >= 1, got {args.max_frames}")
        if args.log_every <= 0:
            raise EdgedetError(f"--log-every must be > 0 seconds, got {args.log_every}")
        return cls(model=args.model, source=str(source), conf=args.conf, iou=args.iou, max_det=args.max_det,
                   classes=_split_list(args.classes), agnostic=args.agnostic_nms, imgsz=args.imgsz,
                   names=_read_names(args.names), layout=args.layout, backend=args.backend, threads=args.threads,
                   pin=args.pin, show=args.show, save=args.save, json=args.json, stream=args.stream, latency_log=args.latency_log,
                   max_frames=args.max_frames, log_every=args.log_every, open_timeout=args.open_timeout)


def _split_list(values) -> Optional[List[str]]:
    if not values:
        return None
    return [item.strip() for value in values for item in str(value).split(",") if item.strip()]


def _read_names(text: Optional[str]) -> Optional[List[str]]:
    """--names: "a,b,c" or a file with one name per line (a YAML/JSON list also works if one per line)."""
    if text is None:
        return None
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as handle:
            names = [line.strip().strip("-").strip().strip("'\"") for line in handle]
        names = [n for n in names if n]
    else:
        names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise EdgedetError(f"--names gives no class names: {text!r}")
    return names


@dataclass
class Job:
    """One frame between the inference thread and the output thread."""

    frame: object  # device.capture.Frame
    prepared: object  # device.pipeline.Prepared
    outputs: Dict  # raw backend outputs
    record: Dict[str, float]  # stage ms measured so far (capture, preprocess, inference)
    started: float  # perf_counter when the loop received the frame


class Runner:
    """Owns the detector, the source, the outputs and the two threads of one `edgedet run`."""

    def __init__(self, options: RunOptions):
        self.options = options
        self.frames_done = 0  # frames fully output
        self.frames_failed = 0  # frames whose processing raised (logged, skipped)
        self.signals: List[str] = []  # names of the signals that stopped the run
        self.loop_seconds = 0.0  # wall time of the frame loop (after the model and source are open)
        self.last_detections: List[dict] = []  # the latest frame's detections for the status page
        self._times: deque = deque(maxlen=120)  # perf_counter of recent outputs, for the rolling FPS
        self._lock = threading.Lock()
        self._worker_error: Optional[BaseException] = None  # an output failed for good: stop now
        self._capture_error: Optional[BaseException] = None  # the source broke: finish the frames read, then fail
        self._consecutive_failures = 0  # frames in a row that failed
        self._reading_done = threading.Event()  # set when the inference loop ends: the capture thread stops
        self._display_frame = None
        self._inference_threads: Set[int] = set()  # kernel ids of the threads that run inference
        # live sources are pulled just in time (`_loop`): the inference thread asks for a frame when it can start
        # on it, and only once the output thread has taken the previous result
        self._frame_wanted = threading.Event()
        self._output_credit = threading.Semaphore(1)
        self.detector = None
        self.source = None
        self.json_sink = self.video_sink = self.latency_log = self.server = None

    # ---- setup

    def _open(self) -> None:
        from .affinity import native_thread_ids
        from .capture import open_source
        from .pipeline import Detector

        o = self.options
        self._check_outputs()
        t0 = time.perf_counter()
        before = native_thread_ids()
        threads = o.threads if o.threads is not None else default_threads()
        self.detector = Detector(o.model, conf=o.conf, iou=o.iou, max_det=o.max_det, threads=threads,
                                 classes=o.classes, agnostic=o.agnostic, backend=o.backend, names=o.names,
                                 layout=o.layout, imgsz=o.imgsz)
        # this thread and the runtime's own pool (started while loading) run inference
        self._inference_threads = (native_thread_ids() - before) | {threading.get_native_id()}
        log.info("model %s loaded in %.2f s", self.detector.describe(), time.perf_counter() - t0)
        self.source = open_source(o.source, imgsz=self.detector.spec.input_size_hw, open_timeout=o.open_timeout)
        log.info("source %s (%s)", self.source.name, "live" if self.source.live else "in order, no frame dropped")
        self._open_outputs()

    def _check_outputs(self) -> None:
        """Validate output flags before the (slow) model load, so bad input fails fast."""
        from .stream import parse_host_port

        o = self.options
        if o.stream:
            parse_host_port(o.stream)
        if o.save:
            from .sinks import VideoSink

            VideoSink(o.save)  # validates suffix and folder; opens the file only at the first frame

    def _open_outputs(self) -> None:
        from .latency import LatencyLog
        from .sinks import JsonLinesSink, VideoSink

        o = self.options
        names = self.detector.spec.names
        if o.json:
            self.json_sink = JsonLinesSink(o.json, names)
        if o.save:
            self.video_sink = VideoSink(o.save, fps=getattr(self.source, "fps", 0.0) or 30.0)
        if o.latency_log:
            from .sinks import open_for_writing

            open_for_writing(o.latency_log, "--latency-log").close()
            self.latency_log = LatencyLog(o.latency_log)
        if o.stream:
            from .stream import StreamServer, parse_host_port

            host, port = parse_host_port(o.stream)
            self.server = StreamServer(host, port, self.status)
            log.info("streaming on %s (MJPEG at %sstream.mjpg)", self.server.url, self.server.url)
        if o.show and not _display_available():
            log.warning("--show: no display available (or OpenCV has no GUI); use --stream 127.0.0.1:8080 "
                        "and open it in a browser instead")
            o.show = False

    # ---- the loop

    def run(self) -> int:
        previous = _install_signal_handlers(self.options.stop_event, self.signals)
        try:
            self._open()
            start = time.perf_counter()
            try:
                self._loop()
            finally:
                self.loop_seconds = time.perf_counter() - start
                if self.signals:
                    log.info("%s received: stopped", self.signals[0])
        finally:
            _restore_signal_handlers(previous)
            self._close()
        if self.detector is not None:
            self._print_summary()
        error = self._worker_error or self._capture_error
        if error is not None:
            raise error
        return 0

    def _loop(self) -> None:
        """Inference in this thread; capture + preprocess and postprocess + outputs in their own threads.

        Files are read ahead through small queues, so every stage stays busy. A live source is pulled just in
        time instead, so that no frame waits in a queue while the camera moves on: the inference thread starts a
        frame only once the output thread has taken the previous result, and only then does the capture thread
        read the camera's newest frame and preprocess it. A frame's age at output is then about two output-stage
        times when drawing is the bottleneck (not one per queued frame), and inference time plus output when
        inference is.

        Meanwhile the GIL switch interval is shortened so that inference gets the GIL back promptly, OpenCV
        calls run single-threaded (its worker pool active-waits after each call, taking cycles from inference), and
        inference and the other threads run on separate cores where they can (`device.affinity`)."""
        import cv2

        previous, cv2_threads = sys.getswitchinterval(), cv2.getNumThreads()
        sys.setswitchinterval(min(previous, LOOP_SWITCH_INTERVAL))
        cv2.setNumThreads(1)  # stages already overlap; OpenCV's own pool would only spin beside inference
        try:
            self._pipelined_loop()
        finally:
            sys.setswitchinterval(previous)
            cv2.setNumThreads(cv2_threads)

    def _pipelined_loop(self) -> None:
        from .affinity import inference_cores

        ready: queue.Queue = queue.Queue(maxsize=1 if self.source.live else 2)
        jobs: queue.Queue = queue.Queue(maxsize=2)
        preparer = threading.Thread(target=self._prepare_worker, args=(ready,), name="edgedet-prepare", daemon=True)
        worker = threading.Thread(target=self._output_worker, args=(jobs,), name="edgedet-output", daemon=True)
        preparer.start()
        worker.start()
        try:
            threads = getattr(self.detector.backend, "threads", None) if self.options.pin else None
            with inference_cores(threads, self._inference_threads) as split:  # the workers are running: pinned too
                if split is not None:
                    log.info("inference on core(s) %s; capture, preprocessing and outputs on %s",
                             _core_list(split[0]), _core_list(split[1]))
                self._infer_frames(ready, jobs)
        finally:
            self._reading_done.set()
            _drain(ready)
            preparer.join()
            jobs.put(None)
            worker.join()

    def _infer_frames(self, ready: queue.Queue, jobs: queue.Queue) -> None:
        """Main thread side: prepared frames from `ready` -> backend -> `Job`s into `jobs`, until the end or a stop."""
        stop, timer = self.options.stop_event, self.detector.timer
        next_log = time.perf_counter() + self.options.log_every
        pull, requested = self.source.live, False
        while not stop.is_set() and self._worker_error is None:
            if pull and not requested:
                requested = self._request_frame()
                if not requested:
                    continue
            try:
                item = ready.get(timeout=0.2)
            except queue.Empty:
                continue
            requested = False
            if item is None:
                break
            frame, prepared, record, started = item
            try:
                outputs = self.detector.infer(prepared)
                self._consecutive_failures = 0
            except Exception as error:  # a bad frame must not end a long run
                timer.take_record()
                if pull:
                    self._output_credit.release()  # no result for the output thread to take
                self._frame_failed(frame, error)
                continue
            jobs.put(Job(frame, prepared, outputs, {**record, **timer.take_record()}, started))
            self._show_latest()
            if time.perf_counter() >= next_log:
                log.info("%s", self.rolling_line())
                next_log = time.perf_counter() + self.options.log_every

    def _request_frame(self) -> bool:
        """Live sources: wait (up to 0.2 s) until the output thread has taken the previous result, then ask the
        capture thread for the newest frame. False if the wait timed out."""
        if not self._output_credit.acquire(timeout=0.2):
            return False
        self._frame_wanted.set()
        return True

    def _prepare_worker(self, ready: queue.Queue) -> None:
        """Capture thread side: read frames in order (or, live, the newest when one is asked for) and preprocess."""
        timer = self.detector.timer
        frames_read = 0
        try:
            while not self._stopping():
                if self.options.max_frames is not None and frames_read >= self.options.max_frames:
                    break
                if self.source.live and not self._frame_wanted.wait(timeout=0.2):
                    continue
                with timer.stage("capture"):
                    frame = self.source.read(timeout=0.2)
                if frame is None:
                    timer.take_record()
                    if self.source.finished:
                        break
                    continue
                started = time.perf_counter()
                frames_read += 1
                try:
                    prepared = self.detector.prepare(frame.image)
                except Exception as error:  # an undecodable frame: logged, the run goes on
                    timer.take_record()
                    self._frame_failed(frame, error)
                    continue
                self._frame_wanted.clear()  # served (before the hand-over, so the next request is never lost)
                if not self._offer(ready, (frame, prepared, timer.take_record(), started)):
                    break
        except Exception as error:  # too many failures in a row, or a source that broke: like the end of the
            # stream, the frames already read are still processed and written; then the run ends with this error
            log.error("capture thread stopped: %s: %s", type(error).__name__, error)
            self._capture_error = error
        finally:
            self._offer(ready, None)

    def _stopping(self) -> bool:
        return self.options.stop_event.is_set() or self._reading_done.is_set() or self._worker_error is not None

    def _offer(self, ready: queue.Queue, item) -> bool:
        """Put `item` unless the loop is stopping; False if it was not delivered."""
        while True:
            try:
                ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                if self._stopping():
                    return False

    def _frame_failed(self, frame, error: Exception) -> None:
        with self._lock:
            self.frames_failed += 1
            self._consecutive_failures += 1
            consecutive = self._consecutive_failures
        log.warning("frame %d of %s failed: %s: %s", frame.index, frame.source, type(error).__name__, error)
        if isinstance(error, EdgedetError) or consecutive >= MAX_CONSECUTIVE_FAILURES:
            raise EdgedetError(f"{consecutive} frames in a row failed; last error: {error}"
                               if consecutive > 1 else str(error))

    # ---- the output thread

    def _output_worker(self, jobs: queue.Queue) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            if self.source.live:
                self._output_credit.release()  # taken: the inference thread may start the next frame
            if self._worker_error is not None:
                continue
            try:
                self._output(job)
            except EdgedetError as error:  # an output that cannot be written: stop the run with its message
                self._worker_error = error
                self.options.stop_event.set()
            except Exception as error:  # one bad frame: log it and go on
                with self._lock:
                    self.frames_failed += 1
                log.warning("frame %d of %s: output failed: %s: %s", job.frame.index, job.frame.source,
                            type(error).__name__, error)
                self.detector.timer.take_record()

    def _output(self, job: Job) -> None:
        from .detections import Detections
        from .sinks import detections_to_dicts

        detector, timer = self.detector, self.detector.timer
        detections = detector.finish(job.outputs, job.prepared)
        if self.video_sink or self.server or self.options.show:
            # the semantic map is only drawn (the JSON lines carry instances), so it is built only for drawing
            semantic = detector.finish_semantic(job.outputs, job.prepared) if detector.has_semantic else None
            with timer.stage("draw"):
                canvas = self._annotate(job.frame.image, detections, semantic, self.fps(), job.record)
        now = time.perf_counter()
        timer.add("end_to_end", (now - job.started) * 1000.0)
        timer.add("frame_age", (now - job.frame.monotonic) * 1000.0)
        record = {**job.record, **timer.take_record()}
        with timer.stage("output"):
            if self.json_sink:
                self.json_sink.write(job.frame, detections, record)
            if self.video_sink:
                self.video_sink.write(canvas)
            if self.server:
                self.server.publish(canvas)
            if self.options.show:
                self._display_frame = canvas
        record.update(timer.take_record())
        if self.latency_log:
            self.latency_log.write(job.frame.index, record, source=job.frame.source)
        with self._lock:
            self.frames_done += 1
            self._times.append(time.perf_counter())
            if self.server:  # boxes only (no masks) of the 20 best, for the status page
                top = detections[:20]
                self.last_detections = detections_to_dicts(Detections(top.xyxy, top.scores, top.class_ids),
                                                           detector.spec.names)

    def _annotate(self, image, detections, semantic, fps, record):
        from .draw import annotate

        return annotate(image, detections, self.detector.spec.names, semantic=semantic, fps=fps,
                        latency_ms={"inference": record.get("inference", 0.0),
                                    "end_to_end": self._p50("end_to_end")})

    def _p50(self, stage: str) -> float:
        p50 = self.detector.timer.recent(stage)["p50"]
        return 0.0 if p50 != p50 else p50  # NaN before the stage's first frame

    def _show_latest(self) -> None:
        if not self.options.show or self._display_frame is None:
            return
        import cv2

        cv2.imshow("edgedet", self._display_frame)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.options.stop_event.set()

    # ---- status, summary, shutdown

    def fps(self) -> float:
        """Output frames per second over the recent window."""
        with self._lock:
            times = list(self._times)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def rolling_line(self) -> str:
        from .latency import format_rolling_line

        return format_rolling_line(self.detector.timer.rolling(), self.fps())

    def status(self) -> dict:
        """The status page's data: FPS, per-stage rolling p50/p90/p99, last detections, model, backend, threads."""
        backend = self.detector.backend
        stages = {name: {k: s[k] for k in ("p50", "p90", "p99")} for name, s in self.detector.timer.rolling().items()}
        with self._lock:
            detections = list(self.last_detections)
            frames = self.frames_done
        return {"fps": round(self.fps(), 2), "frames": frames, "stages": stages, "detections": detections,
                "model": os.path.basename(self.options.model), "backend": getattr(backend, "name", type(backend).__name__),
                "runtime": backend.describe() if hasattr(backend, "describe") else "",
                "threads": getattr(backend, "threads", None), "source": self.source.name if self.source else "",
                "dropped": getattr(self.source, "dropped", 0), "reconnects": getattr(self.source, "reconnects", 0)}

    def _print_summary(self) -> None:
        from .latency import format_summary_table

        summary = self.detector.timer.summary()
        timed = summary.get("end_to_end", {}).get("count", 0)
        average = self.frames_done / self.loop_seconds if self.loop_seconds > 0 else 0.0
        lines = [f"edgedet run: {self.frames_done} frames in {self.loop_seconds:.2f} s = {average:.2f} FPS, "
                 f"{self.frames_failed} failed, model {self.detector.describe()}"]
        if self.source is not None and self.source.live:
            lines.append(f"edgedet run: live source dropped {self.source.dropped} stale frames, "
                         f"reconnected {self.source.reconnects} times")
        if timed:
            lines.append(format_summary_table(summary))
        print("\n".join(lines), flush=True)

    def _close(self) -> None:
        for name in ("source", "json_sink", "video_sink", "latency_log", "server"):
            resource = getattr(self, name)
            if resource is None:
                continue
            try:
                resource.close()
            except Exception as error:  # closing one output must not keep the others open
                log.warning("closing %s failed: %s", name, error)
        if self.options.show:
            import cv2

            cv2.destroyAllWindows()


def _core_list(cores) -> str:
    return ",".join(str(c) for c in sorted(cores))


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def _display_available() -> bool:
    """True when an OpenCV window can be opened (a display exists and OpenCV has a GUI backend)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import cv2

    try:
        cv2.namedWindow("edgedet", cv2.WINDOW_NORMAL)
        return True
    except cv2.error:
        return False


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
