"""The accuracy gate: every artifact runs through the device runtime on the validation split, beside the checkpoint.

A table gives size, mAP@.5:.95, mAP@.5, mask AP, mIoU and the mAP delta against the PyTorch model;
an artifact whose mAP@.5:.95 drops by more than `max_map_drop` points fails the export.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

METRICS = ("map", "map50", "mask_ap", "miou")  # keys of ArtifactAccuracy.metrics, in table order
HEADERS = {"map": "mAP", "map50": "mAP50", "mask_ap": "maskAP", "miou": "mIoU"}


@dataclass
class ArtifactAccuracy:
    """Accuracy of one model file (or the checkpoint) on the validation split, in points (0..100)."""

    name: str  # format name ("torch", "onnx", "onnx-int8", ...)
    path: str  # file evaluated
    size_mb: float  # file size in MB (10^6 bytes)
    metrics: Dict[str, float] = field(default_factory=dict)  # METRICS -> value in points; NaN when not applicable


def evaluate_backend(backend, data, split: str = "val", limit: Optional[int] = None,
                     threads: Optional[int] = None) -> Dict[str, float]:
    """mAP@.5:.95, mAP@.5, mask AP and mIoU (points) of a backend or model path, via edgedet.evaluate.evaluate_model."""
    from edgedet.evaluate import evaluate_model

    return metrics_from_report(evaluate_model(backend, data, split=split, limit=limit, threads=threads, progress=False))


# METRICS key -> (section, key) in evaluate_model's report
_REPORT_KEYS = {"map": ("bbox", "AP"), "map50": ("bbox", "AP50"), "mask_ap": ("segm", "AP"), "miou": ("semantic", "mIoU")}


def metrics_from_report(report: dict) -> Dict[str, float]:
    """The four figures in points; NaN where the report lacks the section or marks it undefined (-1)."""
    out = {}
    for key, (section, name) in _REPORT_KEYS.items():
        value = report.get(section, {}).get(name)
        out[key] = float("nan") if value is None or value < 0 else float(value) * 100.0
    return out


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
        if math.isnan(drop) or drop > max_map_drop:
            failures.append(f"{row.name} ({row.path}) lost {drop:.2f} mAP@.5:.95 points, more than --max-map-drop {max_map_drop}")
    return failures
