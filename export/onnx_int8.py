"""fp32 ONNX -> int8 QDQ ONNX: onnxruntime static quantization, per-channel weights, runtime-preprocessed calibration."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Sequence

from edgedet.calibration.calibset import CalibrationSet
from edgedet.calibration.onnx_quant import Int8Scheme, compute_ranges, quantize_qdq
from edgedet.calibration.readers import OnnxCalibrationReader
from edgedet.device.spec import ModelSpec
from .artifacts import atomic_outputs
from .onnx_export import onnx_spec, read_spec, save_with_spec


def describe_quantization(scheme: Int8Scheme, method: str, num_images: int, kept_float: Sequence[str] = ()) -> str:
    """One line for spec.quantization, e.g. 'onnxruntime QDQ S8S8 per-channel; entropy calibration, 200 images'."""
    text = f"onnxruntime QDQ {scheme.name} per-channel; {method} calibration, {num_images} images"
    return text + (f"; {len(kept_float)} layers kept float" if kept_float else "")


def calibrate_onnx(fp32_path, calib: CalibrationSet, method: str, cache_path) -> None:
    """Measure activation ranges of the fp32 model on `calib` by `method` into the JSON `cache_path`."""
    spec = read_spec(fp32_path)
    compute_ranges(fp32_path, OnnxCalibrationReader(calib, spec.input_name), method, cache_path)


def quantize_onnx(fp32_path, out_path, cache_path, method: str, scheme: Int8Scheme, num_images: int,
                  nodes_to_exclude: Sequence[str] = ()) -> ModelSpec:
    """Write the int8 QDQ model (spec in metadata, precision "int8") from a calibration cache; returns its spec."""
    spec = onnx_spec(read_spec(fp32_path), "int8", describe_quantization(scheme, method, num_images, nodes_to_exclude))
    with atomic_outputs(out_path) as (temp,), tempfile.TemporaryDirectory(prefix="edgedet-q-") as tmp:
        raw = Path(tmp) / "qdq.onnx"
        quantize_qdq(fp32_path, raw, cache_path, method, scheme, nodes_to_exclude=nodes_to_exclude)
        save_with_spec(raw, temp, spec)
    return spec


def export_onnx_int8(fp32_path, out_path, calib: CalibrationSet, method: str, scheme: Int8Scheme,
                     nodes_to_exclude: Sequence[str] = (), cache_path: Optional[Path] = None) -> ModelSpec:
    """Calibrate then quantize in one step; the ranges cache is temporary unless `cache_path` is given."""
    with tempfile.TemporaryDirectory(prefix="edgedet-calib-") as tmp:
        cache = Path(cache_path) if cache_path else Path(tmp) / "ranges.json"
        calibrate_onnx(fp32_path, calib, method, cache)
        return quantize_onnx(fp32_path, out_path, cache, method, scheme, len(calib), nodes_to_exclude)
