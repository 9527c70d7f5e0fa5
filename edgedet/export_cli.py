"""`edgedet export MODEL --format ...`: ONNX / TFLite in fp32, fp16 and int8, each checked against the source.

MODEL is a checkpoint file, `shipped` for the checkpoint bundled with edgedet (edgedet/weights/edgedet-n-320.pt;
`shipped:ssd` and `shipped:rcnn` for the bundled SSD and two-stage model),
or a foreign ONNX detector (Ultralytics YOLOv8/YOLO11, -seg, YOLOv5), which is cut before its decode first.
This verb loads the model, the calibration samples and the evaluator (edgedet.export_inputs) and hands
them to export.exporter, which exports, quantizes and applies the gate: mAP against the source on labelled
data, else the agreement of int8 detections with the source's on the calibration images.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Dict, List, Tuple

import cv2

from edgedet.calibration.onnx_quant import METHODS, SCHEMES
from edgedet.calibration.sampling import STRATEGIES
from edgedet.device.errors import EdgedetError
from edgedet.device.spec_sources import read_names
from edgedet.export.exporter import (FORMATS, INT8_FORMATS, ExportConfig, Reference, check_accuracy, check_agreement,
                                     check_request, checkpoint_reference, export_foreign, export_model, parse_formats,
                                     sized_stem, source_reference)
from .export_inputs import calibration_items, evaluator, is_dataset, validation_data
from .models.loading import load_for_export, resolve_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="MODEL", help="checkpoint (.pt), 'shipped' (or 'shipped:ssd', 'shipped:rcnn') for a bundled model, or an "
                        "Ultralytics/YOLOv5 ONNX file (cut before its decode, then quantized)")
    parser.add_argument("--format", default="onnx,onnx-int8,tflite,tflite-int8",
                        help=f"comma-separated formats out of {','.join(FORMATS)} (default: %(default)s)")
    parser.add_argument("--imgsz", help="export input size: N or H,W, divisible by 32 (default: the model's)")
    parser.add_argument("--names", help="foreign ONNX without metadata: class names, comma separated or a file with "
                        "one per line")
    parser.add_argument("--layout", help="foreign ONNX without metadata: yolov8, yolov8-seg or yolov5")
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
                        "than this against the source (the PyTorch checkpoint or the foreign ONNX file)")
    parser.add_argument("--min-agreement", type=float, metavar="Y", help="fail (exit 1) when an int8 artifact's "
                        "detections agree with the source's (same class, IoU >= 0.5) at precision or recall below Y "
                        "(0..1), measured on the calibration images when there are no labels")
    parser.add_argument("--threads", type=int, help="inference threads for the accuracy check")


def main(args: argparse.Namespace) -> int:
    config = ExportConfig(
        checkpoint=args.checkpoint, formats=parse_formats(args.format), out=Path(args.out), imgsz=args.imgsz,
        calib=args.calib, calib_size=args.calib_size, calib_method=args.calib_method, calib_sampling=args.calib_sampling,
        seed=args.seed, int8_scheme=args.int8_scheme,
        keep_float=[n.strip() for n in args.keep_float.split(",") if n.strip()],
        data=args.data, val_limit=args.val_limit, max_map_drop=args.max_map_drop, threads=args.threads,
        min_agreement=args.min_agreement, names=read_names(args.names), layout=args.layout)
    return run_export(config)


def run_export(config: ExportConfig) -> int:
    """Export, then gate. Returns the exit code (0 ok, 1 when the gate rejects an artifact)."""
    check_options(config)
    data = validation_data(config.data, config.calib)
    if data is None and config.max_map_drop is not None:
        raise EdgedetError("--max-map-drop needs validation data: pass --data DATA (or a data set as --calib)")
    source, _, written = export_artifacts(config)
    for name, path in written.items():
        print(f"wrote {name:<12} {path}  ({os.path.getsize(path) / 1e6:.2f} MB)")
    code = 0
    if data is not None:
        code = _check_accuracy(source, written, data, config)
    if (data is None or config.min_agreement is not None) and any(name in INT8_FORMATS for name in written):
        code = max(code, _check_agreement(source, written, config))
    elif data is None:
        print("accuracy check skipped: no validation data (pass --data DATA or a data set as --calib)")
    return code


def check_options(config: ExportConfig) -> None:
    """EdgedetError naming the model or a flag that cannot work, before anything is exported (not after the int8
    file, and the missing model before a missing --calib)."""
    if is_foreign_model(config.checkpoint):
        if not Path(config.checkpoint).is_file():
            raise EdgedetError(f"model file not found: {config.checkpoint}")
    else:
        path = resolve_checkpoint(config.checkpoint)
        if path.suffix.lower() == ".tflite":
            raise EdgedetError(f"{path} is a TFLite file, already exported: export takes a .pt checkpoint or an "
                               f"Ultralytics/YOLOv5 .onnx file")
    if config.max_map_drop is not None and not math.isfinite(config.max_map_drop):
        raise EdgedetError(f"--max-map-drop must be a number of mAP points, got {config.max_map_drop}")
    for flag, value in (("--val-limit", config.val_limit), ("--threads", config.threads)):
        if value is not None and value < 1:
            raise EdgedetError(f"{flag} must be >= 1, got {value}")
    if config.data is not None and not is_dataset(Path(config.data)):
        raise EdgedetError(f"--data {config.data}: not a data set (a folder from `edgedet data synth` or with a "
                           f"dataset.yaml, a dataset.yaml or a COCO JSON)")


def is_foreign_model(model: str) -> bool:
    """A model file from another exporter (an ONNX file), rather than a checkpoint of this project."""
    return Path(str(model)).suffix.lower() == ".onnx"


def export_artifacts(config: ExportConfig):
    """(gate Reference, spec, {format: path written}) for config.formats; checks the inputs before writing."""
    check_request(config)
    samples = lambda: calibration_items(config.calib)  # noqa: E731 (called only for int8 formats)
    if is_foreign_model(config.checkpoint):
        source = Path(config.checkpoint)
        spec, written = export_foreign(source, config, samples)
        return source_reference(source, config), spec, written
    ckpt_path = resolve_checkpoint(config.checkpoint)
    model, spec = load_for_export(ckpt_path, config.imgsz)
    stem = sized_stem(ckpt_path.stem, spec.input_size_hw if config.imgsz else None, model.config.input_size_hw)
    written = export_model(model, spec, stem, config, samples)
    return checkpoint_reference(model, spec, ckpt_path, config.threads), spec, written


def _check_accuracy(source: Reference, written: Dict[str, Path], data, config: ExportConfig) -> int:
    """The accuracy table and gate on `data`'s val split (export.exporter.check_accuracy with edgedet's evaluator)."""
    print(f"accuracy check on {data} (val split{f', first {config.val_limit} images' if config.val_limit else ''}):",
          flush=True)
    evaluate = evaluator(data, limit=config.val_limit, threads=config.threads)
    return check_accuracy(source, written, evaluate, config)


def _check_agreement(source: Reference, written: Dict[str, Path], config: ExportConfig) -> int:
    """The label-free gate (export.exporter.check_agreement) on held-out images where there are some."""
    images, description = agreement_images(config.calib, AGREEMENT_IMAGES)
    print(f"agreement with {source.name} on {len(images)} {description} (same class, IoU >= 0.5):", flush=True)
    return check_agreement(source, written, images, config)


AGREEMENT_IMAGES = 50  # images the label-free gate compares on


def agreement_images(calib, count: int) -> Tuple[List, str]:
    """(up to `count` BGR images, what they are): the val split of a calibration data set (images calibration did
    not see), else the first images of the calibration folder (in-sample: a folder has no held-out part)."""
    path = Path(str(calib))
    if is_dataset(path):
        items, _ = calibration_items(path, split="val")
        description = "val images"
    else:
        items, _ = calibration_items(path)
        description = "calibration images (in-sample)"
    images = [cv2.imread(str(item.path), cv2.IMREAD_COLOR) for item in items[:count]]
    images = [image for image in images if image is not None]
    if not images:
        raise EdgedetError(f"no readable images in {calib} for the agreement check")
    return images, description
