"""Per-layer int8 sensitivity of an ONNX model: quantize one layer at a time and measure the output error.

The error is the signal-to-quantization-noise ratio (SQNR, dB) of the raw head outputs against the
float model on a few calibration inputs; the lower the SQNR, the more that layer alone hurts. The
ranking is what `edgedet calibrate --auto-keep-float N` and `--map-budget X` keep in float.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from edgedet.device.ort_session import open_ort_session
from .onnx_quant import Int8Scheme, quantizable_nodes, quantize_qdq


@dataclass(frozen=True)
class LayerSensitivity:
    """How much quantizing one layer alone degrades the outputs."""

    name: str  # ONNX node name
    sqnr_db: float  # SQNR of all raw outputs vs float when only this layer is int8 (lower = more sensitive)
    rank: int  # 1 = most sensitive


def sqnr_db(reference: Dict[str, np.ndarray], test: Dict[str, np.ndarray]) -> float:
    """10 log10(sum ref^2 / sum (ref - test)^2) over all outputs of one or more runs; inf when identical."""
    signal = sum(float(np.sum(np.square(reference[k], dtype=np.float64))) for k in reference)
    noise = sum(float(np.sum(np.square(reference[k].astype(np.float64) - test[k]))) for k in reference)
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(signal, 1e-30) / noise)


def run_outputs(model_path, inputs: Sequence[np.ndarray], threads: int = 1) -> Dict[str, np.ndarray]:
    """Raw outputs of an ONNX model over `inputs`, concatenated along axis 0 per output name."""
    session = open_ort_session(model_path, threads)
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    runs = [session.run(names, {input_name: x}) for x in inputs]
    return {name: np.concatenate([r[i] for r in runs]) for i, name in enumerate(names)}


def layer_sensitivity(float_path, cache_path, method: str, scheme: Int8Scheme, inputs: Sequence[np.ndarray],
                      nodes: Optional[Sequence[str]] = None,
                      progress: Optional[Callable[[int, int, str], None]] = None) -> List[LayerSensitivity]:
    """Quantize each node of `nodes` (default: every Conv/Gemm/MatMul) alone; ranked most sensitive first."""
    nodes = list(nodes) if nodes is not None else quantizable_nodes(float_path)
    reference = run_outputs(float_path, inputs)
    scores = []
    with tempfile.TemporaryDirectory(prefix="edgedet-sens-") as tmp:
        single = Path(tmp) / "single.onnx"
        for index, node in enumerate(nodes):
            if progress:
                progress(index, len(nodes), node)
            quantize_qdq(float_path, single, cache_path, method, scheme, nodes_to_quantize=[node])
            scores.append((sqnr_db(reference, run_outputs(single, inputs)), node))
    scores.sort(key=lambda pair: (pair[0], pair[1]))
    return [LayerSensitivity(node, float(score), rank) for rank, (score, node) in enumerate(scores, start=1)]


def write_report(path, layers: Sequence[LayerSensitivity], extra: Optional[dict] = None) -> None:
    """JSON {"layers": [{name, sqnr_db, rank}, ...], **extra}, most sensitive first (inf SQNR written as null)."""
    rows = [{**asdict(layer), "sqnr_db": layer.sqnr_db if np.isfinite(layer.sqnr_db) else None} for layer in layers]
    Path(path).write_text(json.dumps({"layers": rows, **(extra or {})}, indent=2))


def format_table(layers: Sequence[LayerSensitivity], limit: int = 0) -> str:
    """A fixed-width table: rank, SQNR (dB), node name; the first `limit` rows (all if 0)."""
    shown = layers[:limit] if limit else layers
    lines = [f"{'rank':>4}  {'SQNR dB':>8}  layer"]
    lines += [f"{layer.rank:>4}  {layer.sqnr_db:>8.2f}  {layer.name}" for layer in shown]
    return "\n".join(lines)
