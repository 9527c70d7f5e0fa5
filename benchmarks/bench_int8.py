"""fp32 vs int8 on both runtimes: latency (1 and 2 threads), file size and accuracy, shipped model at 320.

    .venv/bin/python benchmarks/bench_int8.py [--ckpt shipped] [--data DIR] [--runs 50] [--out DIR]

The peer of each int8 model is its fp32 export, timed in the same run with the same input: the table
prints the median latency of `backend.run` (>= 50 runs after 10 warm-up runs) per thread count and the
int8 / fp32 speed and size ratios; then mAP@.5:.95, mAP@.5, mask AP, mIoU on the synthetic val split,
with the delta against the PyTorch checkpoint (target: int8 loses <= 1.0 mAP@.5:.95).
Results are also written to OUT/bench_int8.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


PAIRS = (("onnx", "onnx-int8"), ("tflite", "tflite-int8"))  # (fp32 peer, int8) per runtime


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="shipped", help="checkpoint (default: the shipped model)")
    parser.add_argument("--data", default="/tmp/edgedet-bench-synth", help="synthetic data set (made if missing)")
    parser.add_argument("--imgsz", type=int, default=320, help="export and data size (default 320)")
    parser.add_argument("--out", default="/tmp/edgedet-bench-int8", help="folder for the exported models and JSON")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model and thread count (>= 50)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    parser.add_argument("--calib-size", type=int, default=200)
    parser.add_argument("--calib-method", default="percentile", choices=("minmax", "entropy", "percentile"))
    parser.add_argument("--val-limit", type=int, default=None, help="evaluate on the first N val images only")
    parser.add_argument("--reuse", action="store_true", help="reuse models already exported into --out")
    return parser.parse_args(argv)


def ensure_data(path: Path, imgsz: int) -> Path:
    """The synthetic data set at `path`, generated (200 train, 300 val, seed 0) if absent."""
    if not (path / "dataset.yaml").is_file():
        from edgedet.cli import main

        assert main(["data", "synth", "--out", str(path), "--train", "200", "--val", "300", "--imgsz", str(imgsz),
                     "--seed", "0"]) == 0
    return path


def export_models(args, data: Path, out: Path) -> dict:
    """format -> path for the four artifacts, exported by the same code as `edgedet export`."""
    from edgedet.export_cli import export_artifacts
    from edgedet.models.loading import checkpoint_input_size, resolve_checkpoint
    from edgedet.export.exporter import ExportConfig, artifact_paths, sized_stem

    formats = [name for pair in PAIRS for name in pair]
    stem = sized_stem(resolve_checkpoint(args.ckpt).stem, (args.imgsz, args.imgsz), checkpoint_input_size(args.ckpt))
    paths = artifact_paths(out, stem, formats)
    if args.reuse and all(p.is_file() for p in paths.values()):
        return paths
    config = ExportConfig(checkpoint=args.ckpt, formats=formats, out=out, imgsz=str(args.imgsz), calib=str(data),
                          calib_size=args.calib_size, calib_method=args.calib_method)
    return export_artifacts(config)[2]


def snapshot_checkpoint(ckpt: str, out: Path) -> Path:
    """Copy the checkpoint into `out` so exports and the PyTorch reference use the same weights
    even if the original file is replaced (e.g. by a training run) while the benchmark runs."""
    import shutil

    from edgedet.models.loading import checkpoint_input_size, resolve_checkpoint

    source = resolve_checkpoint(ckpt)
    copy = out / source.name
    if source.resolve() != copy.resolve():
        shutil.copy2(source, copy)
    return copy


def median_latency_ms(path: Path, threads: int, x_image, runs: int, warmup: int) -> float:
    """Median wall time of backend.run over `runs` runs after `warmup`, on one preprocessed image."""
    from edgedet.device.backends import load_backend
    from edgedet.device.preprocessing import preprocess

    backend = load_backend(path, threads=threads)
    x, _ = preprocess(x_image, backend.spec)
    for _ in range(warmup):
        backend.run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.run(x)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def accuracy(model, data: Path, limit) -> dict:
    from edgedet.export_inputs import evaluate_backend

    return evaluate_backend(model, data, limit=limit)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.runs < 50:
        raise SystemExit("--runs must be >= 50")
    import cv2

    data = ensure_data(Path(args.data), args.imgsz)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.ckpt = str(snapshot_checkpoint(args.ckpt, out))
    paths = export_models(args, data, out)
    image = cv2.imread(str(sorted((data / "val" / "images").iterdir())[0]))
    latency = {name: {t: median_latency_ms(path, t, image, args.runs, args.warmup) for t in (1, 2)}
               for name, path in paths.items()}
    sizes = {name: os.path.getsize(path) / 1e6 for name, path in paths.items()}
    print(f"\nlatency: median of {args.runs} runs after {args.warmup} warm-up, backend.run only, "
          f"{platform.machine()} {os.cpu_count()} cores, imgsz {args.imgsz}")
    print(f"{'model':<12} {'size MB':>8} {'1 thr ms':>9} {'2 thr ms':>9}   {'int8/fp32 size':>14} {'speed-up 1t':>11} {'2t':>6}")
    for fp32, int8 in PAIRS:
        for name in (fp32, int8):
            ratio = ""
            if name == int8:
                ratio = (f"   {sizes[int8] / sizes[fp32]:>14.2f} {latency[fp32][1] / latency[int8][1]:>10.2f}x "
                         f"{latency[fp32][2] / latency[int8][2]:>5.2f}x")
            print(f"{name:<12} {sizes[name]:>8.2f} {latency[name][1]:>9.2f} {latency[name][2]:>9.2f}{ratio}")
    from edgedet.models.loading import resolve_checkpoint, torch_backend
    from edgedet.export.accuracy import ArtifactAccuracy, format_table

    ckpt = resolve_checkpoint(args.ckpt)
    reference = ArtifactAccuracy("torch", str(ckpt), os.path.getsize(ckpt) / 1e6,
                                 accuracy(torch_backend(ckpt, imgsz=args.imgsz), data, args.val_limit))
    rows = [ArtifactAccuracy(name, str(path), sizes[name], accuracy(str(path), data, args.val_limit))
            for name, path in paths.items()]
    print(f"\naccuracy on {data} val split ({args.val_limit or 'all'} images), calibration {args.calib_method}, "
          f"{args.calib_size} train images")
    print(format_table(rows, reference))
    result = {"latency_ms_median": latency, "size_mb": sizes, "runs": args.runs,
              "accuracy": {row.name: row.metrics for row in [reference, *rows]}, "machine": platform.machine(),
              "calib_method": args.calib_method, "imgsz": args.imgsz}
    (out / "bench_int8.json").write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
