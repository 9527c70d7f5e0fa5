"""`edgedet bench`: accuracy and the latency of the deployed loop for model variants, measured the same way on
the same data.

    edgedet bench --models A.onnx B.tflite CKPT.pt --data DATASET [--threads 1,2] [--frames N] --out DIR
                  [--conf 0.25] [--iou 0.45] [--warmup 10] [--repeats 100] [--outputs json,save,stream]
    edgedet bench --sweep CKPT --data DATASET [--imgsz 224,320] [--threads 1,2] [--formats onnx,onnx-int8,...] --out DIR

For each model x input size x thread count, in a Python process of its own (so its peak memory is that of the
runtime alone, as on a device, and a crash in one variant does not stop the others), three passes over the
validation images (the first --frames of them):

1. accuracy: `edgedet.evaluate.evaluate_model` at MAP_CONF (0.001) and NMS IoU MAP_NMS_IOU (0.6), as for COCO mAP;
2. deploy_accuracy: the same at the deployment threshold (--conf, --iou); precision, recall and F1 of its boxes,
   matched at IoU MATCH_IOU (0.5) greedily by score per image and class as COCOeval matches;
3. timed: the loop of `edgedet run` itself (`device.runner.Runner`: capture, preprocess and output threads around
   inference, the same sinks) at the deployment threshold on the val images shown over and over like a camera;
   --warmup frames first, then --repeats timed frames. With --outputs it writes them as `edgedet run --json /
   --save / --stream` would, into a temporary folder, with a viewer reading the MJPEG stream.

Results: DIR/results.jsonl, one record per variant, written and flushed as each variant finishes, and
DIR/results.csv (the same records flattened), rewritten after every variant. The record (schema version 2):

    schema_version   int    SCHEMA_VERSION; `edgedet report` refuses other versions (version 1 with a note why)
    variant          str    label unique within a run, e.g. "edgedet-n-320.int8 onnx int8 320px 2t"
    model            dict   path, name (file stem), format ("onnx" | "tflite" | "pytorch"), precision ("fp32" |
                            "fp16" | "int8"), runtime ("onnxruntime" | "tflite" | "torch"), layout (the spec's:
                            "edgedet" for the YOLO family, "ssd", or a foreign layout), size_mb (file size, MB)
    imgsz            int    network input size (square), pixels
    threads          int    inference threads
    data             dict   path of the data set, images (number evaluated), failed_images (per-image errors the
                            accuracy pass survived; they count as images without detections), fingerprint (of the
                            evaluated images' file names and labels: `data_fingerprint`)
    loops            dict   which pass each figure comes from, with its thresholds:
                              accuracy         {conf, nms_iou, images}                      -> accuracy
                              deploy_accuracy  {conf, nms_iou, match_iou, images}           -> deploy_accuracy
                              timed            {loop: "edgedet run", conf, nms_iou, warmup, repeats, outputs,
                                                written: {json_lines, video_bytes, stream_frames_viewed} of
                                                the outputs asked for, frames_failed}
                                                                      -> latency_ms, fps, thermals
    accuracy         dict   map (box mAP@0.5:0.95), map50, mask_ap (mask mAP@0.5:0.95), miou; fractions in 0..1,
                            None where the model has no such head or the data set no such labels
    deploy_accuracy  dict   precision, recall, f1 (0..1, None when undefined), tp, fp, fn (box counts)
    latency_ms       dict   stage -> {p50, p90, p99, trimmed_mean} in ms over the timed frames, for the stages of
                            STAGES that ran; "end_to_end" (captured frame to the start of the outputs) is always
                            there; "encode" (the stream's JPEG encoder thread) has p50/p90/p99 over the whole run
    fps              float  frames per second the timed loop delivered after the warm-up (outputs included)
    thermals         dict   {"start", "end"}: `device.thermals.ThermalState.to_dict()` around the timed pass
                            (CPU temperature, throttling now and since boot; null where this machine has none)
    peak_mem_mb      float  peak resident memory of the process that ran the variant, MB
    wall_s           float  wall time of the variant (loads and the three passes), seconds
    error            str    only on a variant that failed; the measurement fields are then absent
    provenance       dict   `edgedet.provenance.provenance()`: machine, python, libraries, commit, date
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

from edgedet.device.backends import load_backend
from edgedet.device.boxes import xywh_to_xyxy
from edgedet.device.capture import Frame, Source
from edgedet.device.errors import EdgedetError
from edgedet.device.latency import percentiles
from edgedet.device.runner import RunOptions, Runner
from edgedet.device.sinks import FrameResult, Sink
from edgedet.device.stream import BOUNDARY
from edgedet.export.artifacts import size_mb as artifact_size_mb
from edgedet.export.exporter import ExportConfig, artifact_paths, parse_formats, sized_stem
from .bench_record import OUTPUTS, SCHEMA_VERSION, STAGES, variant_label, write_csv
from .data import Dataset, coco_gt_dict, load_dataset
from .evaluate import evaluate_model
from .export_cli import run_export
from .models.loading import checkpoint_input_size, resolve_checkpoint, torch_backend
from .progress import bar_text
from .provenance import provenance
from .report import build_tables, markdown_tables

try:
    import resource  # peak memory where /proc is missing; not on Windows
except ImportError:
    resource = None

FORMAT_OF_SUFFIX = {".onnx": "onnx", ".tflite": "tflite", ".pt": "pytorch", ".pth": "pytorch"}
RUNTIME_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "tflite", "pytorch": "torch"}


# ---------------------------------------------------------------- variants


@dataclass
class Variant:
    """One measurement: a model file at one input size with one thread count."""
    model: str  # path of the .onnx / .tflite / .pt file
    imgsz: int  # square network input size, pixels
    threads: int  # inference threads
    format: str  # "onnx", "tflite" or "pytorch"
    precision: str  # "fp32", "fp16" or "int8"
    layout: str = ""  # the ModelSpec's layout: "edgedet" (YOLO family), "ssd", or a foreign file's

    @property
    def name(self) -> str:
        return Path(self.model).name.rsplit(".", 1)[0]

    @property
    def label(self) -> str:
        return variant_label(self.name, self.format, self.precision, self.imgsz, self.threads)


@dataclass
class BenchConfig:
    """What `edgedet bench` measures (from the command line)."""
    data: str  # data set: a `edgedet data synth` folder, a dataset.yaml or a COCO JSON
    out: Path  # output folder for results.jsonl / results.csv (and the sweep's exported models)
    models: List[str] = field(default_factory=list)  # model files (--models)
    sweep: Optional[str] = None  # checkpoint to export every variant from (--sweep)
    imgsz: List[int] = field(default_factory=list)  # input sizes; empty = each model's own
    threads: List[int] = field(default_factory=lambda: [1])  # thread counts
    formats: List[str] = field(default_factory=lambda: list(SWEEP_FORMATS))  # export formats of --sweep
    frames: Optional[int] = None  # images of the data set to evaluate and to show the timed loop (None = all)
    conf: float = 0.25  # deployment score threshold (`edgedet run`'s default): P/R/F1 and the timed loop
    iou: float = 0.45  # deployment NMS IoU threshold (`edgedet run`'s default): P/R/F1 and the timed loop
    warmup: int = 10  # frames through the timed loop before timing starts
    repeats: int = 100  # frames timed after the warm-up
    outputs: List[str] = field(default_factory=list)  # what the timed loop writes: of OUTPUTS; empty = none


MAP_CONF = 0.001  # score threshold of the accuracy pass, low as for COCO mAP
MAP_NMS_IOU = 0.6  # NMS IoU threshold of the accuracy pass (COCO practice)
MATCH_IOU = 0.5  # IoU at which a box counts as found for precision, recall and F1
TRIM = 0.1  # share cut from each end before the trimmed mean of a stage
LOOP_IMAGES = 16  # val images the timed loop's camera shows in turn (decoded once and kept in memory)
VIEWER_TIMEOUT_S = 30.0  # the timed loop fails when its stream viewer gets no frame within this long


SWEEP_FORMATS = ("onnx", "onnx-int8", "tflite", "tflite-int8")  # `edgedet export` format names
PRECISION_WORDS = ("int8", "fp16", "fp32")  # looked for in file names when the spec does not say


def model_format(path: str) -> str:
    """"onnx", "tflite" or "pytorch" from the suffix; EdgedetError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_OF_SUFFIX:
        raise EdgedetError(f"cannot benchmark {path}: expected a .onnx, .tflite or .pt file")
    return FORMAT_OF_SUFFIX[suffix]


def model_precision_size_layout(path: str) -> tuple:
    """(precision, input size, layout) of a model file: from its ModelSpec for .onnx / .tflite (no inference
    session), for a checkpoint ("fp32", the checkpoint's input size, its layout)."""
    fmt = model_format(path)
    if fmt == "pytorch":
        from .models.checkpoint import load_checkpoint  # torch

        _, spec = load_checkpoint(path)
        return "fp32", int(spec.input_size_hw[0]), spec.layout
    spec = load_backend(path, threads=1).spec
    precision = spec.precision
    if precision == "fp32":  # foreign files do not record it; trust an explicit word in the file name
        precision = next((w for w in PRECISION_WORDS if w in Path(path).name.lower()), "fp32")
    return precision, int(spec.input_size_hw[0]), spec.layout


def plan_variants(models: Sequence[str], imgsz: Sequence[int], threads: Sequence[int]) -> List[Variant]:
    """model x input size x threads. A .onnx / .tflite file has one fixed input size (its own; a requested
    size it does not have is skipped with a note); a checkpoint runs at every requested size."""
    variants = []
    for path in models:
        if not Path(path).is_file():
            raise EdgedetError(f"model file not found: {path}")
        fmt = model_format(path)
        precision, own_size, layout = model_precision_size_layout(path)
        sizes = list(imgsz) if (fmt == "pytorch" and imgsz) else [own_size]
        if fmt != "pytorch" and imgsz and own_size not in imgsz:
            print(f"edgedet bench: note: {path} has a fixed input size {own_size}; measuring it at that size",
                  file=sys.stderr)
        variants += [Variant(str(path), size, t, fmt, precision, layout) for size in sizes for t in threads]
    return variants


def sweep_models(config: BenchConfig) -> List[str]:
    """Export `config.sweep` to every format in `config.formats` at every input size with H5's exporter (which
    also checks each artifact on the data set), into DIR/models/<imgsz>/; the model files written, in order."""
    formats = parse_formats(",".join(config.formats))
    stem, own_hw = resolve_checkpoint(config.sweep).stem, checkpoint_input_size(config.sweep)
    models: List[str] = []
    for size in config.imgsz or [None]:
        folder = config.out / "models" / (str(size) if size else "native")
        print(f"edgedet bench: exporting {config.sweep} to {', '.join(formats)} at {size or 'its own size'} "
              f"into {folder}", file=sys.stderr, flush=True)
        export = ExportConfig(checkpoint=str(config.sweep), formats=formats, out=folder,
                              imgsz=None if size is None else str(size), calib=str(config.data),
                              val_limit=config.frames)
        if run_export(export) != 0:
            raise EdgedetError(f"exporting {config.sweep} at imgsz {size or 'default'} failed its accuracy check")
        sized = sized_stem(stem, (size, size) if size else None, own_hw)
        models += [str(path) for path in artifact_paths(folder, sized, formats).values()]
    return models


# ---------------------------------------------------------------- one variant (runs in its own process)


def measure_variant(variant: Variant, config: BenchConfig) -> dict:
    """The results record of `variant`: the accuracy pass, the deployment-threshold pass and the timed loop.

    Peak memory is this process's peak resident set size, so call it in a fresh process (see `run_variant`).
    """
    start = time.perf_counter()
    dataset = load_dataset(config.data, split="val")
    subset = _subset(dataset, config.frames)
    gt = coco_gt_dict(subset)
    result = evaluate_model(variant.model, subset, imgsz=variant.imgsz, threads=variant.threads, conf=MAP_CONF,
                            iou=MAP_NMS_IOU, progress=False)
    deploy = deployment_accuracy(variant, config, subset, gt)
    timed = timed_pass(variant, config, [str(sample.image_path) for sample in subset.samples])
    images = result.get("images")
    return {
        **_record_head(variant, config),
        "data": {"path": str(config.data), "images": images, "failed_images": len(result.get("errors") or []),
                 "fingerprint": data_fingerprint(gt, subset)},
        "loops": {"accuracy": {"conf": MAP_CONF, "nms_iou": MAP_NMS_IOU, "images": images},
                  "deploy_accuracy": {"conf": config.conf, "nms_iou": config.iou, "match_iou": MATCH_IOU,
                                      "images": images},
                  "timed": timed["loop"]},
        "accuracy": accuracy_from_eval(result),
        "deploy_accuracy": deploy,
        "latency_ms": timed["latency_ms"],
        "fps": timed["fps"],
        "thermals": timed["thermals"],
        "peak_mem_mb": peak_memory_mb(),
        "wall_s": round(time.perf_counter() - start, 3),
    }


def _subset(dataset: Dataset, frames: Optional[int]) -> Dataset:
    """The first `frames` samples of `dataset` (all for None) as a Dataset of their own."""
    if not dataset.samples:
        raise EdgedetError(f"data set {dataset.root} has no validation images")
    return replace(dataset, samples=dataset.samples[:frames])


def accuracy_from_eval(result: dict) -> Dict[str, Optional[float]]:
    """map / map50 / mask_ap / miou (0..1) from `evaluate_model`'s result; None where absent or -1."""
    def metric(section: str, key: str) -> Optional[float]:
        value = (result.get(section) or {}).get(key)
        return float(value) if isinstance(value, (int, float)) and value >= 0 else None

    return {"map": metric("bbox", "AP"), "map50": metric("bbox", "AP50"), "mask_ap": metric("segm", "AP"),
            "miou": metric("semantic", "mIoU")}


def data_fingerprint(gt: dict, subset: Dataset) -> str:
    """First 16 hex digits of the SHA-256 of the evaluated images' file names and labels: the COCO ground truth
    (file names, sizes, classes, boxes, crowd flags, segmentations) and the bytes of each semantic label map.
    Pixels are not read; the same split copied to another machine or folder has the same fingerprint."""
    digest = hashlib.sha256(json.dumps(gt, sort_keys=True, default=_json_value).encode())
    for sample in subset.samples:
        if sample.semantic_path is not None:
            digest.update(Path(sample.semantic_path).read_bytes())
    return digest.hexdigest()[:16]


def _json_value(value):
    """JSON form of the NumPy arrays and bytes a segmentation may hold (so the fingerprint sees every value)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


# ---------------------------------------------------------------- accuracy at the deployment threshold


def deployment_accuracy(variant: Variant, config: BenchConfig, subset: Dataset, gt: dict) -> Dict[str, object]:
    """Precision, recall and F1 of `variant`'s boxes at --conf / --iou on `subset` (see `precision_recall_f1`)."""
    # boxes need no semantic map: without semantic labels evaluate_model skips the semantic and panoptic work
    boxes_only = replace(subset, samples=[replace(s, semantic_path=None) for s in subset.samples])
    with tempfile.TemporaryDirectory(prefix="edgedet-bench-") as folder:
        predictions = Path(folder) / "predictions.json"
        evaluate_model(variant.model, boxes_only, imgsz=variant.imgsz, threads=variant.threads, conf=config.conf,
                       iou=config.iou, progress=False, save_pred=str(predictions))
        results = json.loads(predictions.read_text())
    return precision_recall_f1(gt, [r for r in results if r["score"] >= config.conf])


def precision_recall_f1(gt: dict, results: Sequence[dict], match_iou: float = MATCH_IOU) -> Dict[str, object]:
    """{precision, recall, f1, tp, fp, fn} of COCO box `results` (every one counts: filter by score first)
    against the COCO ground truth `gt`.

    Per image and category, detections best score first (stable on ties) each take the unmatched regular ground
    truth of highest IoU >= match_iou, as COCOeval matches; a detection that finds none but overlaps crowd ground
    truth that much (IoU over the detection's area, as COCO) is ignored; crowd ground truth counts in no recall.
    precision = tp / (tp + fp), recall = tp / (tp + fn), f1 = 2 tp / (2 tp + fp + fn); None when 0 / 0.
    """
    truths: Dict[tuple, List[dict]] = {}
    for annotation in gt.get("annotations", []):
        truths.setdefault((annotation["image_id"], annotation["category_id"]), []).append(annotation)
    detections: Dict[tuple, List[dict]] = {}
    for result in results:
        detections.setdefault((result["image_id"], result["category_id"]), []).append(result)
    tp = fp = regular = 0
    for key in set(truths) | set(detections):
        found, false, count = _match_pair(truths.get(key, []), detections.get(key, []), match_iou)
        tp, fp, regular = tp + found, fp + false, regular + count
    fn = regular - tp
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "tp": tp, "fp": fp, "fn": fn}


def _match_pair(truths: List[dict], detections: List[dict], match_iou: float) -> tuple:
    """(true positives, false positives, regular ground truths) of one image and category."""
    crowd = np.array([bool(t.get("iscrowd", 0)) for t in truths], dtype=bool)
    order = np.argsort([-float(d["score"]) for d in detections], kind="stable")
    ious = _match_ious(_xyxy([detections[i]["bbox"] for i in order]), _xyxy([t["bbox"] for t in truths]), crowd)
    taken = np.zeros(len(truths), dtype=bool)
    tp = fp = 0
    for row in ious:
        free = ~crowd & ~taken & (row >= match_iou)
        if free.any():
            taken[int(np.argmax(np.where(free, row, -1.0)))] = True
            tp += 1
        elif not (crowd & (row >= match_iou)).any():  # on a crowd region: neither found nor false
            fp += 1
    return tp, fp, int((~crowd).sum())


def _xyxy(xywh: list) -> np.ndarray:
    return xywh_to_xyxy(np.asarray(xywh, dtype=np.float64).reshape(-1, 4))


def _match_ious(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """float64 (D, G) IoU of corner boxes d (D, 4) and g (G, 4); against crowd boxes, intersection over d's area."""
    wh = np.clip(np.minimum(d[:, None, 2:], g[None, :, 2:]) - np.maximum(d[:, None, :2], g[None, :, :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_d = ((d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1]))[:, None]
    area_g = ((g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]))[None, :]
    union = np.where(crowd[None, :], area_d, area_d + area_g - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _ratio(numerator: int, denominator: int) -> Optional[float]:
    return numerator / denominator if denominator else None


# ---------------------------------------------------------------- the timed loop


class CycledImages(Source):
    """A camera that shows the val images in turn, for the timed loop. Live, so the loop pulls each frame just in
    time as it does from `--camera`; the first LOOP_IMAGES images are decoded once up front, so a frame is ready the
    moment the loop asks (as a camera's newest frame is) and no decoding competes with inference."""

    live = True
    dropped = 0  # a live source's counters, printed in the run's summary: nothing is dropped or reopened here
    reconnects = 0

    def __init__(self, paths: Sequence[str]):
        readable = [(path, cv2.imread(path, cv2.IMREAD_COLOR)) for path in list(paths)[:LOOP_IMAGES]]
        self.images = [(path, image) for path, image in readable if image is not None]  # (file, uint8 BGR)
        if not self.images:
            raise EdgedetError(f"none of the first {len(readable)} val images can be read (first: {paths[0]})")
        self.name = f"{len(self.images)} val images, shown in turn"
        self._index = 0  # frames delivered

    def read(self, timeout: float = 1.0) -> Optional[Frame]:
        path, image = self.images[self._index % len(self.images)]
        self._index += 1
        # a camera hands out a fresh buffer per frame
        return Frame(image.copy(), self._index - 1, time.time(), time.perf_counter(), path)


class TimingProbe(Sink):
    """The timed loop's last sink: after `warmup` frames, each frame's stage times (outputs included) and when it
    was written; it stops the run once `repeats` frames are timed. With `ready`, frames count only once it says
    True (a stream viewer is reading), so the warm-up starts then."""

    records_output_time = True  # written after the other sinks: latency_ms holds the "output" stage

    def __init__(self, warmup: int, repeats: int, stop: threading.Event, ready: Optional[Callable[[], bool]] = None):
        self.warmup = warmup  # frames seen, after `ready`, before timing starts
        self.repeats = repeats  # frames to time
        self.stop = stop  # set when enough frames are timed (the run's stop_event)
        self.ready = ready  # None, or True once the loop runs as measured
        self.records: List[Dict[str, float]] = []  # {stage: ms} of each timed frame
        self.written_at: List[float] = []  # perf_counter when each timed frame reached this sink
        self._seen = 0  # frames seen while ready
        self._first = None  # perf_counter of the first frame

    def write(self, result: FrameResult, canvas: Optional[np.ndarray]) -> None:
        now = time.perf_counter()
        self._first = self._first or now
        if len(self.records) >= self.repeats:
            return
        if self.ready is not None and not self.ready():
            if now - self._first > VIEWER_TIMEOUT_S:
                raise EdgedetError(f"--outputs stream: the viewer got no frame within {VIEWER_TIMEOUT_S:.0f} s")
            return
        self._seen += 1
        if self._seen <= self.warmup:
            return
        self.records.append(dict(result.latency_ms))
        self.written_at.append(now)
        if len(self.records) == self.repeats:
            self.stop.set()


class StreamViewer:
    """Stands in for a browser on the timed loop's stream: reads /stream.mjpg in a thread as fast as frames come
    (reconnecting until the server is up) and counts the JPEG parts received."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port  # the stream server
        self.frames = 0  # JPEG parts received
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="edgedet-bench-viewer", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            connection = http.client.HTTPConnection(self.host, self.port, timeout=1.0)  # no proxy for 127.0.0.1
            try:
                connection.request("GET", "/stream.mjpg")
                self._read(connection.getresponse())
            except (OSError, http.client.HTTPException):  # not up yet, or a read timed out: connect again
                self._stop.wait(0.05)
            finally:
                connection.close()

    def _read(self, response) -> None:
        marker = f"--{BOUNDARY}".encode()
        tail = b""
        while not self._stop.is_set():
            chunk = response.read1(65536)
            if not chunk:
                return
            data = tail + chunk
            self.frames += data.count(marker)
            tail = data[-(len(marker) - 1):]  # a marker split across two reads is counted once

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def timed_pass(variant: Variant, config: BenchConfig, image_paths: Sequence[str]) -> dict:
    """Time `edgedet run`'s loop (device.runner.Runner) at the deployment threshold on `image_paths`, cycled.

    Returns {"latency_ms": {stage: stats}, "fps", "thermals": {"start", "end"}, "loop": the record's loops.timed}.
    """
    port = free_port() if "stream" in config.outputs else None
    with tempfile.TemporaryDirectory(prefix="edgedet-bench-outputs-") as folder:
        options = loop_options(variant, config, Path(folder), port)
        viewer = StreamViewer("127.0.0.1", port) if port else None
        probe = TimingProbe(config.warmup, config.repeats, options.stop_event,
                            ready=(lambda: viewer.frames > 0) if viewer else None)
        runner = Runner(options, source=CycledImages(image_paths), extra_sinks=[probe])
        try:
            runner.run()
        finally:
            if viewer is not None:
                viewer.close()
        written = outputs_written(options, viewer)
    if len(probe.records) < config.repeats:
        raise EdgedetError(f"the timed loop output {len(probe.records)} of {config.repeats} timed frames "
                           f"({runner.frames_failed} frames failed)")
    loop = {"loop": "edgedet run", "conf": config.conf, "nms_iou": config.iou, "warmup": config.warmup,
            "repeats": config.repeats, "outputs": list(config.outputs), "written": written,
            "frames_failed": runner.frames_failed}
    latency = stage_stats(probe.records)
    encode = runner.detector.timer.summary().get("encode")
    if encode and encode.get("count"):  # the stream's JPEG encoder runs in a thread of its own, outside any frame
        latency["encode"] = {key: round(encode[key], 4) for key in ("p50", "p90", "p99")}
    return {"latency_ms": latency, "fps": loop_fps(probe.written_at),
            "thermals": {when: state.to_dict() for when, state in runner.thermals.items()}, "loop": loop}


def loop_options(variant: Variant, config: BenchConfig, folder: Path, port: Optional[int]) -> RunOptions:
    """`edgedet run`'s options for the timed loop: the variant at the deployment threshold, its outputs in `folder`
    (the stream on 127.0.0.1:`port`). A checkpoint runs through its torch backend (the device runtime has none)."""
    model = variant.model
    if variant.format == "pytorch":
        model = torch_backend(variant.model, variant.threads, variant.imgsz)
    outputs = set(config.outputs)
    return RunOptions(model=model, source=f"val images of {config.data}", conf=config.conf, iou=config.iou,
                      threads=variant.threads, json=str(folder / "out.jsonl") if "json" in outputs else None,
                      save=str(folder / "out.mp4") if "save" in outputs else None,
                      stream=f"127.0.0.1:{port}" if "stream" in outputs else None,
                      # a bound in case frames keep failing; the probe stops the run long before
                      max_frames=10 * (config.warmup + config.repeats) + 1000, log_every=3600.0)


def outputs_written(options: RunOptions, viewer: Optional[StreamViewer]) -> Dict[str, int]:
    """What the timed loop's outputs produced, all frames included: json_lines, video_bytes, stream_frames_viewed."""
    written = {}
    if options.json:
        written["json_lines"] = len(Path(options.json).read_text().splitlines())
    if options.save:
        written["video_bytes"] = Path(options.save).stat().st_size
    if viewer is not None:
        written["stream_frames_viewed"] = viewer.frames
    return written


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stage_stats(records: Sequence[Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    """{stage: {p50, p90, p99, trimmed_mean}} in ms over the frames that ran each stage of STAGES;
    EdgedetError without end to end."""
    out = {}
    for stage in STAGES:
        values = [record[stage] for record in records if stage in record]
        if values:
            stats = percentiles(values)
            stats["trimmed_mean"] = trimmed_mean(values)
            out[stage] = {key: round(value, 4) for key, value in stats.items()}
    if "end_to_end" not in out:
        raise EdgedetError(f"the timed loop timed no end-to-end latency (stages: {sorted(out)})")
    return out


def trimmed_mean(values: Sequence[float], cut: float = TRIM) -> float:
    """Mean after dropping the lowest and the highest `cut` share of `values` (at least one value is kept)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    k = min(int(len(ordered) * cut), (len(ordered) - 1) // 2)
    return float(ordered[k:len(ordered) - k].mean())


def loop_fps(written_at: Sequence[float]) -> Optional[float]:
    """Frames per second between the first and the last timed frame (None with fewer than two)."""
    if len(written_at) < 2 or written_at[-1] <= written_at[0]:
        return None
    return round((len(written_at) - 1) / (written_at[-1] - written_at[0]), 3)


def peak_memory_mb() -> Optional[float]:
    """Peak resident set size of this process in MB: Linux VmHWM (reset by exec, unlike ru_maxrss, which a child
    inherits from the process that forked it), else ru_maxrss (KB on Linux, bytes on macOS), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    if resource is None:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _record_head(variant: Variant, config: BenchConfig) -> dict:
    size_mb = artifact_size_mb(variant.model) if Path(variant.model).is_file() else None
    return {
        "schema_version": SCHEMA_VERSION,
        "variant": variant.label,
        "model": {"path": str(variant.model), "name": variant.name, "format": variant.format,
                  "precision": variant.precision, "runtime": RUNTIME_OF_FORMAT[variant.format],
                  "layout": variant.layout, "size_mb": None if size_mb is None else round(size_mb, 3)},
        "imgsz": variant.imgsz,
        "threads": variant.threads,
        "provenance": provenance(),
    }


def failure_record(variant: Variant, config: BenchConfig, error: str) -> dict:
    """The record of a variant that could not be measured (the report lists it under problems)."""
    return {**_record_head(variant, config), "data": {"path": str(config.data)}, "error": error}


def run_variant(variant: Variant, config: BenchConfig, workdir: Path) -> dict:
    """Measure `variant` in a child Python process (`python -m edgedet.bench JOB.json`); a failure or crash
    of the child becomes a failure record naming its last error line."""
    job = workdir / "job.json"
    result_path = workdir / "result.json"
    result_path.unlink(missing_ok=True)
    job.write_text(json.dumps({"variant": variant.__dict__, "config": _config_json(config),
                               "result": str(result_path)}))
    child = subprocess.run([sys.executable, "-m", "edgedet.bench", str(job)], capture_output=True, text=True)
    if child.returncode == 0 and result_path.is_file():
        return json.loads(result_path.read_text())
    lines = [line for line in (child.stderr or "").strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit code {child.returncode}"
    return failure_record(variant, config, reason)


def _config_json(config: BenchConfig) -> dict:
    return {**config.__dict__, "out": str(config.out)}


def _worker(job_path: str) -> int:
    """Child process entry: measure one variant, write its record to the job's result path."""
    job = json.loads(Path(job_path).read_text())
    variant = Variant(**job["variant"])
    config = BenchConfig(**{**job["config"], "out": Path(job["config"]["out"])})
    try:
        record = measure_variant(variant, config)
    except EdgedetError as error:
        print(error, file=sys.stderr)
        return 2
    Path(job["result"]).write_text(json.dumps(record))
    return 0


# ---------------------------------------------------------------- the run


class Progress:
    """Variants done out of the total, elapsed time and ETA, one log line per event on stderr (a variant takes
    minutes, so each line is kept rather than redrawn; the bar in it is drawn by edgedet.progress)."""
    def __init__(self, total: int, stream=None):
        self.total = total  # variants to measure
        self.stream = stream or sys.stderr  # where the lines go
        self.start = time.perf_counter()  # when the run began
        self.done = 0  # variants finished

    def line(self, text: str) -> str:
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        bar = f"{bar_text(self.done, self.total)} {self.done}/{self.total} variants"
        times = f"elapsed {_duration(elapsed)}, ETA {_duration(eta) if eta is not None else '?'}"
        return f"bench {bar} {times} | {text}"

    def started(self, label: str) -> None:
        print(self.line(f"measuring {label}"), file=self.stream, flush=True)

    def finished(self, record: dict) -> None:
        self.done += 1
        print(self.line(summary_line(record)), file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def summary_line(record: dict) -> str:
    """E.g. "m onnx int8 320px 2t: mAP 45.1, F1 0.78 at conf 0.25; run loop p50 12.30 ms, 81.3 FPS; 96 MB" or its
    failure."""
    if record.get("error"):
        return f"{record['variant']}: FAILED: {record['error']}"
    accuracy, f1 = record["accuracy"].get("map"), record["deploy_accuracy"].get("f1")
    shown = "–" if accuracy is None else f"{100 * accuracy:.1f}"
    f1_shown = "–" if f1 is None else f"{f1:.2f}"
    p50 = record["latency_ms"]["end_to_end"]["p50"]
    return (f"{record['variant']}: mAP {shown}, F1 {f1_shown} at conf {record['loops']['timed']['conf']}; "
            f"run loop p50 {p50:.2f} ms, {record.get('fps') or 0:.1f} FPS; {record.get('peak_mem_mb')} MB")


def run_bench(config: BenchConfig) -> List[dict]:
    """Measure every variant; DIR/results.jsonl gets each record as soon as it exists (flushed), DIR/results.csv
    is rewritten after each, so an interrupted run keeps everything measured so far."""
    config.out.mkdir(parents=True, exist_ok=True)
    models = sweep_models(config) if config.sweep else list(config.models)
    variants = plan_variants(models, config.imgsz, config.threads)
    progress = Progress(len(variants))
    records: List[dict] = []
    with open(config.out / "results.jsonl", "w", encoding="utf-8") as results, \
            tempfile.TemporaryDirectory(prefix="edgedet-bench-") as workdir:
        for variant in variants:
            progress.started(variant.label)
            record = run_variant(variant, config, Path(workdir))
            results.write(json.dumps(record) + "\n")
            results.flush()
            records.append(record)
            write_csv(records, config.out / "results.csv")
            progress.finished(record)
    return records


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--models", nargs="+", metavar="MODEL", help="model files to measure: .onnx, .tflite, .pt")
    what.add_argument("--sweep", metavar="CKPT", help="export CKPT (or 'shipped', 'shipped:ssd', 'shipped:rcnn') to every --formats x --imgsz, then measure them")
    parser.add_argument("--data", required=True, help="data set: `edgedet data synth` folder (val split), dataset.yaml "
                        "or COCO JSON")
    parser.add_argument("--imgsz", type=_int_list, default=[], help="input sizes, e.g. 224,320 (checkpoints and "
                        "--sweep; an exported file runs at its own size); default: the model's own")
    parser.add_argument("--threads", type=_int_list, default=[1], help="thread counts, e.g. 1,2 (default 1)")
    parser.add_argument("--formats", type=_format_list, default=None,
                        help=f"--sweep export formats (default {','.join(SWEEP_FORMATS)})")
    parser.add_argument("--frames", type=int, default=None, metavar="N", help="evaluate only the first N images "
                        "(and show only those to the timed loop)")
    parser.add_argument("--conf", type=float, default=0.25, help="deployment score threshold of the precision/recall "
                        f"pass and the timed loop (default 0.25, as edgedet run; mAP is always at {MAP_CONF})")
    parser.add_argument("--iou", type=float, default=0.45, help="deployment NMS IoU threshold of those passes "
                        f"(default 0.45, as edgedet run; mAP is always at {MAP_NMS_IOU})")
    parser.add_argument("--warmup", type=int, default=10, metavar="N", help="frames through the timed loop before "
                        "timing starts (default 10)")
    parser.add_argument("--repeats", type=int, default=100, metavar="N", help="frames timed after the warm-up "
                        "(default 100; the val images repeat as needed)")
    parser.add_argument("--outputs", type=_format_list, default=[], metavar="LIST", help="what the timed loop writes, "
                        "as edgedet run would: json, save (an .mp4), stream (MJPEG, a viewer connected); default none")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for results.jsonl and results.csv")


def check_loop_options(args: argparse.Namespace) -> None:
    """Reject bad --frames / --conf / --iou / --warmup / --repeats / --outputs before any variant runs."""
    if args.frames is not None and args.frames < 1:
        raise EdgedetError(f"--frames must be >= 1, got {args.frames}")
    for flag, value in (("--conf", args.conf), ("--iou", args.iou)):
        if not 0.0 <= value <= 1.0:
            raise EdgedetError(f"{flag} must be in 0..1, got {value}")
    if args.warmup < 0:
        raise EdgedetError(f"--warmup must be >= 0, got {args.warmup}")
    if args.repeats < 2:
        raise EdgedetError(f"--repeats must be >= 2 (the frame rate needs two timed frames), got {args.repeats}")
    unknown = [name for name in args.outputs if name not in OUTPUTS]
    if unknown:
        raise EdgedetError(f"--outputs: unknown output {unknown[0]!r}; choose from {', '.join(OUTPUTS)}")
    if args.formats is not None and not args.sweep:
        raise EdgedetError("--formats names what --sweep exports; the files of --models are measured as they are")
    if args.sweep:
        bad = [size for size in args.imgsz if size % 32 or size < 64]
        if bad:
            raise EdgedetError(f"--imgsz {bad[0]}: export sizes are multiples of 32, at least 64")


def once_each(values: list, flag: str, key: Callable = lambda value: value) -> list:
    """`values` without repeats by `key` (the first of each kept), saying so: a variant named twice is measured
    once."""
    first: dict = {}
    for value in values:
        first.setdefault(key(value), value)
    unique = list(first.values())
    if len(unique) < len(values):
        print(f"edgedet bench: {flag} names {len(values) - len(unique)} value(s) twice; each is measured once",
              file=sys.stderr)
    return unique


def check_dataset(path: str) -> None:
    """Read the data set's val split once up front, so a bad data set is one error, not one per variant."""
    if not load_dataset(path, split="val").samples:
        raise EdgedetError(f"data set {path} has no validation images")


def _same_model(model: str) -> str:
    """What makes two --models one file: its real path (a file, "shipped" names itself)."""
    return os.path.realpath(model) if os.path.exists(model) else model


def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _format_list(text: str) -> List[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def main(args: argparse.Namespace) -> int:
    check_loop_options(args)
    if not Path(args.data).exists():
        raise EdgedetError(f"data set not found: {args.data}")
    check_dataset(args.data)
    config = BenchConfig(data=args.data, out=Path(args.out), models=once_each(args.models or [], "--models", key=_same_model),
                         sweep=args.sweep, imgsz=once_each(args.imgsz, "--imgsz"),
                         threads=once_each(args.threads, "--threads"),
                         formats=once_each(args.formats or list(SWEEP_FORMATS), "--formats"), frames=args.frames,
                         conf=args.conf, iou=args.iou, warmup=args.warmup, repeats=args.repeats,
                         outputs=[name for name in OUTPUTS if name in args.outputs])  # each once, in one order
    records = run_bench(config)
    measured = [r for r in records if not r.get("error")]
    if measured:
        print(markdown_tables(build_tables(measured)))
    print(f"results: {config.out / 'results.jsonl'} and {config.out / 'results.csv'} "
          f"({len(measured)} measured, {len(records) - len(measured)} failed)")
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
