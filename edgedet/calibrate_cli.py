"""`edgedet calibrate CKPT --calib DATA --sensitivity [--auto-keep-float N | --map-budget X]`.

Per-layer int8 sensitivity ranking and the keep-float int8 model (what they measure: export/calibrate.py).
This verb loads the checkpoint, the calibration set and, for --map-budget, the evaluator
(edgedet.export_inputs) and hands them to export.calibrate.calibrate_model.
"""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from edgedet.calibration.onnx_quant import METHODS, SCHEMES
from edgedet.device.errors import EdgedetError
from edgedet.device.spec_sources import read_names
from edgedet.calibration.calibset import build_calibration_set
from edgedet.export.calibrate import CalibrateConfig, calibrate_model, calibrate_onnx_model
from edgedet.export.foreign_onnx import cut_foreign_onnx
from .export_cli import is_foreign_model
from .export_inputs import calibration_items, evaluator, validation_data
from .models.loading import load_for_export


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="MODEL", help="checkpoint (.pt), 'shipped', 'shipped:ssd', 'shipped:rcnn', or an Ultralytics/YOLOv5 "
                        "ONNX file (cut before its decode first, as by `edgedet export`)")
    parser.add_argument("--calib", metavar="DATA", required=True, help="calibration data set or image folder")
    parser.add_argument("--sensitivity", action="store_true", help="per-layer sensitivity report (JSON + table)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--auto-keep-float", type=int, metavar="N", help="write an int8 model keeping the N most sensitive layers float")
    budget.add_argument("--map-budget", type=float, metavar="X", help="keep the fewest layers float so int8 loses <= X mAP@.5:.95 points")
    parser.add_argument("--data", metavar="DATA", help="validation data for --map-budget (default: --calib if a data set)")
    parser.add_argument("--val-limit", type=int, help="evaluate on the first N validation images only")
    parser.add_argument("--out", default="calibration", help="output folder (default: %(default)s)")
    parser.add_argument("--imgsz", help="input size N or H,W, divisible by 32 (default: the checkpoint's)")
    parser.add_argument("--names", help="foreign ONNX without metadata: class names, comma separated or a file")
    parser.add_argument("--layout", help="foreign ONNX without metadata: yolov8, yolov8-seg or yolov5")
    parser.add_argument("--calib-size", type=int, default=100, help="calibration images (default: %(default)s)")
    parser.add_argument("--calib-method", choices=METHODS, default="percentile", help="default: %(default)s")
    parser.add_argument("--sensitivity-images", type=int, default=8, help="images scoring each layer (default: %(default)s)")
    parser.add_argument("--int8-scheme", default="auto", choices=("auto", *SCHEMES), help="ONNX int8 scheme (default: from the CPU)")
    parser.add_argument("--seed", type=int, default=0, help="calibration sampling seed")


def main(args: argparse.Namespace) -> int:
    config = CalibrateConfig(
        checkpoint=args.checkpoint, calib=args.calib, out=Path(args.out), imgsz=args.imgsz, calib_size=args.calib_size,
        calib_method=args.calib_method, sensitivity_images=args.sensitivity_images, int8_scheme=args.int8_scheme,
        auto_keep_float=args.auto_keep_float, map_budget=args.map_budget, data=args.data, val_limit=args.val_limit,
        seed=args.seed, names=read_names(args.names), layout=args.layout)
    if not (args.sensitivity or config.auto_keep_float is not None or config.map_budget is not None):
        raise EdgedetError("nothing to do: pass --sensitivity, --auto-keep-float N or --map-budget X")
    return run_calibrate(config)


def run_calibrate(config: CalibrateConfig) -> int:
    """Load the checkpoint, the calibration set and the evaluator, then export.calibrate.calibrate_model."""
    if config.auto_keep_float is not None and config.auto_keep_float < 0:
        raise EdgedetError(f"--auto-keep-float must be >= 0, got {config.auto_keep_float}")
    if config.map_budget is not None and not 0 <= config.map_budget < math.inf:
        raise EdgedetError(f"--map-budget must be a number of mAP points >= 0, got {config.map_budget}")
    for flag, value in (("--sensitivity-images", config.sensitivity_images), ("--val-limit", config.val_limit)):
        if value is not None and value < 1:
            raise EdgedetError(f"{flag} must be >= 1, got {value}")
    data = validation_data(config.data, config.calib)
    if config.map_budget is not None and data is None:
        raise EdgedetError("--map-budget needs validation data: pass --data DATA (or a data set as --calib)")
    items, description = calibration_items(config.calib)
    evaluate = evaluator(data, limit=config.val_limit) if data is not None else None
    if is_foreign_model(config.checkpoint):
        with tempfile.TemporaryDirectory(prefix="edgedet-cut-") as tmp:
            cut = Path(tmp) / f"{Path(config.checkpoint).stem}.onnx"
            spec = cut_foreign_onnx(config.checkpoint, cut, names=config.names, layout=config.layout,
                                    imgsz=config.imgsz)
            calib = build_calibration_set(items, spec, config.calib_size, "random", config.seed)
            return calibrate_onnx_model(cut, spec, calib, description, config, evaluate)
    model, spec = load_for_export(config.checkpoint, config.imgsz)
    calib = build_calibration_set(items, spec, config.calib_size, "random", config.seed)
    return calibrate_model(model, spec, calib, description, config, evaluate)
