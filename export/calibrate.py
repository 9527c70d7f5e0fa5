"""`edgedet calibrate`'s work on a loaded model and its calibration set (edgedet.calibrate_cli loads them).

Per-layer int8 sensitivity of the ONNX export: each Conv is quantized alone and the SQNR of the raw head
outputs against fp32 ranks the layers (most sensitive first; JSON + table). Then, optionally, an int8 model
that keeps the most sensitive layers in float: the top N (`--auto-keep-float N`), or as few as needed for
the int8 model to lose at most X mAP@.5:.95 points against fp32 on the validation split (`--map-budget X`,
trying 0, 1, 2, 4, ... kept layers). The kept layers are written to the JSON so `edgedet export
--keep-float` can reproduce the model.
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from edgedet.calibration.calibset import CalibrationSet, stack_arrays
from edgedet.calibration.sensitivity import format_table, layer_sensitivity, write_report
from edgedet.device.errors import EdgedetError
from .accuracy import Evaluate
from .checkpoint import image_graph, output_roles
from .exporter import choose_int8_scheme
from .onnx_export import export_onnx


@dataclass
class CalibrateConfig:
    """What `edgedet calibrate` does; one field per flag."""
    checkpoint: str  # checkpoint path, "shipped", "shipped:ssd" or "shipped:rcnn"
    calib: str  # calibration data set or image folder
    out: Path = Path("calibration")  # output folder: sensitivity.json and the keep-float int8 model
    imgsz: Optional[str] = None  # input size; None = the checkpoint's
    names: Optional[List[str]] = None  # foreign ONNX without metadata: class names (--names)
    layout: Optional[str] = None  # foreign ONNX without metadata: its layout (--layout)
    calib_size: int = 100  # calibration images
    calib_method: str = "percentile"  # "minmax", "entropy" or "percentile"
    sensitivity_images: int = 8  # calibration images whose outputs score each layer
    int8_scheme: str = "auto"  # "auto" or a name of calibration.onnx_quant.SCHEMES
    auto_keep_float: Optional[int] = None  # keep the N most sensitive layers in float
    map_budget: Optional[float] = None  # keep as few layers in float as needed to lose <= this many mAP points
    data: Optional[str] = None  # validation data for --map-budget (default: --calib if a data set)
    val_limit: Optional[int] = None  # evaluate on the first N validation images only
    seed: int = 0  # calibration sampling seed


def calibrate_model(model, spec, calib: CalibrationSet, description: str, config: CalibrateConfig,
                    evaluate: Optional[Evaluate] = None) -> int:
    """`calibrate_onnx_model` for `model` (torch.nn.Module, eval mode; `spec` its device.ModelSpec), exported to
    fp32 ONNX first (a two-stage model: its stage 1). Returns the exit code."""
    _check_budget_request(config, evaluate)
    if spec.second_stage and (config.auto_keep_float is not None or config.map_budget is not None):
        raise EdgedetError("a two-stage model's layers are ranked here (its stage 1, on the SQNR of its outputs), but "
                           "its keep-float int8 file needs its heads: pass the names to `edgedet export --keep-float`")
    with tempfile.TemporaryDirectory(prefix="edgedet-calibrate-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(image_graph(model), spec, fp32, output_roles(model, spec))
        return calibrate_onnx_model(fp32, spec, calib, description, config, evaluate)


def calibrate_onnx_model(fp32: Path, spec, calib: CalibrationSet, description: str, config: CalibrateConfig,
                         evaluate: Optional[Evaluate] = None) -> int:
    """Sensitivity ranking of the fp32 ONNX model `fp32` (an edgedet export or a foreign file's cut; `spec` its
    ModelSpec) calibrated on `calib` (from `description`), then the keep-float int8 model if asked. `evaluate`
    (model path -> metrics on the validation split) is needed for --map-budget only. Returns the exit code."""
    from .onnx_int8 import calibrate_onnx

    _check_budget_request(config, evaluate)
    scheme, reason = choose_int8_scheme(config.int8_scheme)
    print(f"calibration: {len(calib)} images from {description}, {config.calib_method}; int8 {scheme.name} ({reason})")
    config.out.mkdir(parents=True, exist_ok=True)
    stem = Path(str(spec.source) or "model").stem
    with tempfile.TemporaryDirectory(prefix="edgedet-calibrate-") as tmp:
        cache = Path(tmp) / "ranges.json"
        calibrate_onnx(fp32, calib, config.calib_method, cache)
        inputs = stack_arrays(calib, config.sensitivity_images)
        layers = layer_sensitivity(fp32, cache, config.calib_method, scheme, inputs, progress=_progress)
        print(format_table(layers, limit=20))
        report = {"checkpoint": str(config.checkpoint), "method": config.calib_method, "scheme": scheme.name,
                  "images": len(inputs), "metric": "SQNR dB of raw head outputs, one layer int8 at a time"}
        chosen = _keep_float(fp32, cache, scheme, [layer.name for layer in layers], len(calib), evaluate, config, stem)
        met = True
        if chosen is not None:
            report["keep_float"], met = chosen
            if config.map_budget is not None:
                report["map_budget_met"] = met
        write_report(config.out / "sensitivity.json", layers, report)
    print(f"wrote {config.out / 'sensitivity.json'}")
    return 0 if met else 1  # like export's gate: a budget not met is a failure, its best effort still written


def _check_budget_request(config: CalibrateConfig, evaluate: Optional[Evaluate]) -> None:
    if config.map_budget is not None and evaluate is None:
        raise ValueError("calibrate_model: --map-budget needs an evaluate callable (model path -> metrics)")


def _progress(index: int, total: int, node: str) -> None:
    if index % 10 == 0:
        print(f"sensitivity: layer {index + 1}/{total} {node}", file=sys.stderr, flush=True)


def _keep_float(fp32: Path, cache: Path, scheme, ranked: Sequence[str], num_images: int,
                evaluate: Optional[Evaluate], config: CalibrateConfig, stem: str) -> Optional[Tuple[List[str], bool]]:
    """Write <stem>-int8-keepfloat.onnx keeping the chosen layers float; returns (their names, whether the
    --map-budget is met: True without one), or None if not asked."""
    from .onnx_int8 import quantize_onnx

    out = config.out / f"{stem}-int8-keepfloat.onnx"
    met = True
    if config.auto_keep_float is not None:
        kept = list(ranked[: config.auto_keep_float])
    elif config.map_budget is not None:
        kept, met = _search_budget(fp32, cache, scheme, ranked, num_images, evaluate, config, out)
    else:
        return None
    quantize_onnx(fp32, out, cache, config.calib_method, scheme, num_images, nodes_to_exclude=kept)
    print(f"wrote {out} ({len(kept)} layers kept float: {', '.join(kept) or 'none'})")
    return kept, met


def _search_budget(fp32: Path, cache: Path, scheme, ranked: Sequence[str], num_images: int, evaluate: Evaluate,
                   config: CalibrateConfig, out: Path) -> Tuple[List[str], bool]:
    """(the smallest count in 0, 1, 2, 4, ... of top-ranked layers kept float that meets --map-budget, True), or
    (every layer, False) when none does."""
    from .onnx_int8 import quantize_onnx

    reference = evaluate(str(fp32))["map"]
    print(f"fp32 mAP@.5:.95 {reference:.2f}; budget {config.map_budget} points")
    counts = [0] + [2 ** i for i in range(len(ranked).bit_length()) if 2 ** i < len(ranked)] + [len(ranked)]
    for count in counts:
        kept = list(ranked[:count])
        quantize_onnx(fp32, out, cache, config.calib_method, scheme, num_images, nodes_to_exclude=kept)
        value = evaluate(str(out))["map"]
        print(f"keep {count:>3} float: int8 mAP@.5:.95 {value:.2f} (drop {reference - value:.2f})")
        if reference - value <= config.map_budget:
            return kept, True
    print(f"--map-budget {config.map_budget} not met even with every layer float", file=sys.stderr)
    return list(ranked), False
