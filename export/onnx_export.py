"""PyTorch -> ONNX (fp32) and -> int8 QDQ ONNX; the ModelSpec travels in metadata_props["edgedet_spec"].

The graph ends at the raw head convolutions: outputs named by role ("p3_box", "p3_score", "p3_mask", ...,
"seg", "proto"),
NCHW, float32. One self-contained file (weights inline), checked by onnx.checker.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from edgedet.device.ort_session import open_ort_session
from edgedet.device.spec import ModelSpec
from .artifacts import atomic_outputs

OPSET = 17  # ONNX opset of exported models
SPEC_KEY = "edgedet_spec"  # metadata_props key holding ModelSpec.to_json()


def onnx_spec(spec: ModelSpec, precision: str = "fp32", quantization: str = "") -> ModelSpec:
    """The spec of an ONNX artifact: float NCHW input and outputs, `precision`, and how it was quantized."""
    return dataclasses.replace(spec, input_layout="NCHW", output_layout="NCHW", input_dtype="float32",
                               input_quant=None, output_quant={}, precision=precision, quantization=quantization)


def export_onnx(model, spec: ModelSpec, path, output_names: Sequence[str]) -> ModelSpec:
    """Trace `model` at spec.input_size_hw into a checked, self-contained ONNX file at `path`; returns its spec."""
    import torch

    out_spec = onnx_spec(spec)
    height, width = spec.input_size_hw
    sample = torch.rand(1, 3, height, width)
    with atomic_outputs(path) as (temp,), tempfile.TemporaryDirectory(prefix="edgedet-onnx-") as tmp:
        traced = Path(tmp) / "traced.onnx"
        with torch.no_grad():
            torch.onnx.export(model, (sample,), str(traced), input_names=[spec.input_name],
                              output_names=list(output_names), opset_version=OPSET, dynamo=False,
                              do_constant_folding=True)
        _inline_identity_constants(traced)
        save_with_spec(traced, temp, out_spec)
    return out_spec


def _inline_identity_constants(path) -> None:
    """Replace `Identity(initializer)` nodes by initializers of their own (rewrites the file).

    The TorchScript exporter shares equal constants (e.g. folded BatchNorm biases) through Identity nodes;
    onnxruntime's quantizer then cannot quantize such a bias to int32, and its QDQ fusion leaves the
    Conv in float. Plain initializers let every Conv become an integer QLinearConv.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    onnx.save_model(model, str(path))


def save_with_spec(source, destination, spec: ModelSpec) -> None:
    """Copy an ONNX model with `spec` in its metadata, all weights inline, after onnx.checker."""
    import onnx

    model = onnx.load(str(source))
    set_spec(model, spec)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(destination), save_as_external_data=False)


def set_spec(model, spec: ModelSpec) -> None:
    """Store spec.to_json() under SPEC_KEY in an onnx.ModelProto's metadata_props (replacing any old value)."""
    kept = [p for p in model.metadata_props if p.key != SPEC_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, spec.to_json()


def read_spec(path) -> ModelSpec:
    """The ModelSpec stored in an ONNX file's metadata."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    values = {p.key: p.value for p in model.metadata_props}
    return ModelSpec.from_json(values[SPEC_KEY])


def torch_outputs(model, x: np.ndarray, output_names: Sequence[str]) -> Dict[str, np.ndarray]:
    """Raw outputs of the PyTorch model on a float32 NCHW input, keyed by role."""
    import torch

    with torch.no_grad():
        values = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return {name: value.numpy() for name, value in zip(output_names, values)}


def onnx_outputs(path, x: np.ndarray, threads: Optional[int] = 1) -> Dict[str, np.ndarray]:
    """Raw outputs of an ONNX file on one input, keyed by output name (onnxruntime, CPU; threads None = all cores)."""
    session = open_ort_session(path, threads)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x})))


def max_abs_diff(reference: Dict[str, np.ndarray], test: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Per output name: max |reference - test|, after bringing `test` to the reference's shape."""
    return {name: float(np.max(np.abs(reference[name] - test[name].reshape(reference[name].shape))))
            for name in reference}
