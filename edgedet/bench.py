"""`edgedet bench`: accuracy and per-stage latency of model variants, measured the same way on the same data.

    edgedet bench --models A.onnx B.tflite CKPT.pt --data DATASET [--threads 1,2] [--frames N] --out DIR
    edgedet bench --sweep CKPT --data DATASET [--imgsz 224,320] [--threads 1,2] [--formats onnx,onnx-int8,...] --out DIR

For each model x input size x thread count, one run of the device runtime (`edgedet.evaluate.evaluate_model`,
which drives `device.Detector`) over the validation images gives both the accuracy and the per-stage latency.
Each variant runs in its own Python process, so its peak memory is that of the runtime alone (as on a device)
and a crash in one variant does not stop the others.

Results: DIR/results.jsonl, one record per variant, written and flushed as each variant finishes, and
DIR/results.csv (the same records flattened), rewritten after every variant. The record (schema version 1):

    schema_version  int     SCHEMA_VERSION; `edgedet report` refuses other versions
    variant         str     label unique within a run, e.g. "edgedet-n-320.int8 onnx int8 320px 2t"
    model           dict    path, name (file stem), format ("onnx" | "tflite" | "pytorch"), precision ("fp32" |
                            "fp16" | "int8"), runtime ("onnxruntime" | "tflite" | "torch"), size_mb (file size, MB)
    imgsz           int     network input size (square), pixels
    threads         int     inference threads
    data            dict    path of the data set, images (number evaluated)
    accuracy        dict    map (box mAP@0.5:0.95), map50, mask_ap (mask mAP@0.5:0.95), miou; fractions in 0..1,
                            None where the model has no such head or the data set no such labels
    latency_ms      dict    stage -> {p50, p90, p99} in ms; stages of STAGES present, "total" = end to end
    fps             float   1000 / total p50
    peak_mem_mb     float   peak resident memory of the process that ran the variant, MB
    wall_s          float   wall time of the variant (load, warm-up, evaluation), seconds
    error           str     only on a variant that failed; the measurement fields are then absent
    provenance      dict    `edgedet.provenance.provenance()`: machine, python, libraries, commit, date
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from device.errors import EdgedetError

SCHEMA_VERSION = 1
STAGES = ("preprocess", "inference", "decode", "nms", "masks", "total")  # in pipeline order; "total" = end to end
ACCURACY_KEYS = ("map", "map50", "mask_ap", "miou")
PERCENTILES = ("p50", "p90", "p99")
FORMAT_OF_SUFFIX = {".onnx": "onnx", ".tflite": "tflite", ".pt": "pytorch", ".pth": "pytorch"}
RUNTIME_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "tflite", "pytorch": "torch"}
CSV_COLUMNS = (
    ["variant", "machine", "model", "format", "precision", "runtime", "imgsz", "threads", "size_mb"]
    + list(ACCURACY_KEYS)
    + [f"{stage}_{p}_ms" for stage in STAGES for p in PERCENTILES]
    + ["fps", "peak_mem_mb", "images", "wall_s", "error", "commit", "date"]
)


# ---------------------------------------------------------------- the results record


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
    total = (record.get("latency_ms") or {}).get("total") or {}
    if not isinstance(total.get("p50"), (int, float)):
        return "no end-to-end latency (latency_ms.total.p50)"
    if not isinstance(record.get("accuracy"), dict):
        return "field 'accuracy' missing or not an object"
    return None


def flatten_record(record: dict) -> Dict[str, object]:
    """One CSV row (keys = CSV_COLUMNS) from a results record; absent values are empty strings."""
    from edgedet.provenance import machine_key

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
