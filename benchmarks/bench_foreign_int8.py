"""Ultralytics ONNX files to int8, side by side: the fp32 source, a naive whole-graph int8, edgedet's int8.

    .venv/bin/python benchmarks/bench_foreign_int8.py --models runs/ultralytics/yolov8n-det.onnx \
        runs/ultralytics/yolov8n-seg.onnx --data runs/shapes320 [--val-limit N] [--runs 50] [--out DIR]

For each model, on the same val split and the same calibration images (200 of the train split, through the
runtime's letterbox, percentile ranges):
- source: the fp32 file as Ultralytics exported it (decode inside the graph);
- naive int8: `onnxruntime.quantization.quantize_static` on the whole graph (QDQ, per-channel weights, the same
  scheme and calibration), as a user would do by hand: the final Concat of pixel boxes and 0..1 scores shares
  one int8 scale;
- edgedet int8: `edgedet export MODEL.onnx --format onnx-int8` (the graph cut before its decode, one scale per
  level and role, the decode in NumPy); with --tflite also its full-integer TFLite file.
Accuracy: box mAP@.5:.95 and mAP@.5 (and mask mAP@.5:.95 for -seg) by `edgedet eval`'s evaluator. Latency:
`backend.run` alone and `Detector.predict` end to end at conf 0.25 (decode, NMS, masks included), medians of
--runs calls after --warmup, 1 and 2 threads, every file timed in the same run on the same images.
Results are also written to OUT/bench_foreign_int8.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Dict, List

import cv2

from edgedet.calibration.calibset import build_calibration_set
from edgedet.calibration.onnx_quant import compute_ranges, default_int8_scheme, quantize_qdq
from edgedet.calibration.readers import OnnxCalibrationReader
from edgedet.device.backends import load_backend
from edgedet.device.pipeline import Detector
from edgedet.device.preprocessing import preprocess
from edgedet.evaluate import evaluate_model
from edgedet.export.exporter import ExportConfig, export_foreign
from edgedet.export_inputs import calibration_items

METHOD = "percentile"
THREADS = (1, 2)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="Ultralytics ONNX files (fp32)")
    parser.add_argument("--data", required=True, help="data set: its train split calibrates, its val split evaluates")
    parser.add_argument("--out", default="runs/bench-foreign-int8", help="folder for the int8 files and the JSON")
    parser.add_argument("--calib-size", type=int, default=200)
    parser.add_argument("--val-limit", type=int, default=None, help="evaluate on the first N val images only")
    parser.add_argument("--runs", type=int, default=50, help="timed calls per file and thread count")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--tflite", action="store_true", help="also edgedet's full-integer TFLite file")
    return parser.parse_args(argv)


def naive_int8(source: Path, out: Path, calib, scheme) -> Path:
    """The whole graph quantized by onnxruntime's static quantization, nothing excluded."""
    ranges = out.with_suffix(".ranges.json")
    compute_ranges(source, OnnxCalibrationReader(calib, calib.spec.input_name), METHOD, ranges)
    quantize_qdq(source, out, ranges, METHOD, scheme)
    return out


def edgedet_int8(source: Path, out: Path, data: str, args) -> Dict[str, Path]:
    formats = ["onnx-int8"] + (["tflite-int8"] if args.tflite else [])
    config = ExportConfig(checkpoint=str(source), formats=formats, out=out, calib=data, calib_size=args.calib_size,
                          calib_method=METHOD, calib_sampling="random")
    _, written = export_foreign(source, config, lambda: calibration_items(data))
    return written


def accuracy(model: Path, data: str, limit) -> Dict[str, float]:
    report = evaluate_model(str(model), data, limit=limit, threads=2, progress=False)
    out = {"map": report["bbox"]["AP"] * 100, "map50": report["bbox"]["AP50"] * 100}
    if "segm" in report:
        out["mask_ap"] = report["segm"]["AP"] * 100
    return out


def median_ms(call, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latency(model: Path, images: List, threads: int, args) -> Dict[str, float]:
    """Median ms of the backend alone and of Detector.predict end to end, cycling over `images`."""
    detector = Detector(str(model), conf=0.25, threads=threads)
    inputs = [preprocess(image, detector.spec)[0] for image in images]
    counter = {"i": 0}

    def next_index() -> int:
        counter["i"] = (counter["i"] + 1) % len(images)
        return counter["i"]

    inference = median_ms(lambda: detector.backend.run(inputs[next_index()]), args.runs, args.warmup)
    end_to_end = median_ms(lambda: detector.predict(images[next_index()]), args.runs, args.warmup)
    return {"inference_ms": inference, "end_to_end_ms": end_to_end}


def bench_model(source: Path, args, out: Path) -> Dict[str, dict]:
    items, _ = calibration_items(args.data)
    spec = load_backend(source, threads=1).spec
    scheme, reason = default_int8_scheme()
    calib = build_calibration_set(items, spec, args.calib_size, "random", 0)
    files = {"source fp32": source, "naive int8": naive_int8(source, out / f"{source.stem}-naive-int8.onnx", calib,
                                                              scheme)}
    written = edgedet_int8(source, out, args.data, args)
    files["edgedet int8 onnx"] = written["onnx-int8"]
    if "tflite-int8" in written:
        files["edgedet int8 tflite"] = written["tflite-int8"]
    images = [cv2.imread(str(item.path)) for item in items[:20]]
    rows = {}
    for name, path in files.items():
        row = {"file": str(path), "size_mb": round(os.path.getsize(path) / 1e6, 2), **accuracy(path, args.data,
                                                                                              args.val_limit)}
        for threads in THREADS:
            row.update({f"{key}_{threads}t": value for key, value in latency(path, images, threads, args).items()})
        rows[name] = row
        print(f"{source.name} {name}: {json.dumps(row)}", flush=True)
    rows["_scheme"] = {"int8": scheme.name, "why": reason}
    return rows


def table(results: Dict[str, Dict[str, dict]]) -> str:
    head = ("| model | file | size MB | mAP50-95 | mAP50 | mask AP | inference ms 1t / 2t | end to end ms 1t / 2t "
            "| d mAP vs fp32 | speed-up vs fp32 (inference 1t) |")
    lines = [head, "|" + "---|" * 10]
    for model, rows in results.items():
        base = rows["source fp32"]
        for name, row in rows.items():
            if name.startswith("_"):
                continue
            mask = f"{row['mask_ap']:.2f}" if "mask_ap" in row else ""
            lines.append(f"| {model} | {name} | {row['size_mb']:.2f} | {row['map']:.2f} | {row['map50']:.2f} | {mask} "
                         f"| {row['inference_ms_1t']:.2f} / {row['inference_ms_2t']:.2f} "
                         f"| {row['end_to_end_ms_1t']:.2f} / {row['end_to_end_ms_2t']:.2f} "
                         f"| {row['map'] - base['map']:+.2f} | {base['inference_ms_1t'] / row['inference_ms_1t']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = {Path(model).name: bench_model(Path(model), args, out) for model in args.models}
    text = table(results)
    print(text)
    machine = f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip()
    (out / "bench_foreign_int8.json").write_text(json.dumps({"machine": machine, "results": results,
                                                             "wall_s": round(time.time() - started)}, indent=1))
    print(f"{machine}; {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
