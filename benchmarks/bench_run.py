"""`edgedet run` against its peers, measured side by side in one run: the bare backend loop, `--json` alone, the
drawn outputs with a viewer; the drawing itself against the old drawing; plus start-up time and peak memory.

    .venv/bin/python benchmarks/bench_run.py [--model int8.tflite --model int8.onnx] [--frames 1000] [--repeats 5]

Measured in one run, medians over repeats (interleaved, so a shared machine's drifts hit every side alike), each
`edgedet run` a fresh process running exactly what a user runs (`edgedet.cli.main`) on a 640x480 video, its
frame-loop FPS from its summary line (model loading excluded), per int8 model:
(a) `--json out.jsonl` against a bare loop that only calls `backend.run` on one pre-made input (10 warm-up runs),
    one inference thread each. Target: run >= 0.95 of bare.
(b) `--json --save out.mp4 --stream 127.0.0.1:PORT` with a viewer connected and reading the MJPEG stream (a
    thread of this script) against `--json` alone, one inference thread. Target >= 0.85.
(c) drawing one 640x480 frame with 20 masked objects and the semantic overlay (`device.draw.annotate`, the map at
    half the model's input resolution) against the old drawing (a verbatim copy below: float blends over the whole
    frame, the map at frame size), p50 of repeats after warm-up; and the semantic map each needs, built from the model's
    own logits. Target: drawing <= 3 ms p50.
(d) `--json` and the bare loop with as many inference threads as cores, with where the time goes: per-stage p50
    from the run's summary table, and the CPU time per frame of each thread (read from /proc during the loop).
(e) (a) and (b) again with the same checkpoint exported at --slow-imgsz (640x640: about 4x the inference time,
    the order of what a Raspberry Pi takes at 320), on a quarter of the frames: the outputs' cost against slower
    inference.
Then start-up (`import device` + `import edgedet.cli` + the `run` parser, target < 0.3 s) and the peak RSS of
`edgedet run` with the int8 TFLite model, --json and --save (target < 200 MB).

Without --model the script exports int8 TFLite and ONNX files of the shipped checkpoint (or, if it is not
there yet, of an untrained edgedet-n 320x320 model: same compute, so the same latency) with `edgedet export`,
calibrated on a few synthetic images.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EDGEDET = [sys.executable, "-m", "edgedet"]
TARGETS = {"json/bare": 0.95, "outputs/json": 0.85, "draw_ms": 3.0}  # (a), (b), (c)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="int8 model(s) to measure (.tflite / .onnx); repeatable")
    parser.add_argument("--checkpoint", help="checkpoint to export when --model is not given (default: shipped)")
    parser.add_argument("--frames", type=int, default=1000, help="frames in the test video (at 300 FPS, 200 frames "
                        "last 0.7 s and the pipeline's fill and drain weigh 1%%)")
    parser.add_argument("--slow-imgsz", type=int, default=640, help="also export the checkpoint at this input "
                        "size, where inference takes about 4x longer (as on a slower device), and measure its "
                        "1-thread loops on a quarter of the frames; 0 = no")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement (median reported)")
    parser.add_argument("--draw-repeats", type=int, default=200, help="timed drawings per side in (c)")
    parser.add_argument("--workdir", help="keep generated files here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        models = [Path(m) for m in args.model] if args.model else export_int8_models(work, args.checkpoint)
        slow = export_int8_models(work, args.checkpoint, args.slow_imgsz) if args.slow_imgsz and not args.model else []
        video = make_video(work / "bench.mp4", args.frames)
        cores = os.cpu_count() or 1
        print(f"machine: {machine_name()}, {cores} cores; video {video.name} ({args.frames} frames 640x480), "
              f"repeats {args.repeats}")
        rows = [measure_loops(model, video, work, args, cores) for model in models]
        rows += [measure_loops(model, video, work, args, 1, frames=args.frames // 4) for model in slow]  # named by size
        print_loops(rows)
        print_breakdown(rows)
        print_drawing(measure_drawing(models[0], args.draw_repeats))
        measure_startup(args.repeats)
        tflite = [m for m in models if m.suffix == ".tflite"]
        if tflite:
            measure_peak_rss(tflite[0], video, work, 1)
    return 0


def machine_name() -> str:
    """The CPU model as lscpu names it (e.g. "AMD EPYC"), else the platform's processor string."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        match = re.search(r"^Model name:\s*(.+)$", out, re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


# -------------------------------------------------------------------------------------------- inputs


def export_int8_models(work: Path, checkpoint, imgsz: int = 0) -> list:
    """int8 TFLite + ONNX of the shipped (or a fresh untrained n-320) checkpoint, via `edgedet export`, at its own
    input size or at `imgsz`."""
    from edgedet.models import SHIPPED_CHECKPOINT

    ckpt = Path(checkpoint) if checkpoint else SHIPPED_CHECKPOINT
    if not ckpt.is_file():
        ckpt = work / "untrained-n-320.pt"
        print(f"shipped checkpoint not found; exporting an untrained edgedet-n 320x320 model ({ckpt})")
        make_untrained_checkpoint(ckpt)
    data = work / "synth"
    if not (data / "dataset.yaml").is_file():
        run([*EDGEDET, "data", "synth", "--out", str(data), "--train", "16", "--val", "4", "--imgsz", "320",
             "--seed", "0"])
    out = work / (f"exports-{imgsz}" if imgsz else "exports")
    run([*EDGEDET, "export", str(ckpt), "--format", "tflite-int8,onnx-int8", "--out", str(out),
         "--calib", str(data), "--calib-size", "16", "--calib-method", "minmax", "--val-limit", "4",
         *(["--imgsz", str(imgsz)] if imgsz else [])])
    models = sorted(out.glob("*int8*.tflite")) + sorted(out.glob("*int8*.onnx"))
    if not models:
        raise SystemExit(f"edgedet export wrote no int8 models into {out}")
    return models


def make_untrained_checkpoint(path: Path) -> None:
    import torch

    from edgedet.models.checkpoint import checkpoint_dict, save_checkpoint
    from edgedet.models.model import ModelConfig, build_model

    torch.manual_seed(0)
    names = ["circle", "square", "triangle", "star", "hexagon"]
    config = ModelConfig(preset="n", num_classes=len(names), num_semantic=9, num_mask_coefs=8, input_size_hw=(320, 320))
    model = build_model(config).eval()
    save_checkpoint(checkpoint_dict(model, names, ["sky", "grass", "water", "sand", *names]), path)


def make_video(path: Path, frames: int) -> Path:
    """`frames` frames of the synthetic moving-shapes source, 640x480, mp4v."""
    import cv2

    from edgedet.device.capture import SyntheticSource

    source = SyntheticSource((640, 480))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    for _ in range(frames):
        writer.write(source.read().image)
    writer.release()
    return path


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(map(str, cmd))}\n{result.stderr[-2000:]}")
    return result


# ------------------------------------------------------------------------------ (a), (b), (d): the loops


BARE_LOOP = """
import os, sys, time
import numpy as np
from edgedet.device.backends import load_backend
from edgedet.device.preprocessing import preprocess
from edgedet.device.affinity import split_cores
model, frames, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
split = split_cores(threads)
if split is not None:  # the cores `edgedet run` gives inference: a shared machine's load hits both alike
    os.sched_setaffinity(0, split[0])
backend = load_backend(model, threads=threads)
x, _ = preprocess(np.full((480, 640, 3), 114, np.uint8), backend.spec)
for _ in range(10):
    backend.run(x)
start, cpu = time.perf_counter(), time.process_time()
for _ in range(frames):
    backend.run(x)
print(frames / (time.perf_counter() - start), (time.process_time() - cpu) * 1000 / frames)
"""

# `edgedet run` in-process (edgedet.cli.main, what the command runs) plus a sampler thread that reads every
# thread's CPU time from /proc every 20 ms, and the start and end of every backend.run call (two perf_counter
# reads around it); CPU seconds per thread role between the first and last sample of the loop, that window's
# length and the calls go to a JSON file
RUN_WITH_CPU = """
import json, os, sys, threading, time
from edgedet.cli import main
from edgedet.device import backends, pipeline, runner
out_path, args = sys.argv[1], sys.argv[2:]
ticks = os.sysconf("SC_CLK_TCK")
start, last, stop, calls, window = {}, {}, threading.Event(), [], []

def timed_load_backend(*a, **k):
    backend = backends.load_backend(*a, **k)
    run = backend.run
    def timed_run(x):
        begin = time.perf_counter()
        out = run(x)
        calls.append((begin, time.perf_counter()))
        return out
    backend.run = timed_run
    return backend

for module in (runner, pipeline):  # wherever the run loads its backend from
    if hasattr(module, "load_backend"):
        module.load_backend = timed_load_backend

def role(name):
    if name is None:
        return "native (runtime pool, codecs)"
    if name in ("MainThread", "edgedet-inference"):
        return "inference"
    return "http viewer" if "process_request" in name else name

def sample():
    names = {t.native_id: t.name for t in threading.enumerate()}
    looping = "edgedet-prepare" in names.values()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        key = (int(tid), role(names.get(int(tid))))
        if looping:
            start.setdefault(key, seconds)
            last[key] = seconds
    if looping:  # [first, latest] perf_counter of the samples taken during the loop
        now = time.perf_counter()
        window[:] = [window[0] if window else now, now]

def sampler():
    while not stop.wait(0.02):
        sample()

thread = threading.Thread(target=sampler, name="bench-sampler", daemon=True)
thread.start()
code = main(["run", *args])
stop.set()
thread.join()
cpu = {}
for key, seconds in last.items():
    if key[1] != "bench-sampler":
        cpu[key[1]] = cpu.get(key[1], 0.0) + seconds - start[key]
json.dump({"code": code, "cpu_s": cpu, "window_s": window[-1] - window[0], "calls": calls}, open(out_path, "w"))
"""


def bare_backend_loop(model: Path, frames: int, threads: int) -> dict:
    """A fresh process calling only backend.run on one pre-made input (10 warm-up runs), on the cores `edgedet run`
    gives inference: {"fps", "cpu_ms" (process CPU per frame)}."""
    result = run([sys.executable, "-c", BARE_LOOP, str(model), str(frames), str(threads)])
    fps, cpu_ms = result.stdout.split()[-2:]
    return {"fps": float(fps), "cpu_ms": float(cpu_ms)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Viewer(threading.Thread):
    """Connects to an MJPEG stream as soon as it is served and reads every part it is sent, until told to stop."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.parts, self.done = port, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
                    self._read(sock.makefile("rb"))
            except OSError:
                time.sleep(0.02)  # not serving yet (the model is loading), or the run ended

    def _read(self, reader) -> None:
        while not self.done.is_set():
            line = reader.readline()
            if not line:
                return
            if line.startswith(b"Content-Length:"):
                length = int(line.split(b":")[1])
                reader.readline()
                reader.read(length)
                self.parts += 1


def run_loop(model: Path, video: Path, work: Path, threads: int, outputs: bool, frames: int) -> dict:
    """One `edgedet run` on the first `frames` frames of the video: --json, and with `outputs` also --save and
    --stream with a `Viewer`.
    -> {"fps", "frames", "stages": {stage: p50 ms}, "cpu_ms": {thread role: CPU ms per frame}, "viewer_parts"}."""
    stats_path = work / "cpu.json"
    flags = ["--model", str(model), "--source", str(video), "--threads", str(threads),
             "--json", str(work / "bench.jsonl"), "--max-frames", str(frames)]
    viewer = None
    if outputs:
        port = free_port()
        flags += ["--save", str(work / "bench-out.mp4"), "--stream", f"127.0.0.1:{port}"]
        viewer = Viewer(port)
        viewer.start()
    try:
        result = run([sys.executable, "-c", RUN_WITH_CPU, str(stats_path), *flags])
    finally:
        if viewer is not None:
            viewer.done.set()
    match = re.search(r"(\d+) frames in ([\d.]+) s = ([\d.]+) FPS", result.stdout)
    if not match or int(match.group(1)) == 0:
        raise SystemExit(f"edgedet run processed no frames:\n{result.stdout}\n{result.stderr}")
    frames = int(match.group(1))
    stats = json.loads(stats_path.read_text())
    stages = summary_table(result.stdout)
    fps = float(match.group(3))
    return {"fps": fps, "frames": frames, "stages": {k: v["p50"] for k, v in stages.items()},
            # CPU per frame: each thread's share of a core over the sampled window, times the frame period
            "cpu_ms": {role: seconds / stats["window_s"] * 1000.0 / fps for role, seconds in stats["cpu_s"].items()},
            "calls": backend_calls(stats["calls"]), "viewer_parts": viewer.parts if viewer is not None else None}


def backend_calls(calls: list) -> dict:
    """backend.run calls [(start, end) s] -> {"run_p50" ms, "gap_p50", "gap_p99" ms between one call's end and the
    next one's start (hand-over, queue waits), "outside" share of the loop the inference thread spent outside}."""
    import numpy as np

    spans = np.asarray(calls, dtype=np.float64).reshape(-1, 2)
    if len(spans) < 2:
        return {"run_p50": float("nan"), "gap_p50": float("nan"), "gap_p99": float("nan"), "outside": float("nan")}
    gaps = (spans[1:, 0] - spans[:-1, 1]) * 1000.0
    return {"run_p50": float(np.median(spans[:, 1] - spans[:, 0]) * 1000.0), "gap_p50": float(np.median(gaps)),
            "gap_p99": float(np.percentile(gaps, 99)), "outside": float(gaps.sum() / 1000.0 /
                                                                         (spans[-1, 1] - spans[0, 0]))}


def summary_table(stdout: str) -> dict:
    """{stage: {"count", "mean", "p50"}} from the summary table `edgedet run` prints at exit (stage count mean p50
    p90 p99, ms)."""
    stages = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) == 6 and fields[1].isdigit():
            stages[fields[0]] = {"count": int(fields[1]), "mean": float(fields[2]), "p50": float(fields[3])}
    return stages


def measure_loops(model: Path, video: Path, work: Path, args, cores: int, frames: int = 0) -> dict:
    """Every loop of one model on `frames` frames (0: all), interleaved over the repeats: bare and --json with one
    inference thread, the drawn outputs with a viewer, and bare and --json with `cores` threads (none for 1).
    -> {"model": the file's name, "cores": cores, "results": {case: [result per repeat]}}."""
    frames = frames or args.frames
    print(f"measuring {model.name} ...", flush=True)
    cases = {"bare 1": lambda: bare_backend_loop(model, frames, 1),
             "json 1": lambda: run_loop(model, video, work, 1, outputs=False, frames=frames),
             "outputs 1": lambda: run_loop(model, video, work, 1, outputs=True, frames=frames)}
    if cores > 1:
        cases[f"bare {cores}"] = lambda: bare_backend_loop(model, frames, cores)
        cases[f"json {cores}"] = lambda: run_loop(model, video, work, cores, outputs=False, frames=frames)
    results = {case: [] for case in cases}
    for _ in range(args.repeats):
        for case, measure in cases.items():
            results[case].append(measure())
    return {"model": model.name, "cores": cores, "results": results}


def median_run(runs: list) -> dict:
    """The run with the median FPS of its repeats (its stages and CPU times go with it)."""
    return sorted(runs, key=lambda r: r["fps"])[len(runs) // 2]


def print_loops(rows) -> None:
    print("\n(a), (b), (d): frames per second, median of repeats (every repeat listed)")
    print(f"{'int8 model':<32} {'threads':>7} {'bare':>7} {'--json':>7} {'json/bare':>9} {'+save+stream':>12} "
          f"{'outputs/json':>12}  targets: json/bare >= {TARGETS['json/bare']:.2f}, "
          f"outputs/json >= {TARGETS['outputs/json']:.2f} (1 thread)")
    for row in rows:
        r = row["results"]
        for threads in sorted({1, row["cores"]}):
            bare, js = median_run(r[f"bare {threads}"])["fps"], median_run(r[f"json {threads}"])["fps"]
            line = f"{row['model']:<32} {threads:>7} {bare:>7.1f} {js:>7.1f} {js / bare:>9.2f}"
            verdict = [_verdict(js / bare, TARGETS["json/bare"])] if threads == 1 else ["(two-thread case: (d))"]
            if threads == 1:
                full = median_run(r["outputs 1"])
                line += f" {full['fps']:>12.1f} {full['fps'] / js:>12.2f}"
                verdict.append(_verdict(full["fps"] / js, TARGETS["outputs/json"]))
                verdict.append(f"viewer read {full['viewer_parts']} of {full['frames']} frames")
            else:
                line += f" {'':>12} {'':>12}"
            print(line + "  " + "; ".join(verdict))
            runs = "; ".join(f"{case.split()[0]} " + ", ".join(f"{x['fps']:.1f}" for x in r[case])
                             for case in r if case.endswith(f" {threads}"))
            print(f"{'':<40} runs: {runs}")


def _verdict(ratio: float, target: float) -> str:
    return "ok" if ratio >= target else "BELOW TARGET"


BREAKDOWN_STAGES = ("capture", "preprocess", "inference", "decode", "nms", "masks", "semantic", "draw", "encode",
                    "save", "output", "end_to_end")


def print_breakdown(rows) -> None:
    """Per-stage p50 and per-thread CPU per frame of the median run of each `edgedet run` case, and what keeps it
    from the bare loop: a frame costs bare-loop time plus whatever the other threads cannot overlap."""
    print("\nwhere the time goes (median run of each case): per-stage p50 ms from the run's summary; CPU ms per "
          "frame of each thread during the loop")
    for row in rows:
        for case, runs in row["results"].items():
            if case.startswith("bare"):
                continue
            run_ = median_run(runs)
            threads = int(case.split()[1])
            bare_run = median_run(row["results"][f"bare {threads}"])
            bare = bare_run["fps"]
            stages = ", ".join(f"{s} {run_['stages'][s]:.2f}" for s in BREAKDOWN_STAGES if s in run_["stages"])
            cpu = run_["cpu_ms"]
            inference = sum(v for k, v in cpu.items() if k.startswith(("inference", "native")))
            others = sum(cpu.values()) - inference
            print(f"{row['model']} {case} ({run_['fps']:.1f} FPS, bare {bare:.1f}): {stages}")
            print("    CPU ms/frame: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
                  + f"; inference side {inference:.2f} (bare loop {bare_run['cpu_ms']:.2f}), other threads {others:.2f}")
            calls = run_["calls"]
            print(f"    frame period {1000 / run_['fps']:.2f} ms against bare {1000 / bare:.2f} ms: backend.run p50 "
                  f"{calls['run_p50']:.2f} ms here; between two calls p50 {calls['gap_p50']:.2f} ms, p99 "
                  f"{calls['gap_p99']:.2f} ms, {100 * calls['outside']:.1f}% of the loop outside backend.run")
            print("    " + _what_limits(threads, inference, others, 1000 / bare))


def _what_limits(threads: int, inference_cpu: float, other_cpu: float, bare_ms: float) -> str:
    """One sentence on the bound: with a core left over the other threads overlap inference; with every core
    busy in inference, their CPU time adds to the frame (cores shared)."""
    cores = os.cpu_count() or 1
    bound = (inference_cpu + other_cpu) / cores
    if threads < cores:
        if other_cpu <= bare_ms:
            return f"the other threads' {other_cpu:.2f} ms/frame on the spare core(s) fits beside it"
        return (f"the other threads' {other_cpu:.2f} ms/frame on the spare core(s) exceeds it: the output side limits "
                f"the loop; all threads together need ({inference_cpu:.2f} + {other_cpu:.2f}) / {cores} = {bound:.2f} "
                f"ms of the {cores} cores per frame, at most {1000 / bound:.0f} FPS")
    return (f"all {cores} cores run inference, so the other threads' {other_cpu:.2f} ms/frame takes core time from "
            f"it: CPU-bound period >= ({inference_cpu:.2f} + {other_cpu:.2f}) / {cores} = {bound:.2f} ms, "
            f"and inference parallelised over {threads} threads loses more when a thread is preempted")


# ------------------------------------------------------------------------------------ (c): the drawing


def old_draw_detections(image_bgr, detections, names=None, mask_alpha=0.45, thickness=2):
    """The drawing `edgedet run` did before (verbatim copy of the old device.draw), the peer of (c)."""
    import cv2

    from edgedet.device.draw import class_color

    if detections.masks is not None and len(detections):
        old_draw_masks(image_bgr, detections.masks, detections.class_ids, mask_alpha)
    h, w = image_bgr.shape[:2]
    scale = max(0.4, min(w, h) / 900)
    labels = detections.class_names if names is None else detections.with_names(names).class_names
    for (x1, y1, x2, y2), score, class_id, name in zip(detections.xyxy, detections.scores, detections.class_ids,
                                                       labels):
        color = class_color(int(class_id))
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(image_bgr, p1, p2, color, thickness, cv2.LINE_AA)
        old_label(image_bgr, f"{name} {score:.2f}", p1, color, scale)
    return image_bgr


def old_draw_masks(image_bgr, masks, class_ids, alpha=0.45):
    import numpy as np

    from edgedet.device.draw import palette

    if len(masks) == 0:
        return image_bgr
    colors = palette(int(class_ids.max()) + 1)[class_ids]
    covered = masks.any(axis=0)
    if not covered.any():
        return image_bgr
    owner = (len(masks) - 1) - np.argmax(masks[::-1], axis=0)
    overlay = colors[owner[covered]].astype(np.float32)
    pixels = image_bgr[covered].astype(np.float32)
    image_bgr[covered] = (pixels * (1 - alpha) + overlay * alpha).astype(np.uint8)
    return image_bgr


def old_draw_semantic(image_bgr, label_map, alpha=0.35, background=0):
    import numpy as np

    from edgedet.device.draw import palette

    labels = label_map.astype(np.int64)
    covered = (labels != background) & (labels != 255)
    if not covered.any():
        return image_bgr
    colors = palette(int(labels[covered].max()) + 1)
    overlay = colors[labels[covered]].astype(np.float32)
    image_bgr[covered] = (image_bgr[covered].astype(np.float32) * (1 - alpha) + overlay * alpha).astype(np.uint8)
    return image_bgr


def old_draw_overlay(image_bgr, fps, latency_ms, stages=("inference", "end_to_end")):
    import cv2

    parts = [f"{fps:.1f} FPS"] + [f"{s} {latency_ms[s]:.1f} ms" for s in stages if s in latency_ms]
    text = " | ".join(parts)
    scale = max(0.4, image_bgr.shape[1] / 1400)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image_bgr, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
    cv2.putText(image_bgr, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr


def old_label(image, text, corner, color, scale):
    import cv2

    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = corner
    top = y - th - base - 2 if y - th - base - 2 >= 0 else y
    cv2.rectangle(image, (x, top), (x + tw + 2, top + th + base + 2), color, -1)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 1, cv2.LINE_AA)


def old_annotate(image_bgr, detections, names=None, semantic=None, fps=None, latency_ms=None):
    canvas = image_bgr.copy()
    if semantic is not None:
        old_draw_semantic(canvas, semantic)
    old_draw_detections(canvas, detections, names)
    if fps is not None:
        old_draw_overlay(canvas, fps, latency_ms or {})
    return canvas


def drawing_scene(n: int = 20, size_wh=(640, 480), seed: int = 0):
    """A synthetic 640x480 frame and `n` detections with elliptic masks inside their boxes (frame size)."""
    import numpy as np

    from edgedet.device.capture import SyntheticSource
    from edgedet.device.detections import Detections

    rng = np.random.default_rng(seed)
    w, h = size_wh
    frame = SyntheticSource(size_wh).read().image
    xy = rng.uniform(0, [w - 130, h - 130], (n, 2))
    xyxy = np.concatenate([xy, xy + rng.uniform(30, 130, (n, 2))], axis=1).astype(np.float32)
    rows, cols = np.mgrid[:h, :w] + 0.5
    masks = np.zeros((n, h, w), bool)
    for k, (x1, y1, x2, y2) in enumerate(xyxy):
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        masks[k] = ((cols - cx) / rx) ** 2 + ((rows - cy) / ry) ** 2 <= 1
    return frame, Detections(xyxy, np.sort(rng.uniform(0.3, 1.0, n))[::-1], rng.integers(0, 5, n), masks)


def p50_ms(fn, repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def measure_drawing(model: Path, repeats: int) -> dict:
    """(c): p50 ms of the new and the old drawing of one frame (alternating blocks), and of the semantic map each
    one draws, from `model`'s own logits on that frame; OpenCV single-threaded as in `edgedet run`."""
    import cv2

    from edgedet.device.draw import annotate
    from edgedet.device.pipeline import Detector

    cv2.setNumThreads(1)
    frame, detections = drawing_scene()
    detector = Detector(str(model), threads=1)
    prepared = detector.prepare(frame)
    outputs = detector.infer(prepared)
    at_input = detector.finish_semantic_to_draw(outputs, prepared)
    at_frame = detector.finish_semantic(outputs, prepared)
    names, semantic_names = detector.spec.names, detector.spec.semantic_names
    latency = {"inference": 20.0, "end_to_end": 30.0}
    sides = {
        "draw new": lambda: annotate(frame, detections, names, at_input, 30.0, latency, semantic_names=semantic_names),
        "draw old": lambda: old_annotate(frame, detections, names, at_frame, 30.0, latency),
        "semantic map new (half the input resolution)": lambda: detector.finish_semantic_to_draw(outputs, prepared),
        "semantic map old (frame size)": lambda: detector.finish_semantic(outputs, prepared),
    }
    block = max(repeats // 4, 1)
    samples = {name: [] for name in sides}
    for _ in range(4):  # alternating blocks, so load changes hit both sides
        for name, fn in sides.items():
            samples[name].append(p50_ms(fn, block, warmup=2))
    return {"model": model.name, "map_hw": at_input.shape, "p50": {k: statistics.median(v) for k, v in samples.items()},
            "objects": len(detections)}


def print_drawing(result: dict) -> None:
    p50 = result["p50"]
    print(f"\n(c) drawing one 640x480 frame with {result['objects']} masked objects, the semantic overlay (map "
          f"{result['map_hw'][1]}x{result['map_hw'][0]} from {result['model']}'s logits), labels and the FPS band; "
          "p50 ms")
    new, old = p50["draw new"], p50["draw old"]
    print(f"  drawing: new {new:.2f} ms, old {old:.2f} ms: {old / new:.1f}x faster; target <= "
          f"{TARGETS['draw_ms']:.0f} ms: {'ok' if new <= TARGETS['draw_ms'] else 'ABOVE TARGET'}")
    sem_new, sem_old = p50["semantic map new (half the input resolution)"], p50["semantic map old (frame size)"]
    print(f"  semantic map it draws: new (half the input resolution) {sem_new:.2f} ms, old (frame size) "
          f"{sem_old:.2f} ms: "
          f"{sem_old / sem_new:.1f}x faster")
    print(f"  drawing plus its map: new {new + sem_new:.2f} ms, old {old + sem_old:.2f} ms")


# ------------------------------------------------------------------------------------ start-up, memory


STARTUP_PROBE = """
import time
start = time.perf_counter()
import device, edgedet.cli
parser = edgedet.cli.build_parser("run")
parser.parse_args(["run", "--model", "m.tflite", "--source", "synthetic"])
elapsed = time.perf_counter() - start
import sys
heavy = [m for m in ("torch", "onnx", "onnxruntime", "tensorflow", "ai_edge_litert", "matplotlib") if m in sys.modules]
print(elapsed, ",".join(heavy) or "-")
"""


def measure_startup(repeats: int) -> None:
    probes, helps = [], []
    heavy = "-"
    for _ in range(max(repeats, 5)):
        out = run([sys.executable, "-c", STARTUP_PROBE]).stdout.split()
        probes.append(float(out[0]))
        heavy = out[1]
        start = time.perf_counter()
        run([*EDGEDET, "run", "--help"])
        helps.append(time.perf_counter() - start)
    probe = statistics.median(probes)
    print(f"\nstart-up: import device + edgedet.cli + run parser: {probe * 1000:.0f} ms median, "
          f"{min(probes) * 1000:.0f} ms min (target < 300 ms: {'ok' if probe < 0.3 else 'ABOVE TARGET'}); "
          f"heavy modules loaded: {heavy}")
    print(f"          whole `edgedet run --help` process incl. interpreter start: "
          f"{statistics.median(helps) * 1000:.0f} ms median, {min(helps) * 1000:.0f} ms min")


RSS_WRAPPER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def measure_peak_rss(model: Path, video: Path, work: Path, threads: int) -> None:
    cmd = [*EDGEDET, "run", "--model", str(model), "--source", str(video), "--threads", str(threads),
           "--json", str(work / "rss.jsonl"), "--save", str(work / "rss.mp4")]
    code, max_kb = run([sys.executable, "-c", RSS_WRAPPER, *cmd]).stdout.split()
    if code != "0":
        raise SystemExit(f"edgedet run failed with exit code {code}")
    mb = int(max_kb) / 1024
    print(f"\npeak RSS of `edgedet run` ({model.name}, --json and --save): {mb:.0f} MB "
          f"(target < 200 MB: {'ok' if mb < 200 else 'ABOVE TARGET'})")


if __name__ == "__main__":
    sys.exit(main())
