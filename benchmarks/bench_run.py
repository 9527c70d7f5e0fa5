"""`edgedet run` against its peer, a bare backend loop, plus start-up time and peak memory.

    .venv/bin/python benchmarks/bench_run.py [--model int8.tflite] [--frames 200] [--threads 2] [--repeats 3]

Measured in one run, medians over repeats after warm-up:
1. throughput: `edgedet run --source video.mp4 --json out.jsonl` (a subprocess, exactly what a user runs; its
   frame-loop FPS from the summary, model loading excluded) vs a bare loop that only calls `backend.run` on a
   pre-made input with the same model and threads. Target: run >= 90% of bare, for each int8 model.
2. start-up: `import device` + `import edgedet.cli` + building and parsing the `run` parser, before any backend
   loads (in a fresh interpreter; target < 0.3 s), and the wall time of `edgedet run --help` for reference.
3. peak RSS of the `edgedet run` process with the int8 TFLite model (target < 200 MB).

Without --model the script exports int8 TFLite and ONNX files of the shipped checkpoint (or, if it is not
there yet, of an untrained edgedet-n 320x320 model: same compute, so the same latency) with `edgedet export`,
calibrated on a few synthetic images.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EDGEDET = [sys.executable, "-m", "edgedet"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="int8 model(s) to measure (.tflite / .onnx); repeatable")
    parser.add_argument("--checkpoint", help="checkpoint to export when --model is not given (default: shipped)")
    parser.add_argument("--frames", type=int, default=200, help="frames in the test video")
    parser.add_argument("--threads", help="comma-separated inference thread counts, each measured for both loops "
                                          "(default: cores-1 and cores)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per measurement (median reported)")
    parser.add_argument("--workdir", help="keep generated files here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        models = [Path(m) for m in args.model] if args.model else export_int8_models(work, args.checkpoint)
        video = make_video(work / "bench.mp4", args.frames)
        threads = thread_counts(args.threads)
        print(f"video: {video} ({args.frames} frames 640x480), threads {threads}, repeats {args.repeats}, "
              f"{os.cpu_count()} cores")
        rows = [measure_throughput(model, video, work, args, n) for model in models for n in threads]
        print_throughput(rows)
        measure_startup(args.repeats)
        tflite = [m for m in models if m.suffix == ".tflite"]
        if tflite:
            measure_peak_rss(tflite[0], video, work, threads[-1])
    return 0


def thread_counts(text) -> list:
    """"1,2" -> [1, 2]; None -> [cores - 1, cores] (one core left for capture/pre/post, and all cores)."""
    if text:
        return [int(v) for v in str(text).split(",")]
    cores = os.cpu_count() or 1
    return sorted({max(1, cores - 1), cores})


# -------------------------------------------------------------------------------------------- inputs


def export_int8_models(work: Path, checkpoint) -> list:
    """int8 TFLite + ONNX of the shipped (or a fresh untrained n-320) checkpoint, via `edgedet export`."""
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
    out = work / "exports"
    run([*EDGEDET, "export", str(ckpt), "--format", "tflite-int8,onnx-int8", "--out", str(out),
         "--calib", str(data), "--calib-size", "16", "--calib-method", "minmax", "--val-limit", "4"])
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


# ---------------------------------------------------------------------------------------- throughput


BARE_LOOP = """
import sys, time
import numpy as np
from edgedet.device.backends import load_backend
from edgedet.device.preprocessing import preprocess
model, frames, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
backend = load_backend(model, threads=threads)
x, _ = preprocess(np.full((480, 640, 3), 114, np.uint8), backend.spec)
for _ in range(10):
    backend.run(x)
start = time.perf_counter()
for _ in range(frames):
    backend.run(x)
print(frames / (time.perf_counter() - start))
"""


def bare_backend_fps(model: Path, frames: int, threads: int) -> float:
    """Frames per second of a fresh process calling only backend.run on one pre-made input (10 warm-up runs)."""
    result = run([sys.executable, "-c", BARE_LOOP, str(model), str(frames), str(threads)])
    return float(result.stdout.split()[-1])


def run_fps(model: Path, video: Path, work: Path, threads: int) -> float:
    """Frame-loop FPS of `edgedet run` on the video (JSON lines written), parsed from its summary line."""
    result = run([*EDGEDET, "run", "--model", str(model), "--source", str(video), "--threads", str(threads),
                  "--json", str(work / "bench.jsonl")])
    match = re.search(r"(\d+) frames in ([\d.]+) s = ([\d.]+) FPS", result.stdout)
    if not match or int(match.group(1)) == 0:
        raise SystemExit(f"edgedet run processed no frames:\n{result.stdout}\n{result.stderr}")
    return float(match.group(3))


def measure_throughput(model: Path, video: Path, work: Path, args, threads: int) -> dict:
    print(f"measuring {model.name} with {threads} threads ...", flush=True)
    bare, full = [], []
    for _ in range(args.repeats):  # interleaved, so slow drifts of a shared machine hit both alike
        bare.append(bare_backend_fps(model, args.frames, threads))
        full.append(run_fps(model, video, work, threads))
    return {"model": model.name, "threads": threads, "bare": statistics.median(bare), "run": statistics.median(full),
            "bare_all": bare, "run_all": full}


def print_throughput(rows) -> None:
    print("\nthroughput (frames/s, median of repeats)")
    print(f"{'model':<28} {'threads':>7} {'bare backend':>13} {'edgedet run':>12} {'run/bare':>9}  target >= 0.90")
    for row in rows:
        ratio = row["run"] / row["bare"]
        print(f"{row['model']:<28} {row['threads']:>7} {row['bare']:>13.1f} {row['run']:>12.1f} {ratio:>9.2f}  "
              f"{'ok' if ratio >= 0.9 else 'BELOW TARGET'}")
        print(f"{'':<36} runs: bare {', '.join(f'{v:.1f}' for v in row['bare_all'])}; "
              f"run {', '.join(f'{v:.1f}' for v in row['run_all'])}")


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
