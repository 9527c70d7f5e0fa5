"""The `edgedet bench` results record: its schema version, stages and columns, validation and CSV form.

`edgedet bench` writes these records and `edgedet report` reads them; both import this module (the record's
fields are described in edgedet/bench.py's docstring).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Dict, Iterable, Optional

from .provenance import machine_key

SCHEMA_VERSION = 1
# in pipeline order (names of device.latency.StageTimer); "end_to_end" = the whole frame
STAGES = ("preprocess", "inference", "decode", "nms", "masks", "semantic", "end_to_end")
ACCURACY_KEYS = ("map", "map50", "mask_ap", "miou")
PERCENTILES = ("p50", "p90", "p99")
CSV_COLUMNS = (
    ["variant", "machine", "model", "format", "precision", "runtime", "imgsz", "threads", "size_mb"]
    + list(ACCURACY_KEYS)
    + [f"{stage}_{p}_ms" for stage in STAGES for p in PERCENTILES]
    + ["fps", "peak_mem_mb", "images", "wall_s", "error", "commit", "date"]
)


def variant_label(name: str, fmt: str, precision: str, imgsz: int, threads: int) -> str:
    """E.g. "edgedet-n-320.int8 onnx int8 320px 2t"."""
    return f"{name} {fmt} {precision} {imgsz}px {threads}t"


def validate_record(record: object) -> Optional[str]:
    """None when `record` is a usable results record of this schema version, else a one-line reason."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        return f"schema_version {version!r}, this edgedet reads version {SCHEMA_VERSION} (incompatible edgedet version)"
    missing = [key for key in ("variant", "model", "imgsz", "threads", "provenance") if key not in record]
    if missing:
        return f"missing fields {missing}"
    model = record["model"]
    if not isinstance(model, dict) or not all(k in model for k in ("format", "precision", "name")):
        return "field 'model' lacks format, precision or name"
    if record.get("error"):
        return None
    total = (record.get("latency_ms") or {}).get("end_to_end") or {}
    if not isinstance(total.get("p50"), (int, float)):
        return "no end-to-end latency (latency_ms.end_to_end.p50)"
    if not isinstance(record.get("accuracy"), dict):
        return "field 'accuracy' missing or not an object"
    return None


def flatten_record(record: dict) -> Dict[str, object]:
    """One CSV row (keys = CSV_COLUMNS) from a results record; absent values are empty strings."""
    model, prov = record.get("model", {}), record.get("provenance", {})
    row: Dict[str, object] = {
        "variant": record.get("variant"), "machine": machine_key(prov), "model": model.get("name"),
        "format": model.get("format"), "precision": model.get("precision"), "runtime": model.get("runtime"),
        "imgsz": record.get("imgsz"), "threads": record.get("threads"), "size_mb": model.get("size_mb"),
        "fps": record.get("fps"), "peak_mem_mb": record.get("peak_mem_mb"),
        "images": (record.get("data") or {}).get("images"), "wall_s": record.get("wall_s"),
        "error": record.get("error"), "commit": prov.get("commit"), "date": prov.get("date"),
    }
    row.update({key: (record.get("accuracy") or {}).get(key) for key in ACCURACY_KEYS})
    for stage in STAGES:
        stats = (record.get("latency_ms") or {}).get(stage) or {}
        row.update({f"{stage}_{p}_ms": stats.get(p) for p in PERCENTILES})
    return {key: ("" if row.get(key) is None else row[key]) for key in CSV_COLUMNS}


def write_csv(records: Iterable[dict], path: Path) -> None:
    """DIR/results.csv from all records so far (written to a temporary file, then renamed: never half-written)."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow(flatten_record(record))
    os.replace(tmp, path)
