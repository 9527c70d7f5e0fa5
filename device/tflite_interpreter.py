"""The TFLite interpreter class, imported lazily: ai_edge_litert, else tflite_runtime (never tensorflow); and a
tensor's details as the interpreter reports them."""
from __future__ import annotations

import numpy as np

from .errors import EdgedetError
from .spec import QuantParams, TensorDetails


def import_tflite():
    """(Interpreter class, runtime name): ai_edge_litert, then tflite_runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    # no tensorflow.lite fallback: the device runtime never loads tensorflow (ARCHITECTURE.md)
    raise EdgedetError('no TFLite interpreter is installed (ai_edge_litert or tflite_runtime); '
                       'install one with: pip install "edgedet[tflite]"')


def tflite_details(raw: dict) -> TensorDetails:
    """One entry of an interpreter's get_input_details() / get_output_details() -> TensorDetails (quantization of
    int8 / uint8 / int16 tensors)."""
    shape = tuple(int(d) if d > 0 else None for d in raw.get("shape_signature", raw["shape"]))
    dtype = np.dtype(raw["dtype"]).name
    scale, zero_point = raw.get("quantization", (0.0, 0))
    quant = None
    if dtype in ("int8", "uint8", "int16") and scale:
        quant = QuantParams(float(scale), int(zero_point), dtype)
    return TensorDetails(raw["name"], shape, dtype, quant, raw["name"])
