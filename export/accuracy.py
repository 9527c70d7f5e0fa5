"""The accuracy gate: every artifact runs through the device runtime on the validation split, beside the checkpoint.

The caller supplies the evaluator (`Evaluate`); this module holds the table and the gate.
A table gives size, mAP@.5:.95, mAP@.5, mask AP, mIoU and the mAP delta against the PyTorch model;
an artifact whose mAP@.5:.95 drops by more than `max_map_drop` points fails the export.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence, Union

METRICS = ("map", "map50", "mask_ap", "miou")  # keys of ArtifactAccuracy.metrics, in table order
HEADERS = {"map": "mAP", "map50": "mAP50", "mask_ap": "maskAP", "miou": "mIoU"}

# The evaluator the caller injects (edgedet.export_inputs.evaluator): a model file path, or a backend object
# (`.spec`, `.run`, e.g. export.torch_backend.TorchBackend) -> {METRICS key: value in points, NaN if undefined},
# measured on the validation split by the device runtime.
Evaluate = Callable[[Union[str, object]], Dict[str, float]]


@dataclass
class ArtifactAccuracy:
    """Accuracy of one model file (or the checkpoint) on the validation split, in points (0..100)."""

    name: str  # format name ("torch", "onnx", "onnx-int8", ...)
    path: str  # file evaluated
    size_mb: float  # file size in MB (10^6 bytes)
    metrics: Dict[str, float] = field(default_factory=dict)  # METRICS -> value in points; NaN when not applicable


def format_table(rows: Sequence[ArtifactAccuracy], reference: ArtifactAccuracy) -> str:
    """Fixed-width table: artifact, size, the four metrics and the mAP delta against `reference`."""
    head = f"{'artifact':<12} {'size MB':>8} " + " ".join(f"{HEADERS[k]:>7}" for k in METRICS) + f" {'dmAP':>7}  file"
    lines = [head]
    for row in [reference, *rows]:
        cells = " ".join(_cell(row.metrics.get(k, float("nan"))) for k in METRICS)
        delta = _cell(map_drop(row, reference) * -1.0) if row is not reference else f"{'-':>7}"
        lines.append(f"{row.name:<12} {row.size_mb:>8.2f} {cells} {delta}  {row.path}")
    return "\n".join(lines)


def _cell(value: float) -> str:
    return f"{'n/a':>7}" if math.isnan(value) else f"{value:>7.2f}"


def map_drop(row: ArtifactAccuracy, reference: ArtifactAccuracy) -> float:
    """Points of mAP@.5:.95 lost against the reference (negative = better than the reference)."""
    return reference.metrics["map"] - row.metrics["map"]


def gate_failures(rows: Sequence[ArtifactAccuracy], reference: ArtifactAccuracy, max_map_drop: float) -> List[str]:
    """One message per artifact whose mAP@.5:.95 drop exceeds `max_map_drop` (or is not a number)."""
    failures = []
    for row in rows:
        drop = map_drop(row, reference)
        if math.isnan(drop):
            failures.append(f"{row.name} ({row.path}) has no mAP@.5:.95 to hold to --max-map-drop {max_map_drop}")
        elif drop > max_map_drop and drop >= 0:
            failures.append(f"{row.name} ({row.path}) lost {drop:.2f} mAP@.5:.95 points, more than --max-map-drop "
                            f"{max_map_drop} allows")
        elif drop > max_map_drop:  # a negative limit asks for a gain
            failures.append(f"{row.name} ({row.path}) gained only {-drop:.2f} mAP@.5:.95 points, less than the "
                            f"{-max_map_drop:g} that --max-map-drop {max_map_drop} asks for")
    return failures

