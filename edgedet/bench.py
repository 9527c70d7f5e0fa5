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
    data            dict    path of the data set, images (number evaluated), failed_images (per-image errors the
                            evaluation survived; they count as images without detections)
    settings        dict    conf (score threshold) and iou (NMS IoU) of the run: latency is measured at these
    accuracy        dict    map (box mAP@0.5:0.95), map50, mask_ap (mask mAP@0.5:0.95), miou; fractions in 0..1,
                            None where the model has no such head or the data set no such labels
    latency_ms      dict    stage -> {p50, p90, p99} in ms, for the stages of STAGES the model has; "end_to_end"
                            is always there
    fps             float   1000 / end_to_end p50
    peak_mem_mb     float   peak resident memory of the process that ran the variant, MB
    wall_s          float   wall time of the variant (load, warm-up, evaluation), seconds
    error           str     only on a variant that failed; the measurement fields are then absent
    provenance      dict    `edgedet.provenance.provenance()`: machine, python, libraries, commit, date
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from edgedet.device.backends import load_backend
from edgedet.device.errors import EdgedetError
from edgedet.export.exporter import ExportConfig, artifact_paths, parse_formats
from .bench_record import PERCENTILES, SCHEMA_VERSION, STAGES, variant_label, write_csv
from .data import load_dataset
from .evaluate import evaluate_model
from .export_cli import run_export
from .models.loading import resolve_checkpoint
from .progress import bar_text
from .provenance import provenance
from .report import build_tables, markdown_tables

try:
    import resource  # peak memory where /proc is missing; not on Windows
except ImportError:
    resource = None

FORMAT_OF_SUFFIX = {".onnx": "onnx", ".tflite": "tflite", ".pt": "pytorch", ".pth": "pytorch"}
RUNTIME_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "tflite", "pytorch": "torch"}


# ---------------------------------------------------------------- variants


@dataclass
class Variant:
    """One measurement: a model file at one input size with one thread count."""
    model: str  # path of the .onnx / .tflite / .pt file
    imgsz: int  # square network input size, pixels
    threads: int  # inference threads
    format: str  # "onnx", "tflite" or "pytorch"
    precision: str  # "fp32", "fp16" or "int8"

    @property
    def name(self) -> str:
        return Path(self.model).name.rsplit(".", 1)[0]

    @property
    def label(self) -> str:
        return variant_label(self.name, self.format, self.precision, self.imgsz, self.threads)


@dataclass
class BenchConfig:
    """What `edgedet bench` measures (from the command line)."""
    data: str  # data set: a `edgedet data synth` folder, a dataset.yaml or a COCO JSON
    out: Path  # output folder for results.jsonl / results.csv (and the sweep's exported models)
    models: List[str] = field(default_factory=list)  # model files (--models)
    sweep: Optional[str] = None  # checkpoint to export every variant from (--sweep)
    imgsz: List[int] = field(default_factory=list)  # input sizes; empty = each model's own
    threads: List[int] = field(default_factory=lambda: [1])  # thread counts
    formats: List[str] = field(default_factory=lambda: list(SWEEP_FORMATS))  # export formats of --sweep
    frames: Optional[int] = None  # images of the data set to evaluate (None = all)
    conf: float = 0.001  # score threshold, low as for COCO mAP
    iou: float = 0.6  # NMS IoU threshold


SWEEP_FORMATS = ("onnx", "onnx-int8", "tflite", "tflite-int8")  # `edgedet export` format names
PRECISION_WORDS = ("int8", "fp16", "fp32")  # looked for in file names when the spec does not say


def model_format(path: str) -> str:
    """"onnx", "tflite" or "pytorch" from the suffix; EdgedetError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_OF_SUFFIX:
        raise EdgedetError(f"cannot benchmark {path}: expected a .onnx, .tflite or .pt file")
    return FORMAT_OF_SUFFIX[suffix]


def model_precision_and_size(path: str) -> tuple:
    """(precision, input size) of a model file: from its ModelSpec for .onnx / .tflite (no inference session),
    for a checkpoint ("fp32", the checkpoint's input size)."""
    fmt = model_format(path)
    if fmt == "pytorch":
        from .models.checkpoint import load_checkpoint  # torch

        _, spec = load_checkpoint(path)
        return "fp32", int(spec.input_size_hw[0])
    spec = load_backend(path, threads=1).spec
    precision = spec.precision
    if precision == "fp32":  # foreign files do not record it; trust an explicit word in the file name
        precision = next((w for w in PRECISION_WORDS if w in Path(path).name.lower()), "fp32")
    return precision, int(spec.input_size_hw[0])


def plan_variants(models: Sequence[str], imgsz: Sequence[int], threads: Sequence[int]) -> List[Variant]:
    """model x input size x threads. A .onnx / .tflite file has one fixed input size (its own; a requested
    size it does not have is skipped with a note); a checkpoint runs at every requested size."""
    variants = []
    for path in models:
        if not Path(path).is_file():
            raise EdgedetError(f"model file not found: {path}")
        fmt = model_format(path)
        precision, own_size = model_precision_and_size(path)
        sizes = list(imgsz) if (fmt == "pytorch" and imgsz) else [own_size]
        if fmt != "pytorch" and imgsz and own_size not in imgsz:
            print(f"edgedet bench: note: {path} has a fixed input size {own_size}; measuring it at that size",
                  file=sys.stderr)
        variants += [Variant(str(path), size, t, fmt, precision) for size in sizes for t in threads]
    return variants


def sweep_models(config: BenchConfig) -> List[str]:
    """Export `config.sweep` to every format in `config.formats` at every input size with H5's exporter (which
    also checks each artifact on the data set), into DIR/models/<imgsz>/; the model files written, in order."""
    formats = parse_formats(",".join(config.formats))
    stem = resolve_checkpoint(config.sweep).stem
    models: List[str] = []
    for size in config.imgsz or [None]:
        folder = config.out / "models" / (str(size) if size else "native")
        print(f"edgedet bench: exporting {config.sweep} to {', '.join(formats)} at {size or 'its own size'} "
              f"into {folder}", file=sys.stderr, flush=True)
        export = ExportConfig(checkpoint=str(config.sweep), formats=formats, out=folder,
                              imgsz=None if size is None else str(size), calib=str(config.data),
                              val_limit=config.frames)
        if run_export(export) != 0:
            raise EdgedetError(f"exporting {config.sweep} at imgsz {size or 'default'} failed its accuracy check")
        models += [str(path) for path in artifact_paths(folder, stem, formats).values()]
    return models


# ---------------------------------------------------------------- one variant (runs in its own process)


def measure_variant(variant: Variant, config: BenchConfig) -> dict:
    """Evaluate `variant` over the data set with the device runtime and return its results record.

    Accuracy and per-stage latency come from the same run of `edgedet.evaluate.evaluate_model`; peak memory
    is this process's peak resident set size, so call it in a fresh process (see `run_variant`).
    """
    start = time.perf_counter()
    result = evaluate_model(variant.model, config.data, imgsz=variant.imgsz, threads=variant.threads,
                            conf=config.conf, iou=config.iou, limit=config.frames, progress=False)
    latency = latency_from_eval(result.get("latency_ms") or {})
    return {
        **_record_head(variant, config),
        "data": {"path": str(config.data), "images": result.get("images"), "failed_images": len(result.get("errors") or [])},
        "settings": {"conf": config.conf, "iou": config.iou},
        "accuracy": accuracy_from_eval(result),
        "latency_ms": latency,
        "fps": 1000.0 / latency["end_to_end"]["p50"] if latency["end_to_end"]["p50"] > 0 else None,
        "peak_mem_mb": peak_memory_mb(),
        "wall_s": round(time.perf_counter() - start, 3),
    }


def accuracy_from_eval(result: dict) -> Dict[str, Optional[float]]:
    """map / map50 / mask_ap / miou (0..1) from `evaluate_model`'s result; None where absent or -1."""
    def metric(section: str, key: str) -> Optional[float]:
        value = (result.get(section) or {}).get(key)
        return float(value) if isinstance(value, (int, float)) and value >= 0 else None

    return {"map": metric("bbox", "AP"), "map50": metric("bbox", "AP50"), "mask_ap": metric("segm", "AP"),
            "miou": metric("semantic", "mIoU")}


def latency_from_eval(latency_ms: dict) -> Dict[str, Dict[str, float]]:
    """{stage: {p50, p90, p99}} for the stages of STAGES that were timed; EdgedetError without end to end."""
    out = {}
    for stage in STAGES:
        stats = latency_ms.get(stage)
        if isinstance(stats, dict) and all(isinstance(stats.get(p), (int, float)) for p in PERCENTILES):
            out[stage] = {p: round(float(stats[p]), 4) for p in PERCENTILES}
    if "end_to_end" not in out:
        raise EdgedetError(f"the evaluation timed no end-to-end latency (stages: {sorted(latency_ms)})")
    return out


def peak_memory_mb() -> Optional[float]:
    """Peak resident set size of this process in MB: Linux VmHWM (reset by exec, unlike ru_maxrss, which a child
    inherits from the process that forked it), else ru_maxrss (KB on Linux, bytes on macOS), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    if resource is None:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _record_head(variant: Variant, config: BenchConfig) -> dict:
    size_mb = Path(variant.model).stat().st_size / 1e6 if Path(variant.model).is_file() else None
    return {
        "schema_version": SCHEMA_VERSION,
        "variant": variant.label,
        "model": {"path": str(variant.model), "name": variant.name, "format": variant.format,
                  "precision": variant.precision, "runtime": RUNTIME_OF_FORMAT[variant.format],
                  "size_mb": None if size_mb is None else round(size_mb, 3)},
        "imgsz": variant.imgsz,
        "threads": variant.threads,
        "provenance": provenance(),
    }


def failure_record(variant: Variant, config: BenchConfig, error: str) -> dict:
    """The record of a variant that could not be measured (the report lists it under problems)."""
    return {**_record_head(variant, config), "data": {"path": str(config.data)}, "error": error}


def run_variant(variant: Variant, config: BenchConfig, workdir: Path) -> dict:
    """Measure `variant` in a child Python process (`python -m edgedet.bench JOB.json`); a failure or crash
    of the child becomes a failure record naming its last error line."""
    job = workdir / "job.json"
    result_path = workdir / "result.json"
    result_path.unlink(missing_ok=True)
    job.write_text(json.dumps({"variant": variant.__dict__, "config": _config_json(config),
                               "result": str(result_path)}))
    child = subprocess.run([sys.executable, "-m", "edgedet.bench", str(job)], capture_output=True, text=True)
    if child.returncode == 0 and result_path.is_file():
        return json.loads(result_path.read_text())
    lines = [line for line in (child.stderr or "").strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit code {child.returncode}"
    return failure_record(variant, config, reason)


def _config_json(config: BenchConfig) -> dict:
    return {**config.__dict__, "out": str(config.out)}


def _worker(job_path: str) -> int:
    """Child process entry: measure one variant, write its record to the job's result path."""
    job = json.loads(Path(job_path).read_text())
    variant = Variant(**job["variant"])
    config = BenchConfig(**{**job["config"], "out": Path(job["config"]["out"])})
    try:
        record = measure_variant(variant, config)
    except EdgedetError as error:
        print(error, file=sys.stderr)
        return 2
    Path(job["result"]).write_text(json.dumps(record))
    return 0


# ---------------------------------------------------------------- the run


class Progress:
    """Variants done out of the total, elapsed time and ETA, one log line per event on stderr (a variant takes
    minutes, so each line is kept rather than redrawn; the bar in it is drawn by edgedet.progress)."""
    def __init__(self, total: int, stream=None):
        self.total = total  # variants to measure
        self.stream = stream or sys.stderr  # where the lines go
        self.start = time.perf_counter()  # when the run began
        self.done = 0  # variants finished

    def line(self, text: str) -> str:
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        bar = f"{bar_text(self.done, self.total)} {self.done}/{self.total} variants"
        times = f"elapsed {_duration(elapsed)}, ETA {_duration(eta) if eta is not None else '?'}"
        return f"bench {bar} {times} | {text}"

    def started(self, label: str) -> None:
        print(self.line(f"measuring {label}"), file=self.stream, flush=True)

    def finished(self, record: dict) -> None:
        self.done += 1
        print(self.line(summary_line(record)), file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def summary_line(record: dict) -> str:
    """E.g. "m onnx int8 320px 2t: mAP 45.1, end to end p50 12.30 ms (81.3 FPS), 96 MB" or its failure."""
    if record.get("error"):
        return f"{record['variant']}: FAILED: {record['error']}"
    accuracy = record["accuracy"].get("map")
    shown = "–" if accuracy is None else f"{100 * accuracy:.1f}"
    p50 = record["latency_ms"]["end_to_end"]["p50"]
    return (f"{record['variant']}: mAP {shown}, end to end p50 {p50:.2f} ms ({record.get('fps') or 0:.1f} FPS), "
            f"{record.get('peak_mem_mb')} MB")


def run_bench(config: BenchConfig) -> List[dict]:
    """Measure every variant; DIR/results.jsonl gets each record as soon as it exists (flushed), DIR/results.csv
    is rewritten after each, so an interrupted run keeps everything measured so far."""
    config.out.mkdir(parents=True, exist_ok=True)
    models = sweep_models(config) if config.sweep else list(config.models)
    variants = plan_variants(models, config.imgsz, config.threads)
    progress = Progress(len(variants))
    records: List[dict] = []
    with open(config.out / "results.jsonl", "w", encoding="utf-8") as results, \
            tempfile.TemporaryDirectory(prefix="edgedet-bench-") as workdir:
        for variant in variants:
            progress.started(variant.label)
            record = run_variant(variant, config, Path(workdir))
            results.write(json.dumps(record) + "\n")
            results.flush()
            records.append(record)
            write_csv(records, config.out / "results.csv")
            progress.finished(record)
    return records


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--models", nargs="+", metavar="MODEL", help="model files to measure: .onnx, .tflite, .pt")
    what.add_argument("--sweep", metavar="CKPT", help="export CKPT (or 'shipped') to every --formats x --imgsz, then measure them")
    parser.add_argument("--data", required=True, help="data set: `edgedet data synth` folder (val split), dataset.yaml "
                        "or COCO JSON")
    parser.add_argument("--imgsz", type=_int_list, default=[], help="input sizes, e.g. 224,320 (checkpoints and "
                        "--sweep; an exported file runs at its own size); default: the model's own")
    parser.add_argument("--threads", type=_int_list, default=[1], help="thread counts, e.g. 1,2 (default 1)")
    parser.add_argument("--formats", type=_format_list, default=list(SWEEP_FORMATS),
                        help=f"--sweep export formats (default {','.join(SWEEP_FORMATS)})")
    parser.add_argument("--frames", type=int, default=None, metavar="N", help="evaluate only the first N images")
    parser.add_argument("--conf", type=float, default=0.001, help="score threshold (default 0.001, as for mAP)")
    parser.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold (default 0.6)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for results.jsonl and results.csv")


def check_dataset(path: str) -> None:
    """Read the data set's val split once up front, so a bad data set is one error, not one per variant."""
    if not load_dataset(path, split="val").samples:
        raise EdgedetError(f"data set {path} has no validation images")


def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _format_list(text: str) -> List[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def main(args: argparse.Namespace) -> int:
    if args.frames is not None and args.frames < 1:
        raise EdgedetError(f"--frames must be >= 1, got {args.frames}")
    if not Path(args.data).exists():
        raise EdgedetError(f"data set not found: {args.data}")
    check_dataset(args.data)
    config = BenchConfig(data=args.data, out=Path(args.out), models=args.models or [], sweep=args.sweep,
                         imgsz=args.imgsz, threads=args.threads, formats=args.formats, frames=args.frames,
                         conf=args.conf, iou=args.iou)
    records = run_bench(config)
    measured = [r for r in records if not r.get("error")]
    if measured:
        print(markdown_tables(build_tables(measured)))
    print(f"results: {config.out / 'results.jsonl'} and {config.out / 'results.csv'} "
          f"({len(measured)} measured, {len(records) - len(measured)} failed)")
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
