"""The frame loop of `edgedet run`: a model on a source, every finished frame handed to a list of sinks.

The loop is pipelined so that inference overlaps the rest (for a live source, a frame is pulled just in time
instead: see `Runner._loop`):

    capture thread      decode / grab frames (files: in order, bounded queue; live: newest frame only)
    prepare thread      read frame -> preprocess -> bounded queue
    inference thread                                backend.run ----------------------> next prepared frame
    output thread                                               decode, NMS, masks -> draw (if a sink needs
                                                                it) -> every sink (device.sinks)
    main thread         the sinks' main-thread work (a window's events); the watchdog (device.watchdog): a stalled
                        live source reopened, a hung inference call abandoned and the backend recreated
    encoder threads     the --save video and the --stream JPEG encoding, handed over by the sinks, at idle priority
                        on every core: the CPU time the other threads leave over (device.affinity)
When inference runs fewer threads than the process has cores, it keeps cores of its own and every other thread
runs on the rest, so Python work never preempts inference; when it uses every core, the other threads share only
the last one (`device.affinity`).

Every stage is timed (capture wait, preprocess, inference, decode, nms, masks, semantic, draw, output,
end_to_end, frame_age, and in their own threads the stream's JPEG encode, "encode", and the video's, "save"); a
rolling p50/p90/p99 line naming every stage that ran is logged every few seconds and a summary table is printed
at exit. Setting `RunOptions.stop_event` (device.app's SIGINT / SIGTERM handlers do) stops the loop
cleanly: every sink flushed and closed, exit code 0.
"""
from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np

from .affinity import inference_cores, native_thread_ids
from .allocator import keep_freed_memory
from .backends import load_backend
from .capture import Frame, OpenStopped, Source, open_source
from .detections import Detections
from .draw import annotate, draw_zones, overlay_size, overlay_text
from .errors import EdgedetError, first_line
from .events import (DEFAULT_EVENT_QUEUE, DeliveryPolicy, MqttSink, SnapshotSink, WebhookSink, camera_name,
                     check_event_options)
from .health import dropped_events, event_stats
from .latency import StageTimer, format_rolling_line, format_summary_table
from .output_paths import check_outputs_spare_inputs
from .pipeline import Detector, Prepared
from .sinks import (CropSink, FrameResult, ImageFolderSink, JsonLinesSink, LabelsSink, LatencyLogSink, Sink,
                    VideoSink, WindowSink, check_video_path, display_available, is_image_folder)
from .stream import StreamSink, parse_host_port
from .thermals import ThermalState, read_thermals
from .tracking import Tracker
from .watchdog import MAX_ABANDONED_CALLS, MAX_CONSECUTIVE_HANGS, Hang, Watchdog
from .zones import Event, Line, Zone, ZoneCounter

log = logging.getLogger("edgedet.run")
MAX_CONSECUTIVE_FAILURES = 50  # the loop gives up only when this many frames in a row fail
# GIL switch interval during the loop (s). When inference returns, the main thread needs the GIL back; with
# Python's default 5 ms a busy capture/output thread keeps it for up to 5 ms each time (measured: p90 gap between
# two backend.run calls 6.7-8.9 ms at 0.005 s vs 0.15 ms at 0.0005 s, int8 TFLite, 2 threads).
LOOP_SWITCH_INTERVAL = 0.0005
OVERLAY_REFRESH_S = 0.25  # seconds between two readings of the end_to_end p50 the FPS band shows


@dataclass
class RunOptions:
    """Everything `edgedet run` was asked to do, validated (device.app builds it from the command line)."""

    model: str  # model file (or a backend object: `edgedet bench` times a checkpoint's torch backend)
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
    save: Optional[str] = None  # annotated video path, or a folder (ending in / or existing) for annotated images
    save_txt: Optional[str] = None  # folder for YOLO label files, one per frame
    save_crop: Optional[str] = None  # folder for per-object crops, <class name>/<stem>_<k>.jpg
    json: Optional[str] = None  # JSON lines path
    stream: Optional[str] = None  # HOST:PORT of the HTTP server
    latency_log: Optional[str] = None  # per-frame latency JSON lines path
    max_frames: Optional[int] = None  # stop after this many frames
    log_every: float = 5.0  # seconds between rolling latency lines
    open_timeout: float = 5.0  # seconds for a live source to open
    stall_timeout: float = 20.0  # seconds without a frame before a live source is reopened (device.watchdog)
    inference_timeout: float = 10.0  # seconds an inference call may take before the backend is recreated
    semantic: bool = True  # draw the semantic overlay and its legend when the model has one (--no-semantic: False)
    hide_labels: bool = False  # boxes without labels
    hide_conf: bool = False  # labels without the score
    line_width: int = 2  # box outline thickness in pixels
    mqtt: Optional[str] = None  # HOST[:PORT] of the MQTT broker for events, counts and status
    webhook: Optional[str] = None  # http(s) URL each event is POSTed to
    snapshot: Optional[str] = None  # folder for one annotated JPEG per event
    camera_name: Optional[str] = None  # name in MQTT topics and event payloads; None = made from the source
    event_queue: int = DEFAULT_EVENT_QUEUE  # events each event sink holds while its broker/server is away
    track: bool = False  # ByteTrack-style track ids on the detections (device.tracking); on with zones or lines
    zones: List[Zone] = field(default_factory=list)  # zones to count objects in (device.zones), --zone
    lines: List[Line] = field(default_factory=list)  # lines to count crossings of (device.zones), --line
    stop_event: threading.Event = field(default_factory=threading.Event)  # set to stop the loop from outside


def default_threads() -> int:
    """Inference threads of `edgedet run` without --threads: the cores this process may use but one (at least 1),
    so that capture, preprocessing and outputs keep a core and overlap with inference (on the 2-core development
    machine `edgedet run` is faster with 1 inference thread than with 2: README, "Measured figures")."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


# ---- the sinks of one run, from its options


def check_output_options(options: RunOptions) -> None:
    """Validate the output flags that can be checked before the (slow) model load, so bad input fails fast."""
    if options.stream:
        parse_host_port(options.stream)
    if options.save and not is_image_folder(options.save):
        check_video_path(options.save)
    check_output_files(options)
    check_event_options(options.mqtt, options.webhook, options.camera_name, options.source)
    if not (options.zones or options.lines):
        for flag, value in (("--webhook", options.webhook), ("--snapshot", options.snapshot)):
            if value:
                log.warning("%s is written on zone and line events only: without --zone or --line it gets none",
                            flag)


def check_output_files(options: RunOptions) -> None:
    """EdgedetError when an output file would replace an input (the source file, an image of the source folder,
    the model) or two outputs name one file (their lines would interleave into neither)."""
    video = options.save if options.save and not is_image_folder(options.save) else None
    source = options.source if isinstance(options.source, (str, os.PathLike)) and not str(options.source).isdigit() \
        else None
    model = options.model if isinstance(options.model, (str, os.PathLike)) else None
    source_kind = "the source folder" if source is not None and os.path.isdir(source) else "the source file"
    check_outputs_spare_inputs([("--save", video), ("--json", options.json), ("--latency-log", options.latency_log)],
                               [(source_kind, source), ("the model", model)])


def make_tracker(options: RunOptions) -> Optional[Tracker]:
    """The run's tracker: with --track, or with --zone / --line, which count tracks and so turn tracking on."""
    if (options.zones or options.lines) and not options.track:
        log.info("--zone/--line count tracked objects: tracking is on (as with --track)")
    return Tracker() if options.track or options.zones or options.lines else None


def build_sinks(options: RunOptions, names: Sequence[str], fps: float, status: Callable[[], dict],
                timer: Optional[StageTimer] = None) -> List[Sink]:
    """The sinks the options ask for. names: class names, index = class id; fps: the source's frame rate (0 when
    unknown); status: the run's status for the stream's page; timer: the run's, for the stream's "encode" stage.
    If one sink cannot open, those opened are closed."""
    sinks: List[Sink] = []
    try:
        if options.json:
            sinks.append(JsonLinesSink(options.json, names))
        if options.save and is_image_folder(options.save):
            sinks.append(ImageFolderSink(options.save, timer=timer))
        elif options.save:
            sinks.append(VideoSink(options.save, fps=fps, timer=timer))
        if options.save_txt:
            sinks.append(LabelsSink(options.save_txt))
        if options.save_crop:
            sinks.append(CropSink(options.save_crop, names))
        if options.latency_log:
            sinks.append(LatencyLogSink(options.latency_log))
        if options.stream:
            sinks.append(StreamSink(*parse_host_port(options.stream), status, names, timer=timer))
        camera, events_policy = camera_name(options.camera_name, options.source), DeliveryPolicy(options.event_queue)
        if options.mqtt:
            sinks.append(MqttSink(options.mqtt, camera, events_policy))
        if options.webhook:
            sinks.append(WebhookSink(options.webhook, camera, events_policy))
        if options.snapshot:
            sinks.append(SnapshotSink(options.snapshot, names, zones=options.zones, lines=options.lines))
        if options.show and display_available():
            sinks.append(WindowSink())
        elif options.show:
            log.warning("--show: no display available (or OpenCV has no GUI); use --stream 127.0.0.1:8080 "
                        "and open it in a browser instead")
    except BaseException:
        close_sinks(sinks)
        raise
    return sinks


def close_sinks(sinks: Sequence[Sink]) -> Optional[EdgedetError]:
    """Close every sink; one that fails does not keep the others open. Returns the first EdgedetError a sink
    raised (an output that could not be completed, e.g. a background encoder's last frames: the run's error), and
    logs any other failure."""
    first = None
    for sink in sinks:
        try:
            sink.close()
        except EdgedetError as error:
            first = first or error
        except Exception as error:
            log.warning("closing %s failed: %s", type(sink).__name__, error)
    return first


# ---- the run


@dataclass
class Job:
    """One frame between the inference thread and the output thread."""

    frame: Frame  # the captured frame
    prepared: Prepared  # its network input and letterbox
    outputs: Dict[str, np.ndarray]  # raw backend outputs by role
    record: Dict[str, float]  # stage ms measured so far (capture, preprocess, inference)
    started: float  # perf_counter when the loop received the frame


class Runner:
    """Owns the detector, the source, the sinks and the threads of one `edgedet run`: prepare, inference (recreated
    after a hung call) and output, beside the source's and the sinks' own, with this thread supervising."""

    def __init__(self, options: RunOptions, source: Optional[Source] = None, extra_sinks: Sequence[Sink] = ()):
        self.options = options
        self.given_source = source  # a Source to read instead of opening options.source (edgedet bench's frames)
        self.extra_sinks = list(extra_sinks)  # sinks after those of the options (edgedet bench's timing probe)
        self.thermals: Dict[str, ThermalState] = {}  # "start" / "end" of the frame loop (device.thermals)
        self.frames_done = 0  # frames fully output
        self.frames_failed = 0  # frames whose processing raised (logged, skipped)
        self.signals: List[str] = []  # names of the signals that stopped the run (device.app's handlers append)
        self.loop_seconds = 0.0  # wall time of the frame loop (after the model and source are open)
        self.sinks: List[Sink] = []  # every output, in writing order (built once the model and source are open)
        self._times: deque = deque(maxlen=120)  # perf_counter of recent outputs, for the rolling FPS
        self._lock = threading.Lock()
        self._worker_error: Optional[BaseException] = None  # an output failed for good: stop now
        self._capture_error: Optional[BaseException] = None  # the source broke: finish the frames read, then fail
        self._consecutive_failures = 0  # frames in a row that failed
        self._reading_done = threading.Event()  # set when the inference loop ends: the capture thread stops
        self._inference_threads: Set[int] = set()  # kernel ids of the threads that run inference
        # live sources are pulled just in time (`_loop`): the inference thread asks for a frame when it can start
        # on it, and only once the output thread has taken the previous result
        self._frame_wanted = threading.Event()
        self._output_credit = threading.Semaphore(1)
        self.detector: Optional[Detector] = None
        self.source = None  # device.capture.Source
        self.tracker: Optional[Tracker] = None  # with --track, --zone or --line
        self.zone_counter: Optional[ZoneCounter] = None  # with --zone or --line, made at the first frame (its size)
        self.counts: Optional[dict] = None  # the zones' and lines' counts after the latest frame
        self.watchdog: Optional[Watchdog] = None  # stalls and hung inference calls (device.watchdog), with the source
        self._run_started = time.perf_counter()  # for the status' uptime
        self._loop_started: Optional[float] = None  # perf_counter when the frame loop began
        # inference runs in a thread of its own, so that a hung call can be abandoned (`_recover_from_hang`)
        self._inference_thread: Optional[threading.Thread] = None  # the current one; None once given up
        self._inference_error: Optional[BaseException] = None  # what ended the inference thread, raised by run()
        self._abandoned: List[threading.Thread] = []  # inference threads left in a hung call (each holds a backend)
        self._pumps = False  # some sink has main-thread work (`pump_events`): the main thread is woken per frame
        self._frame_sent = threading.Event()  # set by the inference thread after each frame when `_pumps`
        self._overlay_p50, self._overlay_due = 0.0, 0.0  # the FPS band's end_to_end p50 and when it is next read

    # ---- setup

    def _open(self) -> None:
        o = self.options
        check_output_options(o)
        t0 = time.perf_counter()
        before = native_thread_ids()
        self.detector = Detector(self._load_backend(), conf=o.conf, iou=o.iou, max_det=o.max_det,
                                 classes=o.classes, agnostic=o.agnostic)
        # this thread and the runtime's own pool (started while loading) run inference
        self._inference_threads = (native_thread_ids() - before) | {threading.get_native_id()}
        log.info("model %s loaded in %.2f s", self.detector.describe(), time.perf_counter() - t0)
        self.source = self.given_source or open_source(o.source, imgsz=self.detector.spec.input_size_hw,
                                                       open_timeout=o.open_timeout, stop=o.stop_event)
        log.info("source %s (%s)", self.source.name, "live" if self.source.live else "in order, no frame dropped")
        self.sinks = build_sinks(o, self.detector.spec.names, getattr(self.source, "fps", 0.0), self.status,
                                 self.detector.timer)
        self.sinks += self.extra_sinks
        self.tracker = self.detector.tracker = make_tracker(o)  # Detector.track times it (stage "track")
        self.watchdog = Watchdog(o.stall_timeout, o.inference_timeout, self.source, self._totals)

    def _load_backend(self):
        """The backend of `options.model`: loaded from the file with the options' runtime, threads and spec flags
        (at start, and again after a hung call), or the backend object given instead of a file."""
        o = self.options
        if not _is_model_file(o.model):
            return o.model
        threads = o.threads if o.threads is not None else default_threads()
        return load_backend(o.model, backend=o.backend, threads=threads, names=o.names, layout=o.layout,
                            imgsz=o.imgsz)

    # ---- the loop

    def run(self) -> int:
        try:
            try:
                self._open()
            except OpenStopped:  # Ctrl-C while a camera or stream was still opening: a stop, not a failure
                log.info("%s while opening the source: stopped", f"{self.signals[0]} received" if self.signals
                         else "stop asked")
                return 0
            self._read_thermals("start")
            start = time.perf_counter()
            try:
                self._loop()
            finally:
                self.loop_seconds = time.perf_counter() - start
                self._read_thermals("end")
                if self.signals:
                    log.info("%s received: stopped", self.signals[0])
        finally:
            self._close()
        if self.detector is not None:
            self._print_summary()
        error = self._worker_error or self._capture_error
        if error is not None:
            raise error
        if self.frames_done == 0 and not self.options.stop_event.is_set():
            raise EdgedetError(self._nothing_done())
        return 0

    def _nothing_done(self) -> str:
        """Why a run that ended by itself wrote no frame: its frames all failed, or none could be read."""
        unreadable = getattr(self.source, "unreadable", 0)
        if self.frames_failed:
            return f"no frame was processed: all {self.frames_failed} failed (see the warnings above)"
        if unreadable:
            return f"no frame of {self.source.name} could be read ({unreadable} unreadable, skipped)"
        return f"{self.source.name if self.source is not None else 'the source'} gave no frame"

    def _read_thermals(self, when: str) -> None:
        """CPU temperature and throttling at the loop's "start" or "end" (a throttled Pi halves its speed); the
        start is logged, both go into the summary, when this machine has them."""
        state = self.thermals[when] = read_thermals()
        if when == "start" and state.present:
            log.info("thermals at start: %s", state.summary())

    def _loop(self) -> None:
        """Inference, capture + preprocess, and postprocess + outputs in threads of their own; this thread runs the
        sinks' main-thread work and the watchdog (`_supervise`).

        Files are read ahead through small queues, so every stage stays busy. A live source is pulled just in
        time instead, so that no frame waits in a queue while the camera moves on: the inference thread starts a
        frame only once the output thread has taken the previous result, and only then does the capture thread
        read the camera's newest frame and preprocess it. A frame's age at output is then about two output-stage
        times when drawing is the bottleneck (not one per queued frame), and inference time plus output when
        inference is.

        Meanwhile the GIL switch interval is shortened so that inference gets the GIL back promptly, OpenCV
        calls run single-threaded (its worker pool active-waits after each call, taking cycles from inference), and
        inference and the other threads run on separate cores where they can (`device.affinity`), and the
        frame-sized buffers freed by one frame are reused by the next instead of faulted in afresh
        (`device.allocator`)."""
        keep_freed_memory()
        previous, cv2_threads = sys.getswitchinterval(), cv2.getNumThreads()
        sys.setswitchinterval(min(previous, LOOP_SWITCH_INTERVAL))
        cv2.setNumThreads(1)  # stages already overlap; OpenCV's own pool would only spin beside inference
        try:
            self._pipelined_loop()
        finally:
            sys.setswitchinterval(previous)
            cv2.setNumThreads(cv2_threads)

    def _pipelined_loop(self) -> None:
        self._loop_started = time.perf_counter()
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
                self._start_inference(ready, jobs)  # started here, it runs on the inference cores
                self._supervise(ready, jobs)
        finally:
            self._end_inference()
            self._reading_done.set()
            _drain(ready)
            preparer.join()
            jobs.put(None)
            worker.join()
        if self._inference_error is not None:
            raise self._inference_error

    # ---- the inference thread and its watchdog

    def _start_inference(self, ready: queue.Queue, jobs: queue.Queue) -> None:
        """Start an inference thread, of the watchdog's current generation."""
        self._pumps = any(type(sink).pump_events is not Sink.pump_events for sink in self.sinks)
        self._inference_thread = threading.Thread(target=self._inference_worker, name="edgedet-inference",
                                                  args=(ready, jobs, self.watchdog.inference.generation), daemon=True)
        self._inference_thread.start()

    def _inference_worker(self, ready: queue.Queue, jobs: queue.Queue, generation: int) -> None:
        try:
            self._infer_frames(ready, jobs, generation)
        except BaseException as error:  # raised by run() once the other threads are done
            self._inference_error = error
        finally:
            self._frame_sent.set()  # the main thread may be waiting for a frame: this thread has ended

    def _supervise(self, ready: queue.Queue, jobs: queue.Queue) -> None:
        """The main thread while inference runs: the sinks' main-thread work after each frame (when a sink has
        any), the watchdog's checks a few times a second and, after a hung call, a new inference thread."""
        stop = self.options.stop_event
        while self._inference_thread is not None and self._inference_thread.is_alive() and not stop.is_set():
            if self._pumps:
                self._frame_sent.wait(self.watchdog.interval)
                self._frame_sent.clear()
                self._pump_sinks()
            else:
                self._inference_thread.join(self.watchdog.interval)
            hang = self.watchdog.check()
            if hang is not None and not stop.is_set():  # stopping: no backend to recreate, the loop ends anyway
                self._recover_from_hang(hang, ready, jobs)

    def _recover_from_hang(self, hang: Hang, ready: queue.Queue, jobs: queue.Queue) -> None:
        """The watchdog abandoned a hung call (its thread is left behind): the frame counts as failed and a new
        inference thread goes on with a new backend. A backend that cannot be recreated, or hangs
        MAX_CONSECUTIVE_HANGS times in a row, or leaves more than MAX_ABANDONED_CALLS hung threads alive, ends the
        run (a service manager then restarts the process)."""
        with self._lock:
            self.frames_failed += 1
        if self.source.live:
            self._output_credit.release()  # the abandoned frame never reaches the output thread
        self._abandoned = [thread for thread in (*self._abandoned, self._inference_thread) if thread.is_alive()]
        self._inference_thread = None
        t0 = time.perf_counter()
        try:
            if hang.consecutive >= MAX_CONSECUTIVE_HANGS:
                raise EdgedetError(f"inference hung {hang.consecutive} times in a row (each longer than "
                                   f"--inference-timeout {self.options.inference_timeout:g} s); giving up")
            if len(self._abandoned) > MAX_ABANDONED_CALLS:  # each holds a backend: memory would only grow
                raise EdgedetError(f"{len(self._abandoned)} hung inference calls are still running (each longer "
                                   f"than --inference-timeout {self.options.inference_timeout:g} s); giving up")
            if not _is_model_file(self.options.model):
                raise EdgedetError("inference hung, and a backend given as an object cannot be recreated")
            self.detector.backend = self._load_backend()
        except Exception as error:
            self._worker_error = error if isinstance(error, EdgedetError) else EdgedetError(
                f"cannot recreate the backend after a hung inference call: {first_line(error)}")
            self.options.stop_event.set()
            return
        log.warning("backend recreated in %.2f s; inference goes on", time.perf_counter() - t0)
        self._start_inference(ready, jobs)

    def _end_inference(self) -> None:
        """No inference thread outlives the loop: one still running (this thread was interrupted) is abandoned and
        given a moment to end."""
        thread = self._inference_thread
        if thread is not None and thread.is_alive():
            if self.options.stop_event.is_set():
                thread.join(timeout=1.0)  # stopping: a call that is not hung finishes, and its frame is output
            self.watchdog.inference.abandon()
            thread.join(timeout=1.0)

    def _infer_frames(self, ready: queue.Queue, jobs: queue.Queue, generation: int) -> None:
        """Inference thread: prepared frames from `ready` -> backend -> `Job`s into `jobs`, until the end, a stop,
        or the watchdog abandoning this thread's call (`generation` is then an old one)."""
        stop, timer, watch = self.options.stop_event, self.detector.timer, self.watchdog.inference
        next_log = time.perf_counter() + self.options.log_every
        pull, requested = self.source.live, False
        while not stop.is_set() and self._worker_error is None and watch.generation == generation:
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
            watch.started(frame)
            try:
                outputs = self.detector.infer(prepared)
            except Exception as error:  # a bad frame must not end a long run
                if not watch.finished(generation):
                    return
                timer.take_record()
                if pull:
                    self._output_credit.release()  # no result for the output thread to take
                self._frame_failed(frame, error)
                continue
            if not watch.finished(generation):  # the watchdog gave up on this call; another thread has taken over
                log.warning("an abandoned inference call returned; its frame %d is dropped", frame.index)
                return
            self._consecutive_failures = 0
            jobs.put(Job(frame, prepared, outputs, {**record, **timer.take_record()}, started))
            if self._pumps:
                self._frame_sent.set()  # the main thread pumps the sinks' events
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

    def _pump_sinks(self) -> None:
        """Main-thread work of the sinks (a window's GUI events), after each frame; a sink may ask to stop the run."""
        for sink in self.sinks:
            if sink.pump_events():
                self.options.stop_event.set()

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

    def _frame_failed(self, frame: Frame, error: Exception) -> None:
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
        """Postprocess one inferred frame, draw it if some sink needs a canvas, and write it to every sink."""
        timer, fps = self.detector.timer, self.fps()
        detections = self.detector.finish(job.outputs, job.prepared)
        detections, events = self._track(job.frame, detections)
        semantic = canvas = None
        if any(sink.needs_canvas for sink in self.sinks):
            overlay = any(sink.needs_canvas and sink.wants_overlay for sink in self.sinks)
            semantic, canvas = self._draw(job, detections, fps if overlay else None)
        now = time.perf_counter()
        timer.add("end_to_end", (now - job.started) * 1000.0)
        timer.add("frame_age", (now - job.frame.monotonic) * 1000.0)
        result = FrameResult(job.frame, detections, {**job.record, **timer.take_record()}, semantic, fps,
                             events=events, counts=self.counts)
        with timer.stage("output"):
            for sink in self.sinks:
                if not sink.records_output_time:
                    sink.write(result, canvas)
        result = replace(result, latency_ms={**result.latency_ms, **timer.take_record()})
        for sink in self.sinks:
            if sink.records_output_time:
                sink.write(result, canvas)
        with self._lock:
            self.frames_done += 1
            self._times.append(time.perf_counter())

    def _draw(self, job: Job, detections: Detections, fps: Optional[float]) -> Tuple[Optional[np.ndarray], np.ndarray]:
        """(semantic label map (h', w') at half the model's input resolution or None, annotated canvas uint8 BGR
        (H, W, 3)) of one frame, drawn with the options' switches; with `fps`, the FPS/latency line too."""
        detector, o = self.detector, self.options
        # the semantic map is only drawn (the JSON lines carry instances), so it is built only for drawing, and at
        # half the model's input resolution: drawing resizes its colours to the frame once
        semantic = (detector.finish_semantic_to_draw(job.outputs, job.prepared)
                    if detector.has_semantic and o.semantic else None)
        latency = None if fps is None else {"inference": job.record.get("inference", 0.0),
                                            "end_to_end": self._overlay_end_to_end()}
        with detector.timer.stage("draw"):
            canvas = annotate(job.frame.image, detections, detector.spec.names, semantic=semantic, fps=fps,
                              latency_ms=latency, semantic_names=detector.spec.semantic_names,
                              hide_labels=o.hide_labels, hide_conf=o.hide_conf, line_width=o.line_width,
                              track_ids=detections.tracker_ids)
            if self.zone_counter is not None:  # their labels keep clear of the FPS band, as box labels do
                band_wh = (0, 0) if fps is None else overlay_size(canvas.shape[:2], overlay_text(fps, latency))
                draw_zones(canvas, self.zone_counter.zones, self.zone_counter.lines, self.counts, o.line_width,
                           clear_wh=band_wh)
        return semantic, canvas

    def _track(self, frame: Frame, detections: Detections) -> Tuple[Detections, Tuple[Event, ...]]:
        """With a tracker: the detections with track ids (stage "track") and, with zones or lines, this frame's
        events (stage "zones"; `self.counts` updated). Without: the detections as they are, no events."""
        if self.tracker is None:
            return detections, ()
        timer, o = self.detector.timer, self.options
        detections = self.detector.track(detections)
        if not (o.zones or o.lines):
            return detections, ()
        with timer.stage("zones"):
            if self.zone_counter is None:  # fractions of the frame are resolved against the first frame's size
                h, w = frame.image.shape[:2]
                self.zone_counter = ZoneCounter(o.zones, o.lines, size_wh=(w, h),
                                                forget_after=self.tracker.config.max_missed + 1)
            update = self.zone_counter.update(detections, frame.index, frame.timestamp)
        self.counts = update.counts
        return detections, tuple(update.events)

    def _overlay_end_to_end(self) -> float:
        """The end_to_end p50 the FPS band shows: recomputed at most every OVERLAY_REFRESH_S (a percentile of the
        recent window per frame would cost more than drawing the band)."""
        now = time.perf_counter()
        if now >= self._overlay_due:
            p50 = self.detector.timer.recent("end_to_end")["p50"]
            self._overlay_p50 = 0.0 if p50 != p50 else p50  # NaN before the stage's first frame
            self._overlay_due = now + OVERLAY_REFRESH_S
        return self._overlay_p50

    # ---- status, summary, shutdown

    def fps(self) -> float:
        """Output frames per second over the recent window."""
        with self._lock:
            times = list(self._times)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def rolling_line(self) -> str:
        return format_rolling_line(self.detector.timer.rolling(), self.fps())

    def status(self) -> dict:
        """The run's status for the status page: FPS, per-stage rolling p50/p90/p99, model, backend, threads; with
        tracking the number of tracks, with zones or lines their counts."""
        backend = self.detector.backend
        stages = {name: {k: s[k] for k in ("p50", "p90", "p99")} for name, s in self.detector.timer.rolling().items()}
        with self._lock:
            frames = self.frames_done
        status = {"fps": round(self.fps(), 2), "frames": frames, "stages": stages,
                  "model": _model_name(self.options.model), "backend": getattr(backend, "name", type(backend).__name__),
                  "runtime": backend.describe() if hasattr(backend, "describe") else "",
                  "threads": getattr(backend, "threads", None), "source": self.source.name if self.source else "",
                  "dropped": getattr(self.source, "dropped", 0), "reconnects": getattr(self.source, "reconnects", 0),
                  **self._service_status()}
        if self.tracker is not None:  # confirmed tracks, seen or briefly lost
            status["tracks"] = int(len(self.tracker.active_ids))
        if self.counts is not None:  # the zones' and lines' counts after the latest frame
            status["counts"] = self.counts
        return status

    def _service_status(self) -> dict:
        """The status' part for a service (and /healthz, device.health): uptime, last frame age, the watchdog's
        counters, the event sinks' stats() and the counters per hour of the last 24 hours."""
        now = time.perf_counter()
        with self._lock:
            last = self._times[-1] if self._times else (self._loop_started or now)
        events, totals = event_stats(self.sinks), self._totals()
        if self.watchdog is not None:
            self.watchdog.hourly.update(totals)
        return {"uptime_s": round(now - self._run_started, 1), "last_frame_age_s": round(now - last, 3),
                "failed_frames": totals["failed_frames"], "stalls": totals["stalls"],
                "inference_hangs": totals["inference_hangs"], "dropped_events": totals["dropped_events"],
                "events": events, "stall_timeout_s": self.options.stall_timeout,
                "inference_timeout_s": self.options.inference_timeout,
                "hourly": self.watchdog.hourly.table() if self.watchdog is not None else []}

    def _totals(self) -> Dict[str, int]:
        """The running totals the watchdog counts per hour (device.watchdog.HOURLY_COUNTERS)."""
        return {"stalls": getattr(self.source, "stalls", 0), "reconnects": getattr(self.source, "reconnects", 0),
                "inference_hangs": self.watchdog.hangs if self.watchdog is not None else 0,
                "failed_frames": self.frames_failed, "dropped_events": dropped_events(event_stats(self.sinks))}

    def _print_summary(self) -> None:
        summary = self.detector.timer.summary()
        timed = summary.get("end_to_end", {}).get("count", 0)
        average = self.frames_done / self.loop_seconds if self.loop_seconds > 0 else 0.0
        unreadable = getattr(self.source, "unreadable", 0)
        lines = [f"edgedet run: {self.frames_done} frames in {self.loop_seconds:.2f} s = {average:.2f} FPS, "
                 f"{self.frames_failed} failed, " + (f"{unreadable} unreadable (skipped), " if unreadable else "")
                 + f"model {self.detector.describe()}"]
        if self.source is not None and self.source.live:
            lines.append(f"edgedet run: live source dropped {self.source.dropped} stale frames, "
                         f"reconnected {self.source.reconnects} times")
        if timed:
            lines.append(format_summary_table(summary))
        if any(state.present for state in self.thermals.values()):
            lines.append("edgedet run: thermals: " + "; ".join(f"{when} {state.summary()}"
                                                              for when, state in self.thermals.items()))
        print("\n".join(lines), flush=True)

    def _close(self) -> None:
        if self.source is not None:
            try:
                self.source.close()
            except Exception as error:  # closing the source must not keep the outputs open
                log.warning("closing source failed: %s", error)
        error = close_sinks(self.sinks)
        if error is not None and self._worker_error is None:
            self._worker_error = error


def _model_name(model) -> str:
    """The model file's name, or a backend object's runtime name (bench passes a checkpoint's torch backend)."""
    return os.path.basename(model) if isinstance(model, (str, os.PathLike)) else getattr(model, "name", "backend")


def _is_model_file(model) -> bool:
    """Whether RunOptions.model is a file path (a backend object is the other case)."""
    return isinstance(model, (str, os.PathLike))


def _core_list(cores) -> str:
    return ",".join(str(c) for c in sorted(cores))


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
