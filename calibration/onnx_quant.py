"""Calibration methods and static int8 QDQ quantization of an ONNX model with onnxruntime.

Calibration and quantization are split: `compute_ranges` runs the calibrator once and saves the
activation ranges to a JSON cache; `quantize_qdq` then quantizes from that cache, so the per-layer
sensitivity search can build many variants without recalibrating.

Methods:
- "minmax":     the observed min and max of each tensor.
- "entropy":    TensorRT's KL-divergence threshold. onnxruntime's default histogram has as many bins
                as quantized bins (128/128), which makes the search a no-op that keeps the full observed range, like MinMax;
                here the histogram has ENTROPY_NUM_BINS > ENTROPY_QUANTIZED_BINS so the search is real.
- "percentile": the PERCENTILE-th percentile of |x| (clips rare outliers).
With entropy and percentile, the graph outputs (raw head logits) keep their observed min/max (see
`_keep_output_extremes`): clipping them would shift every decoded score.
"""
from __future__ import annotations

import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgedet.device.errors import EdgedetError
from edgedet.device.library_logs import quiet_prints

METHODS = ("minmax", "entropy", "percentile")
ENTROPY_NUM_BINS = 512  # histogram bins of the entropy calibrator (> quantized bins, else it degenerates to MinMax)
ENTROPY_QUANTIZED_BINS = 128  # candidate quantized bins of the KL search
PERCENTILE = 99.999  # percentile of |x| kept by the percentile calibrator
PERCENTILE_NUM_BINS = 2048  # histogram bins of the percentile calibrator


@dataclass(frozen=True)
class Int8Scheme:
    """How activations and weights are stored in the QDQ model (onnxruntime's naming)."""

    name: str  # a key of SCHEMES: activation type, weight type (and 7-bit weights for "-reduce-range")
    activation: str  # "int8" or "uint8"
    weight: str  # "int8" or "uint8"
    reduce_range: bool  # 7-bit weights, which avoids the int16 saturation of U8S8 on x86 without VNNI


SCHEMES = {
    "S8S8": Int8Scheme("S8S8", "int8", "int8", False),
    "U8S8": Int8Scheme("U8S8", "uint8", "int8", False),
    "U8S8-reduce-range": Int8Scheme("U8S8-reduce-range", "uint8", "int8", True),
    "U8U8": Int8Scheme("U8U8", "uint8", "uint8", False),
}


def cpu_flags(cpuinfo_path: str = "/proc/cpuinfo") -> set:
    """The CPU feature flags of the first core ('flags' on x86, 'Features' on ARM); empty if unknown."""
    try:
        text = Path(cpuinfo_path).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def default_int8_scheme(machine: Optional[str] = None, flags: Optional[set] = None) -> Tuple[Int8Scheme, str]:
    """The int8 scheme for this CPU and why.

    ARM (e.g. the Pi 5's dot-product instructions): S8S8. x86: uint8 activations, because onnxruntime's
    x86 kernels fuse every U8S8 QDQ Conv into QLinearConv but leave S8S8 depthwise convs in float
    (measured on the tiny model: S8S8 8.1 ms, U8S8 1.2 ms, fp32 2.0 ms); without VNNI the weights
    also use reduce_range (7 bits), since plain U8S8 saturates the int16 accumulators of AVX2.
    """
    machine = (machine or platform.machine()).lower()
    flags = cpu_flags() if flags is None else flags
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return SCHEMES["S8S8"], f"{machine}: S8S8 (dot-product int8 kernels)"
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni"})
    if vnni:
        return SCHEMES["U8S8"], f"x86 with {'+'.join(vnni)}: U8S8 (onnxruntime fuses every U8S8 Conv on x86, not S8S8)"
    return SCHEMES["U8S8-reduce-range"], "x86 without VNNI: U8S8 with reduce_range (plain U8S8 saturates int16 accumulators)"


def calibrator_options(method: str):
    """onnxruntime (CalibrationMethod, calibrator extra_options) for one of METHODS."""
    from onnxruntime.quantization import CalibrationMethod

    if method == "minmax":
        return CalibrationMethod.MinMax, {}
    if method == "entropy":
        return CalibrationMethod.Entropy, {"num_bins": ENTROPY_NUM_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS}
    if method == "percentile":
        return CalibrationMethod.Percentile, {"num_bins": PERCENTILE_NUM_BINS, "percentile": PERCENTILE, "symmetric": True}
    raise EdgedetError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")


def compute_ranges(model_path, reader, method: str, cache_path) -> Dict[str, Tuple[float, float]]:
    """Run `reader` through the float model, compute each tensor's (min, max) by `method`, save them to `cache_path`.

    Returns tensor name -> (low, high). The cache file is what `quantize_qdq` reads.
    """
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrate_method, options = calibrator_options(method)
    with tempfile.TemporaryDirectory(prefix="edgedet-calib-") as tmp:
        calibrator = create_calibrator(Path(model_path), None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=calibrate_method, extra_options=options)
        reader.rewind()
        with quiet_prints():  # "Collecting tensor data and making histogram ...", "Number of tensors : 151"
            calibrator.collect_data(reader)
            tensors = calibrator.compute_data()
        if method != "minmax":
            _keep_output_extremes(tensors, calibrator.collector.histogram_dict, _graph_outputs(model_path))
        del calibrator
    save_tensors_data(tensors, Path(cache_path))
    return {name: (float(np.min(r.range_value[0])), float(np.max(r.range_value[1]))) for name, r in tensors.data.items()}


def _keep_output_extremes(tensors, histograms: dict, output_names: Sequence[str]) -> None:
    """Give the model's outputs their observed min/max instead of a clipped range.

    The outputs are raw head logits decoded on the device: objectness sits in a narrow spike far
    below zero (e.g. -6.7 for an empty cell), which the KL or percentile search clips to the bulk of
    the distribution, shifting every score. Inner activations keep the method's range.
    """
    from onnxruntime.quantization.calibrate import TensorData

    for name in output_names:
        if name in histograms and name in tensors.data:
            low, high = histograms[name][2], histograms[name][3]
            tensors.data[name] = TensorData(lowest=np.asarray(low, np.float32), highest=np.asarray(high, np.float32))


def _graph_outputs(model_path) -> List[str]:
    import onnx

    return [output.name for output in onnx.load(str(model_path), load_external_data=False).graph.output]


def quantize_qdq(model_path, out_path, cache_path, method: str, scheme: Int8Scheme,
                 nodes_to_exclude: Sequence[str] = (), nodes_to_quantize: Optional[Sequence[str]] = None) -> None:
    """Static int8 QDQ quantization with per-channel weights, from the ranges in `cache_path`.

    `nodes_to_exclude` stay float (kept-in-float layers); `nodes_to_quantize`, if given, limits
    quantization to those nodes (one-layer-at-a-time sensitivity).
    """
    from onnxruntime.quantization import QuantFormat, quantize_static

    calibrate_method, _ = calibrator_options(method)
    quantize_static(
        str(model_path), str(out_path), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
        per_channel=True, reduce_range=scheme.reduce_range, activation_type=_quant_type(scheme.activation),
        weight_type=_quant_type(scheme.weight), calibrate_method=calibrate_method,
        nodes_to_exclude=list(nodes_to_exclude), nodes_to_quantize=None if nodes_to_quantize is None else list(nodes_to_quantize),
        calibration_cache_path=str(cache_path), extra_options={"WeightSymmetric": True},
    )


def quantizable_nodes(model_path, op_types: Sequence[str] = ("Conv", "ConvTranspose", "Gemm", "MatMul")) -> List[str]:
    """Names of the nodes whose weights get quantized (the layers of a sensitivity report), in graph order."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in op_types]


def _quant_type(dtype: str):
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[dtype]
