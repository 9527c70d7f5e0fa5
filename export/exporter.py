"""`edgedet export`'s work on a loaded model or a foreign ONNX file: the requested formats, then the gate.

Formats: onnx (fp32), onnx-int8 (QDQ), tflite (fp32), tflite-fp16 (fp16 weights), tflite-int8 (full integer).
Files are named <checkpoint or source stem><suffix> in the output folder and appear only when complete.
The caller (edgedet.export_cli) loads the checkpoint and passes in the model, its spec, where calibration
images come from (`SampleSource`) and the evaluator (`export.accuracy.Evaluate`). A foreign ONNX detector
(Ultralytics YOLOv8/11, -seg, YOLOv5) is cut before its decode first (export.foreign_onnx); its fp32 "onnx"
artifact is the cut file. The gate compares every artifact with a `Reference`: the PyTorch checkpoint, or the
foreign file as its exporter wrote it; with labels by mAP, without by agreement of detections (export.agreement).
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edgedet.calibration.calibset import build_calibration_set
from edgedet.calibration.onnx_quant import METHODS, SCHEMES, default_int8_scheme
from edgedet.calibration.sampling import STRATEGIES
from edgedet.device.backends import load_backend
from edgedet.device.errors import EdgedetError
from .accuracy import ArtifactAccuracy, Evaluate, format_table, gate_failures
from .agreement import AGREEMENT_CONF, agreement, agreement_failures, detections_of
from . import two_stage
from .foreign_onnx import cut_foreign_onnx
from .checkpoint import image_graph, output_roles
from .onnx_export import export_onnx
from .onnx_to_torch import onnx_to_torch
from .torch_backend import TorchBackend

# format name -> file name suffix
FORMATS = {
    "onnx": ".onnx",
    "onnx-int8": "-int8.onnx",
    "tflite": ".tflite",
    "tflite-fp16": "-fp16.tflite",
    "tflite-int8": "-int8.tflite",
}
INT8_FORMATS = ("onnx-int8", "tflite-int8")
TFLITE_PRECISIONS = {"tflite": "fp32", "tflite-fp16": "fp16", "tflite-int8": "int8"}  # TFLite format -> precision
TFLITE_FORMATS = tuple(TFLITE_PRECISIONS)


@dataclass
class Reference:
    """What the gate compares every artifact with."""

    name: str  # row name in the table: "torch" (the checkpoint) or "source" (a foreign file as exported)
    path: Path  # the file
    model: object  # what the evaluator and the runtime take: a backend object or a model file path

# Where calibration images come from, called once when an int8 format is asked for:
# () -> (list of calibration.sampling.CalibrationItem, description such as "data set DIR").
SampleSource = Callable[[], Tuple[list, str]]


@dataclass
class ExportConfig:
    """Everything `edgedet export` needs; the CLI flags map one to one."""
    checkpoint: str  # checkpoint path, a shipped name (edgedet.models.SHIPPED_CHECKPOINTS) or a foreign .onnx file
    formats: List[str] = field(default_factory=lambda: list(FORMATS))  # names from FORMATS
    out: Path = Path("exports")  # output folder
    imgsz: Optional[str] = None  # export input size "320" or "320,256"; None = the checkpoint's
    calib: Optional[str] = None  # calibration data: data set (folder/yaml/json) or image folder
    calib_size: int = 200  # number of calibration images
    calib_method: str = "percentile"  # "minmax", "entropy" or "percentile"
    calib_sampling: str = "balanced"  # "random" or "balanced" (class-balanced; needs a labelled data set)
    seed: int = 0  # calibration sampling seed
    int8_scheme: str = "auto"  # ONNX int8: "auto" (from the CPU), "S8S8", "U8S8-reduce-range" or "U8U8"
    keep_float: List[str] = field(default_factory=list)  # ONNX int8: node names kept in float (from `edgedet calibrate`)
    data: Optional[str] = None  # validation data set for the accuracy check; None = --calib if it is a data set
    val_limit: Optional[int] = None  # evaluate on the first N validation images only (None = all)
    max_map_drop: Optional[float] = None  # fail when an artifact loses more mAP@.5:.95 points than this
    min_agreement: Optional[float] = None  # fail when an int8 artifact agrees less than this with the reference
    names: Optional[List[str]] = None  # foreign ONNX without metadata: class names (--names)
    layout: Optional[str] = None  # foreign ONNX without metadata: its layout (--layout)
    threads: Optional[int] = None  # inference threads during evaluation


def parse_formats(text: str) -> List[str]:
    """'onnx,tflite-int8' -> ['onnx', 'tflite-int8']; EdgedetError naming an unknown format."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise EdgedetError(f"unknown export format {', '.join(unknown) or repr(text)}; expected any of {', '.join(FORMATS)}")
    return list(dict.fromkeys(names))


def artifact_paths(out: Path, stem: str, formats: Sequence[str]) -> Dict[str, Path]:
    return {name: out / f"{stem}{FORMATS[name]}" for name in formats}


def sized_stem(stem: str, size_hw: Optional[Tuple[int, int]], own_hw: Tuple[int, int]) -> str:
    """The file stem of a checkpoint's export at the input size (H, W) asked for with --imgsz, so that the file
    says the size it runs at. own_hw: the checkpoint's own input size; where the stem ends with it, it is
    replaced ("edgedet-n-320" of a 320 checkpoint at 640 -> "edgedet-n-640", at 480,640 -> "edgedet-n-480x640"),
    otherwise the size is appended ("best" -> "best-640", "run-3" -> "run-3-640": two checkpoints never share a
    name). None, or the checkpoint's own size, keeps the stem."""
    if size_hw is None or tuple(size_hw) == tuple(own_hw):
        return stem
    suffix = f"-{_size_tag(own_hw)}"
    base = stem[:-len(suffix)] if stem.endswith(suffix) else stem
    return f"{base}-{_size_tag(size_hw)}"


def _size_tag(size_hw: Tuple[int, int]) -> str:
    """(640, 640) -> "640", (480, 640) -> "480x640"."""
    h, w = (int(v) for v in size_hw)
    return str(h) if h == w else f"{h}x{w}"


def check_request(config: ExportConfig) -> None:
    """EdgedetError for a request that cannot work, before anything is loaded or written."""
    if config.calib_sampling not in STRATEGIES:
        raise EdgedetError(f"unknown --calib-sampling {config.calib_sampling!r}; expected one of {', '.join(STRATEGIES)}")
    if config.min_agreement is not None and not 0 <= config.min_agreement <= 1:
        raise EdgedetError(f"--min-agreement must be in 0..1, got {config.min_agreement}")
    if config.min_agreement is not None and not needs_calibration(config):
        raise EdgedetError("--min-agreement compares int8 files with the source: ask for onnx-int8 or tflite-int8")
    if config.keep_float and "onnx-int8" not in config.formats:
        raise EdgedetError("--keep-float applies to --format onnx-int8, which is not asked for")
    if needs_calibration(config) and not config.calib:
        raise EdgedetError(f"formats {', '.join(n for n in config.formats if n in INT8_FORMATS)} need --calib DATA (a data set or image folder)")


def check_keep_float(onnx_path: Path, names: Sequence[str]) -> None:
    """EdgedetError naming the --keep-float names that are no node of the graph (a typo would keep nothing float)."""
    import onnx

    nodes = {node.name for node in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    unknown = [name for name in names if name not in nodes]
    if unknown:
        raise EdgedetError(f"--keep-float: no node named {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} "
                           f"in the ONNX graph (the names come from `edgedet calibrate`'s sensitivity report)")


def needs_calibration(config: ExportConfig) -> bool:
    """True when an int8 format is asked for."""
    return any(name in INT8_FORMATS for name in config.formats)


def export_model(model, spec, stem: str, config: ExportConfig, samples: SampleSource) -> Dict[str, Path]:
    """{format: path written} for config.formats of `model` (torch.nn.Module, eval mode) described by `spec`
    (device.ModelSpec); files are named `stem` + FORMATS suffix; `samples` is called only for int8 formats."""
    roles = output_roles(model, spec)
    items = _calibration_items(config, samples) if needs_calibration(config) else None
    config.out.mkdir(parents=True, exist_ok=True)
    paths = artifact_paths(config.out, stem, config.formats)
    with tempfile.TemporaryDirectory(prefix="edgedet-export-") as tmp:
        calib = _calibration_set(items, spec, config) if items else None
        written = _export_all(image_graph(model), spec, roles, paths, calib, config, Path(tmp))
        if spec.second_stage:
            _export_heads(model, spec, written, calib, config)
        return written


def export_foreign(source: Path, config: ExportConfig, samples: SampleSource) -> Tuple[object, Dict[str, Path]]:
    """(spec of the cut model, {format: path written}) for config.formats of a foreign ONNX detector `source`:
    cut before its decode, then quantized and converted like an edgedet export (files named by its stem)."""
    paths = artifact_paths(config.out, source.stem, config.formats)
    for path in paths.values():
        if path.resolve() == source.resolve():
            raise EdgedetError(f"exporting {source} to {config.out} would overwrite it; pass another --out")
    items = _calibration_items(config, samples) if needs_calibration(config) else None
    config.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgedet-export-") as tmp:
        cut = paths.get("onnx") or Path(tmp) / "cut.onnx"
        spec = cut_foreign_onnx(source, cut, names=config.names, layout=config.layout, imgsz=config.imgsz)
        print(f"{source.name}: cut before its decode into {spec.layout} outputs per level "
              f"{', '.join(spec.level_outputs)}{' and ' + spec.proto_output if spec.proto_output else ''}")
        model = onnx_to_torch(cut) if any(name in TFLITE_FORMATS for name in paths) else None
        calib = _calibration_set(items, spec, config) if items else None
        roles = _onnx_output_names(cut)
        return spec, _export_all(model, spec, roles, paths, calib, config, Path(tmp), fp32_onnx=cut)


def _onnx_output_names(path: Path) -> List[str]:
    import onnx

    return [output.name for output in onnx.load(str(path), load_external_data=False).graph.output]


def _export_all(model, spec, roles, paths: Dict[str, Path], calib, config: ExportConfig, tmp: Path,
                fp32_onnx: Optional[Path] = None) -> Dict[str, Path]:
    """Every format of `paths`. `fp32_onnx`: an fp32 ONNX file already written (a foreign file's cut); without
    it `model` is exported to ONNX first. `model` (torch.nn.Module) is needed for the TFLite formats only."""
    from .tflite_export import export_tflite

    written: Dict[str, Path] = {}
    if fp32_onnx is None and ("onnx" in paths or "onnx-int8" in paths):
        fp32_onnx = paths.get("onnx") or tmp / "fp32.onnx"
        export_onnx(model, spec, fp32_onnx, roles)
    if "onnx" in paths:
        written["onnx"] = fp32_onnx
    if "onnx-int8" in paths:
        scheme, reason = choose_int8_scheme(config.int8_scheme)
        print(f"onnx-int8: {scheme.name} ({reason})")
        from .onnx_int8 import export_onnx_int8

        check_keep_float(fp32_onnx, config.keep_float)
        export_onnx_int8(fp32_onnx, paths["onnx-int8"], calib, config.calib_method, scheme, config.keep_float)
        written["onnx-int8"] = paths["onnx-int8"]
    for name, precision in TFLITE_PRECISIONS.items():
        if name in paths:
            export_tflite(model, spec, paths[name], roles, precision, calib if precision == "int8" else None,
                          config.calib_method)
            written[name] = paths[name]
    return {name: written[name] for name in config.formats}


def _export_heads(model, spec, written: Dict[str, Path], calib, config: ExportConfig) -> None:
    """A two-stage model's per-region heads put into every stage-1 artifact, in the artifact's format and precision
    (device/two_stage.py: how they travel)."""
    batches = two_stage.calibration_features(model, spec, calib.arrays()) if calib is not None else []
    with tempfile.TemporaryDirectory(prefix="edgedet-heads-") as tmp:
        fp32_onnx = Path(tmp) / "heads.onnx"
        if "onnx" in written or "onnx-int8" in written:
            two_stage.export_heads_onnx(model, spec, fp32_onnx)
        for fmt, path in written.items():
            heads = Path(tmp) / f"{fmt}.heads{path.suffix}"
            if fmt == "onnx":
                heads = fp32_onnx
            elif fmt == "onnx-int8":
                scheme, _ = choose_int8_scheme(config.int8_scheme)
                two_stage.export_heads_onnx_int8(fp32_onnx, heads, batches, config.calib_method, scheme)
            else:
                two_stage.export_heads_tflite(model, spec, heads, TFLITE_PRECISIONS[fmt], batches, config.calib_method)
            two_stage.embed_heads(path, heads)
            print(f"{fmt}: the second stage (per-region heads, {heads.stat().st_size / 1e6:.2f} MB) is inside "
                  f"{path.name}")


def choose_int8_scheme(choice: str):
    if choice == "auto":
        return default_int8_scheme()
    if choice not in SCHEMES:
        raise EdgedetError(f"unknown --int8-scheme {choice!r}; expected auto or one of {', '.join(SCHEMES)}")
    return SCHEMES[choice], "chosen by --int8-scheme"


def _calibration_items(config: ExportConfig, samples: SampleSource):
    items, description = samples()
    print(f"calibration: {min(config.calib_size, len(items))} of {len(items)} images from {description}, "
          f"{config.calib_sampling} sampling, {config.calib_method}")
    return items


def _calibration_set(items, spec, config: ExportConfig):
    sampling = config.calib_sampling
    if sampling == "balanced" and not any(item.class_ids for item in items):
        sampling = "random"  # an unlabelled image folder: nothing to balance
    return build_calibration_set(items, spec, config.calib_size, sampling, config.seed)


def checkpoint_reference(model, spec, checkpoint: Path, threads: Optional[int] = None) -> Reference:
    """The gate's reference for an export of this project's checkpoint: the PyTorch model itself."""
    return Reference("torch", Path(checkpoint), TorchBackend(model, spec, threads))


def source_reference(source: Path, config: ExportConfig) -> Reference:
    """The gate's reference for a foreign ONNX file: the file as its exporter wrote it (fp32, decode in graph),
    read with the same --names/--layout/--imgsz as the cut."""
    backend = load_backend(source, threads=config.threads, names=config.names, layout=config.layout,
                           imgsz=config.imgsz)
    return Reference("source", Path(source), backend)


def check_accuracy(source: Reference, written: Dict[str, Path], evaluate: Evaluate, config: ExportConfig) -> int:
    """Evaluate the reference and every artifact with `evaluate` (model path or backend -> metrics), print the
    table, apply the gate. Returns the exit code (1: an artifact failed)."""
    reference = ArtifactAccuracy(source.name, str(source.path), os.path.getsize(source.path) / 1e6,
                                 evaluate(source.model))
    rows = [ArtifactAccuracy(name, str(path), os.path.getsize(path) / 1e6, evaluate(str(path)))
            for name, path in written.items()]
    print(format_table(rows, reference))
    if config.max_map_drop is None:
        return 0
    failures = gate_failures(rows, reference, config.max_map_drop)
    for message in failures:
        print(f"edgedet export: error: {message}", file=sys.stderr)
    if _int8_failed(failures):
        print(f"edgedet export: hint: {gate_hint(config)}", file=sys.stderr)
    for row in rows:
        if any(message.startswith(f"{row.name} (") for message in failures):
            _reject(Path(row.path))
    return 1 if failures else 0


def check_agreement(source: Reference, written: Dict[str, Path], images: Sequence, config: ExportConfig) -> int:
    """The label-free gate: each int8 artifact's detections against the reference's on `images` (BGR arrays);
    one line per artifact and, with --min-agreement, those below it are rejected. Returns the exit code."""
    expected = detections_of(source.model, images, threads=config.threads)
    if not any(len(d) for d in expected):
        message = (f"the source finds no objects at conf {AGREEMENT_CONF} on these {len(images)} images: agreement "
                   "cannot be measured (pass labelled --data, or images with the model's objects)")
        print(f"edgedet export: {'error' if config.min_agreement is not None else 'warning'}: {message}",
              file=sys.stderr)
        return 1 if config.min_agreement is not None else 0
    rows = []
    for name, path in written.items():
        if name in INT8_FORMATS:
            measured = agreement(expected, detections_of(str(path), images, threads=config.threads))
            print(f"{name:<12} {measured.describe()}  {path}")
            rows.append((name, str(path), measured))
    if config.min_agreement is None:
        return 0
    failures = agreement_failures(rows, config.min_agreement)
    for message in failures:
        print(f"edgedet export: error: {message}", file=sys.stderr)
    if _int8_failed(failures):
        print(f"edgedet export: hint: {gate_hint(config)}", file=sys.stderr)
    for name, path, _ in rows:
        if any(message.startswith(f"{name} (") for message in failures):
            _reject(Path(path))
    return 1 if failures else 0


def _int8_failed(failures: Sequence[str]) -> bool:
    """True when a gate message (each starts with "<format> (") names an int8 artifact."""
    return any(message.startswith(f"{name} (") for message in failures for name in INT8_FORMATS)


def gate_hint(config: ExportConfig) -> str:
    """What usually brings a rejected int8 artifact within the gate, for one line after the errors."""
    others = " or ".join(method for method in METHODS if method != config.calib_method)
    return (f"int8 usually recovers with more calibration images (a larger --calib set or --calib-size, now "
            f"{config.calib_size}), another --calib-method ({others}; {config.calib_method} now), or, for onnx-int8, "
            f"the most sensitive layers kept float: `edgedet calibrate {config.checkpoint} --calib "
            f"{config.calib or 'DATA'} --auto-keep-float 3`, then --keep-float with the layer names it prints")


def _reject(path: Path) -> None:
    """Rename a failed artifact (and its sidecar) to <file>.rejected so nothing deploys it by mistake."""
    for candidate in (path, path.with_name(path.name + ".json")):
        if candidate.exists():
            os.replace(candidate, candidate.with_name(candidate.name + ".rejected"))
    print(f"rejected {path} -> {path.name}.rejected", file=sys.stderr)
