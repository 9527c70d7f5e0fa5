"""The `edgedet bench` results record: its schema version, stages and columns, validation and CSV form.

`edgedet bench` writes these records and `edgedet report` reads them; both import this module (the record's
fields are described in edgedet/bench.py's docstring). Version 2 times the loop of `edgedet run` in a pass of
its own; version 1 records took their latency from the accuracy pass (conf 0.001, no warm-up, no outputs), so
they are refused rather than compared with version 2 figures.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Dict, Iterable, Optional

from .provenance import machine_key

SCHEMA_VERSION = 2
# stage names of device.latency.StageTimer, in pipeline order. "end_to_end" runs from the captured frame to the
# start of the outputs; IN_FRAME_STAGES lie inside it, "capture", "output" and "frame_age" do not, and "encode"
# (the stream's JPEG encoder) runs in a thread of its own
# ("roi_align" and "stage2": a two-stage model's second stage)
STAGES = ("capture", "preprocess", "inference", "decode", "roi_align", "stage2", "nms", "masks", "track", "zones",
          "semantic", "draw", "encode", "output", "end_to_end", "frame_age")
IN_FRAME_STAGES = ("preprocess", "inference", "decode", "roi_align", "stage2", "nms", "masks", "track", "zones",
                   "semantic", "draw")
STAT_KEYS = ("p50", "p90", "p99", "trimmed_mean")  # per stage, ms
ACCURACY_KEYS = ("map", "map50", "mask_ap", "miou")  # the accuracy pass (MAP_CONF)
DEPLOY_KEYS = ("precision", "recall", "f1")  # at the deployment threshold
OUTPUTS = ("json", "save", "stream")  # outputs the timed loop may write (`edgedet bench --outputs`)
LOOPS = ("accuracy", "deploy_accuracy", "timed")  # the passes a measured record names in "loops"
CSV_COLUMNS = (
    ["variant", "machine", "model", "format", "precision", "runtime", "imgsz", "threads", "size_mb"]
    + list(ACCURACY_KEYS)
    + [f"{key}_at_conf" for key in DEPLOY_KEYS]
    + ["conf", "nms_iou", "match_iou", "outputs", "warmup", "repeats"]
    + [f"{stage}_{key}_ms" for stage in STAGES for key in STAT_KEYS]
    + ["fps", "cpu_temp_start_c", "cpu_temp_end_c", "throttled_now_end", "peak_mem_mb", "images",
       "data_fingerprint", "wall_s", "error", "commit", "date"]
)
VERSION_1_NOTE = ("schema_version 1: its latency came from the accuracy pass (conf 0.001, no warm-up, no outputs), "
                  "not from the loop of `edgedet run`; re-run `edgedet bench` with this edgedet")


def variant_label(name: str, fmt: str, precision: str, imgsz: int, threads: int) -> str:
    """E.g. "edgedet-n-320.int8 onnx int8 320px 2t"."""
    return f"{name} {fmt} {precision} {imgsz}px {threads}t"


def validate_record(record: object) -> Optional[str]:
    """None when `record` is a usable results record of this schema version, else a one-line reason."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    version = record.get("schema_version")
    if version == 1:
        return VERSION_1_NOTE
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
    return _measurement_problem(record)


def _measurement_problem(record: dict) -> Optional[str]:
    """What a measured (not failed) record lacks, or None."""
    total = (record.get("latency_ms") or {}).get("end_to_end") or {}
    if not isinstance(total.get("p50"), (int, float)):
        return "no end-to-end latency (latency_ms.end_to_end.p50)"
    for key in ("accuracy", "deploy_accuracy", "loops"):
        if not isinstance(record.get(key), dict):
            return f"field {key!r} missing or not an object"
    missing = [loop for loop in LOOPS if not isinstance(record["loops"].get(loop), dict)]
    if missing:
        return f"field 'loops' lacks {missing}"
    if not (record.get("data") or {}).get("fingerprint"):
        return "no data set fingerprint (data.fingerprint)"
    return None


def flatten_record(record: dict) -> Dict[str, object]:
    """One CSV row (keys = CSV_COLUMNS) from a results record; absent values are empty strings."""
    model, prov = record.get("model", {}), record.get("provenance", {})
    loops = record.get("loops") or {}
    timed, deploy = loops.get("timed") or {}, loops.get("deploy_accuracy") or {}
    thermals = record.get("thermals") or {}
    end_throttled = (thermals.get("end") or {}).get("throttled")
    row: Dict[str, object] = {
        "variant": record.get("variant"), "machine": machine_key(prov), "model": model.get("name"),
        "format": model.get("format"), "precision": model.get("precision"), "runtime": model.get("runtime"),
        "imgsz": record.get("imgsz"), "threads": record.get("threads"), "size_mb": model.get("size_mb"),
        "conf": timed.get("conf"), "nms_iou": timed.get("nms_iou"), "match_iou": deploy.get("match_iou"),
        "outputs": ",".join(timed.get("outputs") or []) if timed else None,
        "warmup": timed.get("warmup"), "repeats": timed.get("repeats"), "fps": record.get("fps"),
        "cpu_temp_start_c": (thermals.get("start") or {}).get("cpu_temp_c"),
        "cpu_temp_end_c": (thermals.get("end") or {}).get("cpu_temp_c"),
        "throttled_now_end": None if end_throttled is None else ",".join(end_throttled.get("now") or []) or "no",
        "peak_mem_mb": record.get("peak_mem_mb"), "images": (record.get("data") or {}).get("images"),
        "data_fingerprint": (record.get("data") or {}).get("fingerprint"), "wall_s": record.get("wall_s"),
        "error": record.get("error"), "commit": prov.get("commit"), "date": prov.get("date"),
    }
    row.update({key: (record.get("accuracy") or {}).get(key) for key in ACCURACY_KEYS})
    row.update({f"{key}_at_conf": (record.get("deploy_accuracy") or {}).get(key) for key in DEPLOY_KEYS})
    for stage in STAGES:
        stats = (record.get("latency_ms") or {}).get(stage) or {}
        row.update({f"{stage}_{key}_ms": stats.get(key) for key in STAT_KEYS})
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
