"""The one onnxruntime session setup: the runtime's backend, the exporter's parity check and the sensitivity scan.

onnxruntime is an optional, heavy library; it is imported inside the functions here, when a session is opened.
"""
from __future__ import annotations

from typing import Optional

from .errors import EdgedetError

ORT_OPTIMIZATION = ("disable", "basic", "extended", "all")  # graph optimisation levels, weakest first


def open_ort_session(path, threads: Optional[int] = None, optimization: str = "all"):
    """An onnxruntime InferenceSession for the ONNX file at `path` (or a model's bytes) on the CPU.

    threads: intra-op threads (None or 0 = onnxruntime's default, one per physical core).
    optimization: graph optimisation level, one of ORT_OPTIMIZATION.
    onnxruntime's own exception types propagate when the file cannot be loaded.
    """
    ort = import_onnxruntime()
    options = session_options(ort, threads, optimization)
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def import_onnxruntime():
    """The onnxruntime module, or EdgedetError with the install hint when it is missing."""
    try:
        import onnxruntime
    except ImportError:
        raise EdgedetError('onnxruntime is not installed; install it with: pip install "edgedet[onnx]"') from None
    return onnxruntime


def session_options(ort, threads: Optional[int], optimization: str):
    """CPU session options. Worker threads do not spin after `run`: spinning would steal the cores from the NumPy
    post-processing that follows each inference (measured: masks stage 140 ms spinning vs 92 ms not, 2 cores)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = _optimization_level(ort, optimization)
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _optimization_level(ort, optimization: str):
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if optimization not in levels:
        raise EdgedetError(f"unknown graph optimisation level {optimization!r}; expected one of {', '.join(levels)}")
    return levels[optimization]
