"""`edgedet export CKPT --format ...`: ONNX / TFLite in fp32, fp16 and int8, each checked on the validation split.

CKPT is a checkpoint file, or `shipped` for the checkpoint bundled with edgedet (edgedet/weights/edgedet-n-320.pt).
This verb loads the checkpoint, the calibration samples and the evaluator (edgedet.export_inputs) and hands
them to export.exporter, which exports, quantizes and applies the accuracy gate.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Dict

from edgedet.calibration.onnx_quant import METHODS, SCHEMES
from edgedet.calibration.sampling import STRATEGIES
from edgedet.device.errors import EdgedetError
from edgedet.export.exporter import FORMATS, ExportConfig, check_accuracy, check_request, export_model, parse_formats
from .export_inputs import calibration_items, evaluator, validation_data
from .models.loading import load_for_export, resolve_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint (.pt) to export, or 'shipped' for the bundled model")
    parser.add_argument("--format", default="onnx,onnx-int8,tflite,tflite-int8",
                        help=f"comma-separated formats out of {','.join(FORMATS)} (default: %(default)s)")
    parser.add_argument("--imgsz", help="export input size: N or H,W, divisible by 32 (default: the checkpoint's)")
    parser.add_argument("--out", default="exports", help="output folder (default: %(default)s)")
    parser.add_argument("--calib", metavar="DATA", help="calibration images for int8: a data set (folder, dataset.yaml, "
                        "COCO json; its train split) or a folder of images")
    parser.add_argument("--calib-size", type=int, default=200, help="calibration images (default: %(default)s)")
    parser.add_argument("--calib-method", choices=METHODS, default="percentile", help="activation range method (default: %(default)s)")
    parser.add_argument("--calib-sampling", choices=STRATEGIES, default="balanced",
                        help="random, or class-balanced over a labelled data set (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="calibration sampling seed (default: %(default)s)")
    parser.add_argument("--int8-scheme", default="auto", choices=("auto", *SCHEMES),
                        help="ONNX int8 scheme; auto = S8S8 on ARM, U8S8 on x86 (with reduce_range without VNNI)")
    parser.add_argument("--keep-float", default="", help="comma-separated ONNX node names to keep in float "
                        "(e.g. from `edgedet calibrate --auto-keep-float`)")
    parser.add_argument("--data", metavar="DATA", help="validation data set for the accuracy table (default: --calib if it is a data set)")
    parser.add_argument("--val-limit", type=int, help="evaluate on the first N validation images only")
    parser.add_argument("--max-map-drop", type=float, help="fail (exit 1) when an artifact loses more mAP@.5:.95 points "
                        "than this against the PyTorch checkpoint")
    parser.add_argument("--threads", type=int, help="inference threads for the accuracy check")


def main(args: argparse.Namespace) -> int:
    config = ExportConfig(
        checkpoint=args.checkpoint, formats=parse_formats(args.format), out=Path(args.out), imgsz=args.imgsz,
        calib=args.calib, calib_size=args.calib_size, calib_method=args.calib_method, calib_sampling=args.calib_sampling,
        seed=args.seed, int8_scheme=args.int8_scheme,
        keep_float=[n.strip() for n in args.keep_float.split(",") if n.strip()],
        data=args.data, val_limit=args.val_limit, max_map_drop=args.max_map_drop, threads=args.threads)
    return run_export(config)


def run_export(config: ExportConfig) -> int:
    """Export, evaluate, gate. Returns the exit code (0 ok, 1 when the accuracy gate rejects an artifact)."""
    data = validation_data(config.data, config.calib)
    if data is None and config.max_map_drop is not None:
        raise EdgedetError("--max-map-drop needs validation data: pass --data DATA (or a data set as --calib)")
    model, spec, written = export_artifacts(config)
    for name, path in written.items():
        print(f"wrote {name:<12} {path}  ({os.path.getsize(path) / 1e6:.2f} MB)")
    if data is None:
        print("accuracy check skipped: no validation data (pass --data DATA or a data set as --calib)")
        return 0
    return _check_accuracy(model, spec, written, data, config)


def export_artifacts(config: ExportConfig):
    """(model, spec, {format: path written}) for config.formats; checks every input before writing anything."""
    check_request(config)
    ckpt_path = resolve_checkpoint(config.checkpoint)
    model, spec = load_for_export(ckpt_path, config.imgsz)
    written = export_model(model, spec, ckpt_path.stem, config, lambda: calibration_items(config.calib))
    return model, spec, written


def _check_accuracy(model, spec, written: Dict[str, Path], data, config: ExportConfig) -> int:
    """The accuracy table and gate on `data`'s val split (export.exporter.check_accuracy with edgedet's evaluator)."""
    print(f"accuracy check on {data} (val split{f', first {config.val_limit} images' if config.val_limit else ''}):",
          flush=True)
    evaluate = evaluator(data, limit=config.val_limit, threads=config.threads)
    return check_accuracy(model, spec, resolve_checkpoint(config.checkpoint), written, evaluate, config)
