"""PyTorch -> TFLite through litert_torch (no TensorFlow): fp32, fp16 weights, full-integer int8 (PT2E).

Every TFLite artifact has an NHWC input and NHWC outputs named by role ("p3_box", ..., "seg", "proto") in
its signature, and a sidecar `<file>.json` holding the ModelSpec with the real input tensor name,
the input quantization and each output's quantization keyed by role.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from edgedet.calibration.calibset import CalibrationSet
from edgedet.calibration.readers import pt2e_batches
from edgedet.device.library_logs import quiet_native_info, quiet_prints
from edgedet.device.spec import ModelSpec, QuantParams
from .artifacts import atomic_outputs

PRECISIONS = ("fp32", "fp16", "int8")
# calibration method -> the PT2E activation observer that implements it. torchao's PT2E has no entropy or
# percentile observer: both get HistogramObserver, whose range search minimises the L2 quantization error.
PT2E_OBSERVERS = {"minmax": "MinMaxObserver", "entropy": "HistogramObserver", "percentile": "HistogramObserver"}


def sidecar_path(tflite_path) -> Path:
    """`model.tflite` -> `model.tflite.json`."""
    path = Path(tflite_path)
    return path.with_name(path.name + ".json")


def nhwc_module(model, output_names: Sequence[str]):
    """Wrap `model` so it takes (1, H, W, 3) and returns {role: (1, h, w, c)}: channels-last at both ends."""
    import torch

    class ChannelsLast(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            outputs = self.inner(images.permute(0, 3, 1, 2))
            return {name: out.permute(0, 2, 3, 1) for name, out in zip(output_names, outputs)}

    return ChannelsLast(model).eval()


def export_tflite(model, spec: ModelSpec, path, output_names: Sequence[str], precision: str = "fp32",
                  calib: Optional[CalibrationSet] = None, method: str = "percentile") -> ModelSpec:
    """Write `path` (.tflite) and its sidecar JSON; returns the sidecar's spec.

    precision "int8" needs `calib` (calibration images); `method` picks the activation observer by
    PT2E_OBSERVERS, and the sidecar's `quantization` names the observer actually used.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown TFLite precision {precision!r}")
    if precision == "int8" and method not in PT2E_OBSERVERS:
        raise ValueError(f"unknown calibration method {method!r}")
    wrapped = nhwc_module(model, output_names)
    height, width = spec.input_size_hw
    with atomic_outputs(path, sidecar_path(path)) as (temp, temp_json):
        if precision == "int8":
            _convert_int8(wrapped, calib, method, temp)
        else:
            _convert_float(wrapped, (height, width), temp)
            if precision == "fp16":
                weights_to_fp16(temp)
        out_spec = tflite_spec(spec, temp, precision, method if precision == "int8" else "", len(calib or ()))
        temp_json.write_text(json.dumps(out_spec.to_dict(), indent=2, sort_keys=True))
    return out_spec


def _import_litert_torch():
    """litert_torch, imported without the absl INFO lines its native converter writes when it loads."""
    with quiet_native_info():
        import litert_torch
    return litert_torch


def _convert_float(wrapped, size_hw: Tuple[int, int], out_path: Path) -> None:
    import torch

    convert_float_module(wrapped, torch.rand(1, size_hw[0], size_hw[1], 3), out_path)


def convert_float_module(module, sample, out_path: Path) -> None:
    """A float TFLite file of `module` traced on the tensor `sample` (its one input)."""
    _import_litert_torch().convert(module, (sample,)).export(str(out_path))


def weights_to_fp16(tflite_path: Path) -> None:
    """Rewrite a float TFLite file with fp16 weights (dequantized to fp32 at load): half the size, fp32 math."""
    from ai_edge_quantizer import quantizer, qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    fp16 = quantizer.Quantizer(str(tflite_path))
    fp16.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                algorithm_key=AlgorithmName.FLOAT_CASTING)
    with tempfile.TemporaryDirectory(prefix="edgedet-fp16-") as tmp:
        half = Path(tmp) / "fp16.tflite"
        with quiet_prints():  # its "Model name: ... Quantization Ratio" summary and tqdm bar
            fp16.quantize().export_model(str(half), overwrite=True)
        tflite_path.write_bytes(half.read_bytes())


def pt2e_quantizer(method: str = "percentile"):
    """litert_torch's PT2E quantizer: int8 per-channel symmetric weights, int8 per-tensor activations.

    Activations get PT2E_OBSERVERS[method]: MinMaxObserver swapped in, or the config's HistogramObserver default.
    """
    _import_litert_torch()
    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e.observer import MinMaxObserver

    config = pq.get_symmetric_quantization_config(is_per_channel=True)
    if PT2E_OBSERVERS[method] == "MinMaxObserver":
        activation = dataclasses.replace(config.input_activation,
                                         observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
        config = dataclasses.replace(config, input_activation=activation, output_activation=activation)
    return pq.PT2EQuantizer().set_global(config)


def _convert_int8(wrapped, calib: Optional[CalibrationSet], method: str, out_path: Path) -> None:
    """PT2E: export, insert observers, run the calibration images, convert, lower to a full-integer TFLite."""
    if calib is None or len(calib) == 0:
        raise ValueError("int8 TFLite export needs calibration images")
    convert_int8_module(wrapped, list(pt2e_batches(calib, "NHWC")), method, out_path)


def convert_int8_module(wrapped, arrays, method: str, out_path: Path) -> None:
    """A full-integer TFLite file of `wrapped` (one input) calibrated on the float32 `arrays` of that input."""
    import torch

    litert_torch = _import_litert_torch()
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    batches = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in arrays]
    quantizer = pt2e_quantizer(method)
    with torch.no_grad():
        graph = torch.export.export(wrapped, (batches[0],)).module()
        observed = prepare_pt2e(graph, quantizer)
        for x in batches:
            observed(x)
        quantized = convert_pt2e(observed, fold_quantize=False)
    for module in quantized.modules():
        module.training = False
    litert_torch.convert(quantized, (batches[0],), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(out_path))


def tflite_spec(spec: ModelSpec, tflite_path, precision: str, method: str = "", num_images: int = 0) -> ModelSpec:
    """The sidecar spec: NHWC I/O, the file's input name and dtype, and quantization read from the file itself."""
    input_detail, outputs = signature_details(tflite_path)
    integer_input = np.dtype(input_detail["dtype"]) != np.float32
    quantization = describe_quantization(method, num_images) if precision == "int8" else ""
    return dataclasses.replace(
        spec, input_layout="NHWC", output_layout="NHWC", input_name=input_detail["name"],
        input_dtype=np.dtype(input_detail["dtype"]).name,
        input_quant=_quant_params(input_detail) if integer_input else None,
        output_quant={role: _quant_params(d) for role, d in outputs.items() if np.dtype(d["dtype"]) != np.float32},
        precision=precision, quantization=quantization)


def describe_quantization(method: str, num_images: int) -> str:
    """spec.quantization of an int8 TFLite, naming the method asked for and the PT2E observer that ran."""
    return (f"litert_torch PT2E full-integer int8, per-channel symmetric weights; calibration: {method} requested, "
            f"PT2E {PT2E_OBSERVERS[method]} used, {num_images} images")


def signature_details(tflite_path) -> Tuple[dict, Dict[str, dict]]:
    """(input tensor details, {role: output tensor details}) from the file's default signature."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_native_info():  # the XNNPACK delegate's "INFO: Created ..." line
        interpreter = Interpreter(model_path=str(tflite_path))
    runner = interpreter.get_signature_runner()
    (input_detail,) = runner.get_input_details().values()
    name_by_index = {d["index"]: d["name"] for d in interpreter.get_input_details()}
    input_detail = {**input_detail, "name": name_by_index.get(input_detail["index"], input_detail["name"])}
    return input_detail, dict(runner.get_output_details())


def _quant_params(detail: dict) -> QuantParams:
    scale, zero_point = detail["quantization"]
    return QuantParams(float(scale), int(zero_point), np.dtype(detail["dtype"]).name)


def read_sidecar(tflite_path) -> ModelSpec:
    """The ModelSpec in the sidecar JSON beside a .tflite."""
    return ModelSpec.from_json(sidecar_path(tflite_path).read_text())
