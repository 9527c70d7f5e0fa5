"""edgedet's model family against Ultralytics YOLOv8n: the same data, input size, wall-time budget and machine.

    .venv/bin/python benchmarks/bench_vs_yolov8n.py [--minutes 27] [--presets n] [--out runs/vs-yolov8n]
    make bench-yolov8n                                    # the same, with the shipped model's budget (27 min each)

1. The synthetic data set of `make train-shipped` (runs/shapes320: 4000 train, 300 val at 320), generated if absent.
2. Each edgedet preset trains from scratch exactly as `make train-shipped` does (two gloo processes of one thread,
   --time-limit MINUTES, the cosine schedule ending on time); Ultralytics YOLOv8n trains from its model yaml (no
   downloaded weights) with `time=MINUTES/60` hours, batch 16, on the same split converted to YOLO labels, in its own
   venv (scripts/ultralytics_env.sh; Ultralytics is AGPL: edgedet never imports it), and is exported to ONNX by
   Ultralytics. The trainings run one after the other, each with the whole machine.
3. Every model is exported by `edgedet export` (fp32 ONNX, int8 ONNX; the YOLOv8n file through the foreign-model
   path) and measured by `edgedet eval` (box mAP50-95, mAP50 on the val split) and `edgedet bench` (latency at one
   inference thread); parameters and FLOPs (2 x multiply-accumulates of every Conv, at the input size) are counted on
   the fp32 ONNX graphs by one function, so both families are counted alike.

edgedet's models also carry a semantic head and instance-mask prototypes; YOLOv8n here is detection only. The table
compares boxes, and the latency is each whole model as exported. Prints a Markdown table and writes it to OUT/table.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EDGEDET = str(ROOT / ".venv" / "bin" / "edgedet")
ULTRA_ENV = {"PYTHONPATH": str(ROOT / "scripts" / "ultralytics_shim"), "YOLO_OFFLINE": "1",
             "YOLO_CONFIG_DIR": str(ROOT / ".cache" / "ultralytics-config")}
ULTRA_PY = str(ROOT / ".cache" / "ultralytics-venv" / "bin" / "python")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=27.0, help="training wall time of each model (default 27, "
                                                                    "the shipped model's)")
    parser.add_argument("--presets", default="n", help="edgedet presets to train, comma separated (default n)")
    parser.add_argument("--data", default="runs/shapes320", help="synthetic data set folder (made if absent)")
    parser.add_argument("--out", default="runs/vs-yolov8n", help="output folder")
    parser.add_argument("--skip-train", action="store_true", help="reuse the checkpoints of an earlier run in OUT")
    args = parser.parse_args()
    out, data = Path(args.out), Path(args.data)
    out.mkdir(parents=True, exist_ok=True)
    ensure_data(data)
    models = {}
    for preset in args.presets.split(","):
        models[f"edgedet-{preset}"] = train_edgedet(preset, data, out / f"edgedet-{preset}", args.minutes,
                                                    args.skip_train)
    models["yolov8n"] = train_yolov8n(data, out / "ultralytics", args.minutes, args.skip_train)
    rows = [measure(name, source, data, out) for name, source in models.items()]
    table = format_table(rows, args.minutes)
    print(table)
    (out / "table.md").write_text(table + "\n")
    return 0


def sh(command, env=None, log=None) -> None:
    """Run a command (printed first); its output goes to `log` when given. Raises on failure."""
    print("+", " ".join(str(c) for c in command), flush=True)
    with open(log, "w") if log else open(os.devnull, "w") as sink:
        subprocess.run([str(c) for c in command], check=True, env={**os.environ, **(env or {})},
                       stdout=sink if log else None, stderr=subprocess.STDOUT if log else None)


def ensure_data(data: Path) -> None:
    if not (data / "dataset.yaml").is_file():
        sh([EDGEDET, "data", "synth", "--out", data, "--train", "4000", "--val", "300", "--imgsz", "320", "--seed", "0"])


def train_edgedet(preset: str, data: Path, out: Path, minutes: float, skip: bool) -> Path:
    """`make train-shipped`'s command for `preset` with --time-limit minutes; returns best.pt."""
    if not (skip and (out / "best.pt").is_file()):
        sh([ROOT / ".venv" / "bin" / "torchrun", "--standalone", "--nproc_per_node", "2", "-m", "edgedet", "train",
            "--data", data, "--model", preset, "--imgsz", "320", "--epochs", "8", "--batch", "16", "--lr", "3e-3",
            "--threads", "1", "--workers", "1", "--time-limit", minutes, "--out", out],
           env={"OMP_NUM_THREADS": "1"}, log=out.parent / f"{out.name}-train.log")
    return out / "best.pt"


def train_yolov8n(data: Path, out: Path, minutes: float, skip: bool) -> Path:
    """YOLOv8n from scratch by Ultralytics in its venv for `minutes`; returns its ONNX export."""
    onnx = out / "yolov8n-det.onnx"
    if not (skip and onnx.is_file()):
        sh([ROOT / "scripts" / "ultralytics_env.sh"])
        sh([ULTRA_PY, ROOT / "scripts" / "ultralytics_models.py", "train", "--data", data / "dataset.yaml",
            "--task", "detect", "--imgsz", "320", "--epochs", "1000", "--batch", "16",
            "--time-hours", minutes / 60.0, "--out", out], env=ULTRA_ENV, log=out.parent / "yolov8n-train.log")
    return onnx


def measure(name: str, source: Path, data: Path, out: Path) -> dict:
    """fp32 and int8 ONNX exports of one model, their box mAP, latency, and the fp32 graph's parameters and FLOPs."""
    models = out / "models" / name
    sh([EDGEDET, "export", source, "--format", "onnx,onnx-int8", "--calib", data, "--data", data, "--val-limit", "100",
        "--max-map-drop", "100", "--out", models], log=out / f"{name}-export.log")
    fp32 = next(p for p in models.glob("*.onnx") if not p.name.endswith("-int8.onnx"))
    int8 = next(models.glob("*-int8.onnx"))
    params, flops = count_params_flops(fp32)
    row = {"model": name, "params_m": params / 1e6, "gflops": flops / 1e9}
    for tag, path in (("fp32", fp32), ("int8", int8)):
        metrics_path = out / f"{name}-{tag}-eval.json"
        sh([EDGEDET, "eval", "--model", path, "--data", data, "--no-progress", "--json", metrics_path],
           log=out / f"{name}-{tag}-eval.log")
        metrics = json.loads(metrics_path.read_text())
        row[f"{tag}_map"], row[f"{tag}_map50"] = 100 * metrics["bbox"]["AP"], 100 * metrics["bbox"]["AP50"]
        row[f"{tag}_ms"] = bench_latency_ms(path, data, out / f"bench-{name}-{tag}")
    return row


def bench_latency_ms(model: Path, data: Path, out: Path) -> float:
    """Inference p50 (ms) of `edgedet bench` with one thread."""
    sh([EDGEDET, "bench", "--models", model, "--data", data, "--threads", "1", "--frames", "100", "--out", out],
       log=out.parent / f"{out.name}.log")
    record = json.loads((out / "results.jsonl").read_text().splitlines()[-1])
    return float(record["latency_ms"]["inference"]["p50"])


def count_params_flops(onnx_path: Path):
    """(parameters, FLOPs) of an fp32 ONNX graph: every float initializer's size; 2 x MACs of every Conv at the
    graph's (static) input size."""
    import numpy as np
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    params = sum(w.size for w in weights.values() if w.dtype.kind == "f")
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.output)}
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in weights and node.output[0] in shapes:
            c_out, c_in_per_group, *kernel = weights[node.input[1]].shape
            _, _, *spatial = shapes[node.output[0]]
            macs += c_out * c_in_per_group * int(np.prod(kernel)) * int(np.prod(spatial))
    return params, 2 * macs


def format_table(rows, minutes: float) -> str:
    lines = [f"Training budget {minutes:g} min each on {machine()}; box mAP on the synthetic val split (300 images, "
             "320x320); latency: `edgedet bench` inference p50, 1 thread.", "",
             "| model | params (M) | GFLOPs | mAP50-95 fp32 | mAP50 fp32 | mAP50-95 int8 | mAP50 int8 | "
             "fp32 ms | int8 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params_m']:.2f} | {r['gflops']:.2f} | {r['fp32_map']:.1f} | "
                     f"{r['fp32_map50']:.1f} | {r['int8_map']:.1f} | {r['int8_map50']:.1f} | {r['fp32_ms']:.2f} | "
                     f"{r['int8_ms']:.2f} |")
    return "\n".join(lines)


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        name = "unknown CPU"
    return f"{name}, {os.cpu_count()} cores ({time.strftime('%Y-%m-%d')})"


if __name__ == "__main__":
    sys.exit(main())
