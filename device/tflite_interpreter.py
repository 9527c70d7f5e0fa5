"""The TFLite interpreter class, imported lazily: ai_edge_litert, else tflite_runtime (never tensorflow)."""
from __future__ import annotations

from .errors import EdgedetError


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
