"""The frame loop of `edgedet run`: a model on a source, every finished frame handed to a list of sinks.

The loop is pipelined so that inference overlaps the rest (for a live source, a frame is pulled just in time
instead: see `Runner._loop`):

    capture thread      decode / grab frames (files: in order, bounded queue; live: newest frame only)
    prepare thread      read frame -> preprocess -> bounded queue
    main thread                                     backend.run ----------------------> next prepared frame
    output thread                                               decode, NMS, masks -> draw (if a sink needs
                                                                it) -> every sink (device.sinks)
When inference runs fewer threads than the process has cores, it keeps cores of its own and every other thread
runs on the rest, so Python work never preempts inference; when it uses every core, the other threads share only
the last one (`device.affinity`).

Every stage is timed (capture wait, preprocess, inference, decode, nms, masks, semantic, draw, output,
end_to_end, frame_age); a rolling p50/p90/p99 line is logged every few seconds and a summary table is
printed at exit. Setting `RunOptions.stop_event` (device.app's SIGINT / SIGTERM handlers do) stops the loop
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
from .capture import Frame, open_source
from .detections import Detections
from .draw import annotate
from .errors import EdgedetError
from .latency import format_rolling_line, format_summary_table
from .pipeline import Detector, Prepared
from .sinks import (CropSink, FrameResult, ImageFolderSink, JsonLinesSink, LabelsSink, LatencyLogSink, Sink,
                    VideoSink, WindowSink, check_video_path, display_available, is_image_folder)
from .stream import StreamSink, parse_host_port

log = logging.getLogger("edgedet.run")
MAX_CONSECUTIVE_FAILURES = 50  # the loop gives up only when this many frames in a row fail
# GIL switch interval during the loop (s). When inference returns, the main thread needs the GIL back; with
# Python's default 5 ms a busy capture/output thread keeps it for up to 5 ms each time (measured: p90 gap between
# two backend.run calls 6.7-8.9 ms at 0.005 s vs 0.15 ms at 0.0005 s, int8 TFLite, 2 threads).
LOOP_SWITCH_INTERVAL = 0.0005


@dataclass
class RunOptions:
    """Everything `edgedet run` was asked to do, validated (device.app builds it from the command line)."""

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
    save: Optional[str] = None  # annotated video path, or a folder (ending in / or existing) for annotated images
    save_txt: Optional[str] = None  # folder for YOLO label files, one per frame
    save_crop: Optional[str] = None  # folder for per-object crops, <class name>/<stem>_<k>.jpg
    json: Optional[str] = None  # JSON lines path
    stream: Optional[str] = None  # HOST:PORT of the HTTP server
    latency_log: Optional[str] = None  # per-frame latency JSON lines path
    max_frames: Optional[int] = None  # stop after this many frames
    log_every: float = 5.0  # seconds between rolling latency lines
    open_timeout: float = 5.0  # seconds for a live source to open
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


def build_sinks(options: RunOptions, names: Sequence[str], fps: float, status: Callable[[], dict]) -> List[Sink]:
    """The sinks the options ask for. names: class names, index = class id; fps: the source's frame rate (0 when
    unknown); status: the run's status for the stream's page. If one sink cannot open, those opened are closed."""
    sinks: List[Sink] = []
    try:
        if options.json:
            sinks.append(JsonLinesSink(options.json, names))
        if options.save and is_image_folder(options.save):
            sinks.append(ImageFolderSink(options.save))
        elif options.save:
            sinks.append(VideoSink(options.save, fps=fps))
        if options.save_txt:
            sinks.append(LabelsSink(options.save_txt))
        if options.save_crop:
            sinks.append(CropSink(options.save_crop, names))
        if options.latency_log:
            sinks.append(LatencyLogSink(options.latency_log))
        if options.stream:
            sinks.append(StreamSink(*parse_host_port(options.stream), status, names))
        if options.show and display_available():
            sinks.append(WindowSink())
        elif options.show:
            log.warning("--show: no display available (or OpenCV has no GUI); use --stream 127.0.0.1:8080 "
                        "and open it in a browser instead")
    except BaseException:
        close_sinks(sinks)
        raise
    return sinks


def close_sinks(sinks: Sequence[Sink]) -> None:
    """Close every sink; one that fails is logged and does not keep the others open."""
    for sink in sinks:
        try:
            sink.close()
        except Exception as error:
            log.warning("closing %s failed: %s", type(sink).__name__, error)


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
    """Owns the detector, the source, the sinks and the two threads of one `edgedet run`."""

    def __init__(self, options: RunOptions):
        self.options = options
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

    # ---- setup

    def _open(self) -> None:
        o = self.options
        check_output_options(o)
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
        self.sinks = build_sinks(o, self.detector.spec.names, getattr(self.source, "fps", 0.0), self.status)

    # ---- the loop

    def run(self) -> int:
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
        previous, cv2_threads = sys.getswitchinterval(), cv2.getNumThreads()
        sys.setswitchinterval(min(previous, LOOP_SWITCH_INTERVAL))
        cv2.setNumThreads(1)  # stages already overlap; OpenCV's own pool would only spin beside inference
        try:
            self._pipelined_loop()
        finally:
            sys.setswitchinterval(previous)
            cv2.setNumThreads(cv2_threads)

    def _pipelined_loop(self) -> None:
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
            self._pump_sinks()
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
        """Main-thread work of the sinks (a window's GUI events); a sink may ask to stop the run."""
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
        semantic = canvas = None
        if any(sink.needs_canvas for sink in self.sinks):
            overlay = any(sink.needs_canvas and sink.wants_overlay for sink in self.sinks)
            semantic, canvas = self._draw(job, detections, fps if overlay else None)
        now = time.perf_counter()
        timer.add("end_to_end", (now - job.started) * 1000.0)
        timer.add("frame_age", (now - job.frame.monotonic) * 1000.0)
        result = FrameResult(job.frame, detections, {**job.record, **timer.take_record()}, semantic, fps)
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
        """(semantic label map (H, W) or None, annotated canvas uint8 BGR (H, W, 3)) of one frame; with `fps`,
        the FPS/latency line too."""
        detector = self.detector
        # the semantic map is only drawn (the JSON lines carry instances), so it is built only for drawing
        semantic = detector.finish_semantic(job.outputs, job.prepared) if detector.has_semantic else None
        with detector.timer.stage("draw"):
            canvas = annotate(job.frame.image, detections, detector.spec.names, semantic=semantic, fps=fps,
                              latency_ms=None if fps is None else {"inference": job.record.get("inference", 0.0),
                                                                   "end_to_end": self._p50("end_to_end")})
        return semantic, canvas

    def _p50(self, stage: str) -> float:
        p50 = self.detector.timer.recent(stage)["p50"]
        return 0.0 if p50 != p50 else p50  # NaN before the stage's first frame

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
        """The run's status for the status page: FPS, per-stage rolling p50/p90/p99, model, backend, threads."""
        backend = self.detector.backend
        stages = {name: {k: s[k] for k in ("p50", "p90", "p99")} for name, s in self.detector.timer.rolling().items()}
        with self._lock:
            frames = self.frames_done
        return {"fps": round(self.fps(), 2), "frames": frames, "stages": stages,
                "model": os.path.basename(self.options.model), "backend": getattr(backend, "name", type(backend).__name__),
                "runtime": backend.describe() if hasattr(backend, "describe") else "",
                "threads": getattr(backend, "threads", None), "source": self.source.name if self.source else "",
                "dropped": getattr(self.source, "dropped", 0), "reconnects": getattr(self.source, "reconnects", 0)}

    def _print_summary(self) -> None:
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
        if self.source is not None:
            try:
                self.source.close()
            except Exception as error:  # closing the source must not keep the outputs open
                log.warning("closing source failed: %s", error)
        close_sinks(self.sinks)


def _core_list(cores) -> str:
    return ",".join(str(c) for c in sorted(cores))


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
